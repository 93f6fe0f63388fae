"""Fixtures of the reliability tests: the integration suite's emulator and sidecar.

Re-exported so the tests here get the same real emulator and real sidecar on loopback
(tests/integration/conftest.py), with policies of their own where they need them.
"""

from __future__ import annotations

from tests.integration.conftest import (
    channel,
    demo_state,
    emulator,
    policy,
    settings,
    sidecar,
    stub,
)

__all__ = ["channel", "demo_state", "emulator", "policy", "settings", "sidecar", "stub"]
