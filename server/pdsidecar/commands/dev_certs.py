"""``pdsidecar dev-certs DIR``: a CA, a server certificate and a client certificate for
trying TLS and mutual TLS on this machine (localhost, 127.0.0.1, ::1).

The file names are the ones the operating guide's TLS commands use, so they run as
written from DIR. The keys are written owner-only. These are for trying things out: the
CA key sits next to the certificates, and every certificate lives a short while.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pdsidecar.settings import ConfigError

DEFAULT_DAYS: Final = 30
LOOPBACK: Final[tuple[x509.GeneralName, ...]] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
)

Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class DevCerts:
    """Where :func:`make_dev_certs` wrote each file."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def issue(
    subject: str,
    issuer: Issued | None,
    *,
    ca: bool = False,
    sans: tuple[x509.GeneralName, ...] = (),
    usage: x509.ObjectIdentifier | None = None,
    days: int = DEFAULT_DAYS,
) -> Issued:
    """A new EC key and its certificate, signed by ``issuer`` (self-signed when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_pem(cert_path: Path, key_path: Path, issued: Issued) -> tuple[Path, Path]:
    """The certificate, and its key readable by the owner only."""
    cert, key = issued
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return cert_path, key_path


def make_dev_certs(folder: Path, days: int = DEFAULT_DAYS) -> DevCerts:
    """A CA, a server certificate for loopback and a client certificate, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = issue("pdsidecar dev CA", None, ca=True, days=days)
    server = issue("localhost", ca, sans=LOOPBACK, usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days)
    client = issue("pdsidecar dev client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
    return DevCerts(
        *write_pem(folder / "ca.pem", folder / "ca-key.pem", ca),
        *write_pem(folder / "server.pem", folder / "server-key.pem", server),
        *write_pem(folder / "client.pem", folder / "client-key.pem", client),
    )


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dev-certs",
        help="write a CA, a server and a client certificate for trying TLS on loopback",
        description=(
            "Write ca.pem, server.pem, server-key.pem, client.pem and client-key.pem into DIR "
            "(created if needed): a CA, a server certificate for localhost, 127.0.0.1 and ::1, "
            "and a client certificate for mutual TLS. For trying TLS on this machine only."
        ),
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="where to write the files")
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})"
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise ConfigError("--days must be at least 1")
    try:
        certs = make_dev_certs(args.dir, args.days)
    except OSError as error:
        raise ConfigError(f"cannot write certificates into {args.dir}: {error.strerror}") from None
    d = args.dir
    print(
        f"wrote {certs.ca}, {certs.server_cert}, {certs.server_key}, {certs.client_cert}, "
        f"{certs.client_key} (and the CA's key, {certs.ca_key}). Try:\n"
        f"  pdsidecar serve --emulator --tls-cert {d}/server.pem --tls-key {d}/server-key.pem"
        f" --tls-client-ca {d}/ca.pem\n"
        "It prints grpcurl and Python calls that use these files.",
        file=sys.stderr,
    )
    return 0
