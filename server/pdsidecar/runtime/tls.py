"""TLS for TCP listeners, and the bind rule that requires it off loopback.

``--tls-cert``/``--tls-key`` (PEM files) turn on TLS for every TCP listener;
``--tls-client-ca`` also requires each client to present a certificate
signed by that CA (mutual TLS). Unix sockets stay plaintext: their file mode
decides who connects.

A TCP listener on anything but loopback is refused unless TLS is on or
``--allow-insecure-bind`` says the plaintext exposure is intended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from pdsidecar.settings import ConfigError, ListenAddress


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        ca = _read(self.client_ca, "--tls-client-ca") if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(_read(self.key, "--tls-key"), _read(self.cert, "--tls-cert"))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def tls_from_flags(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    return TlsFiles(cert, key, client_ca)


def check_bind(
    addresses: Sequence[ListenAddress], tls: TlsFiles | None, allow_insecure: bool
) -> None:
    """Refuse plaintext TCP off loopback unless explicitly allowed."""
    for address in addresses:
        if address.kind == "tcp" and not address.is_loopback and tls is None and not allow_insecure:
            raise ConfigError(
                f"refusing to listen on {address.grpc_target} without TLS: it is not a loopback "
                "address, and the sidecar hands out live tokens. Use a Unix socket or "
                "127.0.0.1, set --tls-cert/--tls-key, or pass --allow-insecure-bind"
            )


def client_credentials(
    ca: Path | None, cert: Path | None, key: Path | None
) -> grpc.ChannelCredentials:
    """Credentials for ``pdsidecar health`` talking to a TLS listener."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "--tls-ca") if ca else None,
        private_key=_read(key, "--tls-key") if key else None,
        certificate_chain=_read(cert, "--tls-cert") if cert else None,
    )


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{flag} {str(path)!r}: {error.strerror}") from None
