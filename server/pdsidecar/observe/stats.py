"""Counters kept as plain integers on the hot path; Prometheus reads them when it scrapes.

No key holds a secret or an account id: gRPC method and code, Pipedream route
and HTTP status, reload result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# Seconds; the cached path answers in well under a millisecond.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0


@dataclass
class RpcStats:
    # (full method, code name) -> calls
    handled: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)


@dataclass
class HttpStats:
    # (Pipedream route, HTTP status or "error"/"timeout") -> requests
    requests: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class ReloadStats:
    ok: int = 0
    failed: int = 0
