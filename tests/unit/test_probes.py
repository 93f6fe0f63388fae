"""Health and reflection's own pool, and the malformed-request log, alone."""

from __future__ import annotations

import pytest

from pdsidecar.api.probes import MalformedLog, ProbePool
from pdsidecar.clock import ManualClock
from pdsidecar.errors import Overloaded
from pdsidecar.settings import Policy


def test_probe_pool_caps_streams_per_connection_and_in_total() -> None:
    pool = ProbePool(Policy(probe_streams=5, probe_streams_per_connection=2, probe_calls=1))
    pool.enter_stream("a")
    pool.enter_stream("a")
    with pytest.raises(Overloaded, match="one connection"):
        pool.enter_stream("a")
    for peer in ("b", "c", "d"):
        pool.enter_stream(peer)
    with pytest.raises(Overloaded, match="probe_streams"):
        pool.enter_stream("e")
    pool.leave_stream("a")
    pool.enter_stream("e")
    assert pool.streams == 5 and pool.refused == 2
    pool.enter_call()
    with pytest.raises(Overloaded, match="probe_calls"):
        pool.enter_call()
    pool.leave_call()
    pool.enter_call()


def test_malformed_requests_are_logged_once_per_caller_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    malformed = MalformedLog(clock, interval=60)
    for _ in range(5):
        malformed.report("/grpc.health.v1.Health/Check", "ipv4:10.0.0.1:1")
    malformed.report("/grpc.health.v1.Health/Check", "ipv4:10.0.0.1:2")
    clock.advance(61)
    malformed.report("/grpc.health.v1.Health/Check", "ipv4:10.0.0.1:1")
    lines = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(lines) == 3 and malformed.seen == 7
    assert all(r.levelname == "WARNING" for r in lines)
