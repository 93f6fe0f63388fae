"""Fixtures of the reliability tests: the integration suite's emulator and sidecar.

Re-exported so the tests here get the same real emulator and real sidecar on loopback
(tests/integration/conftest.py), with policies of their own where they need them.
"""

from __future__ import annotations

from tests.integration.conftest import (
    channel,
    clock,
    demo_state,
    emulator,
    policy,
    settings,
    sidecar,
    stub,
    timed_stub,
)

__all__ = [
    "channel",
    "clock",
    "demo_state",
    "emulator",
    "policy",
    "settings",
    "sidecar",
    "stub",
    "timed_stub",
]
