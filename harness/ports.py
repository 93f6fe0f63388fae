"""Free loopback ports."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_pair(offset: int) -> int:
    """A free loopback port whose partner ``port + offset`` is free too (a Redis cluster
    node's bus port is its port + 10000)."""
    for _ in range(100):
        port = free_port()
        if port + offset > 65535:
            continue
        with socket.socket() as partner:
            try:
                partner.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port pair {offset} apart")
