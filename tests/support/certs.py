"""Certificates for tests: ``pdsidecar dev-certs``'s CA, server and client, plus a stranger
(a client certificate from a CA the server does not trust)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pdsidecar.commands.dev_certs import issue, make_dev_certs, write_pem


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A client certificate from a CA the server does not trust.
    stranger_cert: Path
    stranger_key: Path


def make_certs(folder: Path) -> Certs:
    """What ``pdsidecar dev-certs folder`` writes (a day's validity), and a stranger."""
    made = make_dev_certs(folder, days=1)
    other_ca = issue("someone else's CA", None, ca=True, days=1)
    stranger = issue("stranger", other_ca, days=1)
    stranger_paths = write_pem(folder / "stranger.pem", folder / "stranger-key.pem", stranger)
    return Certs(
        made.ca,
        made.server_cert,
        made.server_key,
        made.client_cert,
        made.client_key,
        *stranger_paths,
    )
