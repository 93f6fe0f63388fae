"""Listen addresses (``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH``) and ``[[listeners]]``.

Parsing only: the values are :class:`~pdsidecar.settings.ListenAddress` and
:class:`~pdsidecar.settings.ListenerConfig`, from ``--listen`` flags and from
``[[listeners]]`` tables in the config. Binding them is
:mod:`pdsidecar.runtime.listeners`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pdsidecar.settings import ConfigError, ListenAddress, ListenerConfig


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
