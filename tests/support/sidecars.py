"""Sidecars for tests: demo settings, an in-process sidecar, ``pdsidecar serve`` processes.

Everything listens on loopback or on Unix sockets in the test's temporary folder.
A sidecar process's stderr (its JSON log lines) goes into the suite-wide log
sink when it stops, so the end-of-session secret scan reads it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

import harness.sidecar
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenAddress, ListenerConfig, Policy, Settings
from tests.support import exercised
from tests.support.logsink import LogSink

# Long enough for the API token rule (16+ characters).
API_TOKEN = "ops-test-api-token-0123456789"
# Fast retries, so tests of failures do not wait.
TEST_POLICY = Policy(backoff_initial=0.01, backoff_max=0.05)


def demo_settings(
    url: str,
    policy: Policy = TEST_POLICY,
    *,
    connections: dict[str, ConnectionConfig] | None = None,
    **changes: Any,
) -> Settings:
    """The emulator's demo connection ``default`` (plus ``connections``), at ``url``."""
    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    return Settings(
        pipedream_url=url,
        connections={"default": demo, **(connections or {})},
        policy=policy,
        **changes,
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *listeners: ListenAddress | ListenerConfig, **options: Any
) -> AsyncIterator[Sidecar]:
    """A started in-process sidecar, stopped at exit."""
    sidecar = Sidecar(settings, listeners, **options)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop(grace=0)


class ServeProcess(harness.sidecar.ServeProcess):
    """A ``pdsidecar serve`` process of a test: its argv, environment and config count as
    exercised (:mod:`tests.support.exercised`), and its log goes to the sink at close."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        exercised.argv(args)
        exercised.env(env or {})
        super().__init__(args, log, env)

    def close(self, sink: LogSink) -> None:
        self.stop()
        sink.lines.extend(self.lines())
