"""Binding listeners to a ``grpc.aio`` server.

A Unix socket is created under a umask, so it never exists with a wider mode
than asked for, and its mode is not changed afterwards: a ``chmod`` by path
would follow whatever a local process swapped in there meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Sequence

import grpc

from pdsidecar.settings import ConfigError, ListenAddress, ListenerConfig


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


def check_tcp_port(address: ListenAddress, reuse_port: bool) -> None:
    """Refuse a fixed TCP port that something already listens on, before gRPC tries it.

    gRPC's C core would print its own "Failed to add port" line to stderr first; a
    probe bind (closed at once) lets the sidecar's message be the only one.
    """
    if address.kind != "tcp" or address.port == 0:
        return
    try:
        found = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except OSError:
        return  # gRPC reports what it cannot resolve
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC binds: SO_REUSEADDR, and SO_REUSEPORT only for --workers.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind(where)
            except OSError as error:
                raise ConfigError(
                    f"cannot listen on {address.grpc_target}: {error.strerror or error} "
                    "(another process, perhaps another pdsidecar, listens there; "
                    "choose another port, or stop it)"
                ) from None


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
    return f"unix:{path}"


def world_accessible(listeners: Sequence[ListenerConfig]) -> list[str]:
    """The Unix sockets among ``listeners`` whose mode lets every local user connect."""
    return [
        f"unix:{x.address.path} (mode {x.socket_mode:04o})"
        for x in listeners
        if x.address.kind == "unix" and x.socket_mode & 0o007
    ]
