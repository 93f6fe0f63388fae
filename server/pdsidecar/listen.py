"""Listen addresses: ``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pdsidecar.config import ConfigError


@dataclass(frozen=True)
class ListenAddress:
    # "tcp" or "unix"
    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def grpc_target(self) -> str:
        """The form grpc's add_*_port and channels take."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(value: str) -> ListenAddress:
    if value.startswith("unix:"):
        path = value.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ConfigError(
                f"--listen {value!r}: unix: needs a socket path, like unix:/run/pd.sock"
            )
        return ListenAddress(kind="unix", path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(
            f"--listen {value!r}: expected HOST:PORT (like 127.0.0.1:50051), [::1]:PORT "
            "or unix:/path/to.sock"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"--listen {value!r}: port must be a number from 0 to 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"--listen {value!r}: {host!r} is not an IP address (or 'localhost')"
            ) from None
    return ListenAddress(kind="tcp", host=host, port=port)
