"""Listen addresses (``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``), listeners, binding.

A :class:`ListenerConfig` is one address plus what it may serve: the Unix
socket's file mode and optional allow-lists of connections and sources. They
come from ``--listen`` flags and from ``[[listeners]]`` tables in the config.
:func:`add_port` binds one to a ``grpc.aio`` server; a Unix socket is created
under a umask, so it never exists with a wider mode than asked for.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc

from pdsidecar.config import ConfigError

DEFAULT_SOCKET_MODE: Final = 0o600


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


@dataclass(frozen=True)
class ListenerConfig:
    """One listener: where, the Unix socket's file mode, and what it may serve.

    ``None`` allow-lists allow everything. Connection names are compared after
    the empty name becomes ``default``; sources as the caller spells them.
    """

    address: ListenAddress
    socket_mode: int = DEFAULT_SOCKET_MODE
    allow_connections: frozenset[str] | None = None
    allow_sources: frozenset[str] | None = None

    @property
    def restricted(self) -> bool:
        return self.allow_connections is not None or self.allow_sources is not None


def parse_socket_mode(value: object, where: str = "--socket-mode") -> int:
    """A file mode like "0660" (octal text); the owner must keep read and write."""
    text = str(value)
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if isinstance(value, bool) or not 0 <= mode <= 0o777:
        raise ConfigError(f"{where}: socket mode must be octal like 0600 or 0660, got {value!r}")
    if mode & 0o600 != 0o600:
        raise ConfigError(f"{where}: socket mode {text} must let the owner read and write (0600)")
    return mode


def _names(table: Mapping[str, Any], key: str, where: str) -> frozenset[str] | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a list of names")
    return frozenset(value)


def listeners_from_toml(value: Any) -> tuple[ListenerConfig, ...]:
    """The ``[[listeners]]`` tables of a config file."""
    if not isinstance(value, list):
        raise ConfigError("listeners must be an array of tables: [[listeners]]")
    allowed = {"address", "socket_mode", "allow_connections", "allow_sources"}
    listeners = []
    for index, table in enumerate(value, start=1):
        where = f"[[listeners]] #{index}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"{where} has unknown keys {unknown}; known keys are {sorted(allowed)}"
            )
        address = table.get("address")
        if not isinstance(address, str):
            raise ConfigError(f'{where}: address is required, like "unix:/run/pd.sock"')
        listeners.append(
            ListenerConfig(
                address=parse_listen(address),
                socket_mode=parse_socket_mode(table.get("socket_mode", "0600"), where),
                allow_connections=_names(table, "allow_connections", where),
                allow_sources=_names(table, "allow_sources", where),
            )
        )
    return tuple(listeners)


def add_port(
    server: grpc.aio.Server, listener: ListenerConfig, tls: grpc.ServerCredentials | None
) -> str:
    """Bind one listener; returns its target (with the real port for port 0)."""
    address = listener.address
    if address.kind == "unix":
        return _add_unix_port(server, address.path, listener.socket_mode)
    try:
        if tls is not None:
            port = server.add_secure_port(address.grpc_target, tls)
        else:
            port = server.add_insecure_port(address.grpc_target)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {address.grpc_target}: address in use?")
    return ListenAddress("tcp", address.host, port).grpc_target


def check_unix_path(path: str) -> None:
    """Refuse a path holding anything but a stale socket, or in a missing folder."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"cannot listen on unix:{path}: a file that is not a socket is there")
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            raise ConfigError(f"cannot listen on unix:{path}: another process is serving there")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ConfigError(f"cannot listen on unix:{path}: its directory does not exist")


def _add_unix_port(server: grpc.aio.Server, path: str, mode: int) -> str:
    """A Unix socket created with ``mode`` (never wider, not even for a moment)."""
    previous = os.umask(0o777 & ~mode)
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError:
        raise ConfigError(f"cannot listen on unix:{path}") from None
    finally:
        os.umask(previous)
    os.chmod(path, mode)
    return f"unix:{path}"
