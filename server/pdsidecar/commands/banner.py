"""What ``pdsidecar serve --emulator`` prints once it listens: calls that work as printed.

The lines follow the first listener's real settings: a Unix socket (``grpcurl
-unix``), TLS (``-cacert``, and ``-cert``/``-key`` when client certificates are
required), an API token (sent from ``$PDSIDECAR_API_TOKEN``; the token itself is
never printed). A wildcard address is dialled on loopback.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Final

from cryptography import x509

from pdsidecar.runtime.tls import TlsFiles

# Stand-ins the reader replaces when the files cannot be found: the sidecar knows its own
# certificate, not always the CA a client trusts or a client's certificate.
CA_FILE: Final = "CA.pem"
CLIENT_CERT: Final = "CLIENT.pem"
CLIENT_KEY: Final = "CLIENT-KEY.pem"
TOKEN_ENV: Final = "PDSIDECAR_API_TOKEN"
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


def dial_target(bound: str) -> str:
    """Where a client on this machine connects for a bound listener."""
    host, _, port = bound.rpartition(":")
    return f"{_WILDCARDS[host]}:{port}" if host in _WILDCARDS else bound


def _certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def client_files(tls: TlsFiles) -> tuple[str, str, str] | None:
    """The real CA, client certificate and client key for ``tls``, when they can be found:
    the server's certificate itself when self-signed, else a ``ca.pem`` beside it or the
    client CA that issued it; ``client.pem``/``client-key.pem`` beside the client CA,
    issued by it (the names ``pdsidecar dev-certs`` writes). None: not found."""
    server = _certificate(tls.cert)
    if server is None:
        return None
    candidates = [tls.cert, tls.cert.parent / "ca.pem", *([tls.client_ca] if tls.client_ca else [])]
    ca = next(
        (p for p in candidates if (c := _certificate(p)) and c.subject == server.issuer), None
    )
    if ca is None:
        return None
    if tls.client_ca is None:
        return str(ca.resolve()), "", ""
    client, key = tls.client_ca.parent / "client.pem", tls.client_ca.parent / "client-key.pem"
    issued = _certificate(client)
    trusted = _certificate(tls.client_ca)
    if issued is None or trusted is None or issued.issuer != trusted.subject or not key.exists():
        return None
    return str(ca.resolve()), str(client.resolve()), str(key.resolve())


def emulator_lines(url: str, project: str, account: str) -> list[str]:
    """How to look into the emulator: its request counts, and a token rotation to watch."""
    return [
        f"The Pipedream emulator it reads from is at {url}:",
        f"  curl -s {url}/_emulator/stats    # requests it answered, by route",
        f"  curl -s -X POST {url}/_emulator/accounts/{project}/{account}/rotate"
        "    # a new token now (docs/long-syncs.md: watch it arrive)",
    ]


def demo_banner(
    bound: str,
    *,
    tls: TlsFiles | None,
    api_token: bool,
    project: str,
    account: str,
    emulator_url: str,
) -> str:
    unix = bound.startswith("unix:")
    target = bound if unix else dial_target(bound)
    secure = tls is not None and not unix
    request = (
        f'{{"account": {{"project_id": "{project}", "account_id": "{account}"}}, '
        '"source": "notion"}'
    )
    grpcurl = ["grpcurl"]
    client_args = [json.dumps(target)]
    notes = []
    if secure:
        assert tls is not None
        found = client_files(tls)
        ca, cert, key = found or (CA_FILE, CLIENT_CERT, CLIENT_KEY)
        grpcurl += ["-cacert", shlex.quote(ca)]
        client_args.append(f"tls_ca={json.dumps(ca)}")
        if found is None:
            notes.append(f"{CA_FILE}: the CA certificate that signed {tls.cert}")
        if tls.client_ca is not None:
            grpcurl += ["-cert", shlex.quote(cert), "-key", shlex.quote(key)]
            client_args.append(f"tls_cert={json.dumps(cert)}")
            client_args.append(f"tls_key={json.dumps(key)}")
            if found is None:
                notes.append(
                    f"{CLIENT_CERT}, {CLIENT_KEY}: a client certificate from {tls.client_ca}"
                )
    else:
        grpcurl.append("-plaintext")
    if api_token:
        grpcurl += ["-H", f'"authorization: Bearer ${TOKEN_ENV}"']
        client_args.append(f"api_token=os.environ[{json.dumps(TOKEN_ENV)}]")
    if unix:
        grpcurl += ["-unix", "-d", shlex.quote(request), shlex.quote(target.removeprefix("unix:"))]
    else:
        grpcurl += ["-d", shlex.quote(request), target]
    grpcurl.append("pdsidecar.v1.CredentialsService/GetCredentials")
    imports = "import os\n  " if api_token else ""
    where = "(TLS) " if secure else ""
    lines = [
        "",
        f"pdsidecar is serving {where}on {target} against the built-in Pipedream emulator.",
        "",
        *emulator_lines(emulator_url, project, account),
        "",
        "Call it with grpcurl (reflection is on):",
        "  " + " ".join(grpcurl),
        "",
        "or from Python (pip install -e client/python):",
        f"  {imports}from pdsidecar_client import CredentialsClient",
        f"  with CredentialsClient({', '.join(client_args)}) as client:",
        "      response = client.get_credentials(",
        f'          project_id="{project}", account_id="{account}", source="notion"',
        "      )",
        '      print(response.credentials["access_token"])',
    ]
    if notes:
        lines += ["", *(f"({note})" for note in notes)]
    if api_token:
        lines += ["", f"(${TOKEN_ENV} holds the API token this sidecar requires)"]
    return "\n".join(lines) + "\n"
