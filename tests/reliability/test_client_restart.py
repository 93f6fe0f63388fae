"""The Python client through a sidecar restart: killed mid-load, started again, no call lost.

The sidecar is a real ``pdsidecar serve`` process against the test's emulator. Worker
threads call ``CredentialsClient.get_credentials`` (10 s deadline, wait_for_ready, gRPC
retries on UNAVAILABLE) in a loop while the process is SIGKILLed and started again on the
same port: every call must succeed, with the right token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.config import write_config
from harness.ports import free_port
from harness.sidecar import SidecarProcess
from pdsidecar_client import CredentialsClient, CredentialsError

pytestmark = pytest.mark.anyio

SECRET_ENV = "PDSIDECAR_RESTART_TEST_SECRET"
DEADLINE = 10.0
WORKERS = 8


@pytest.fixture
def config(emulator: Emulator, tmp_path: Path) -> Path:
    # The default retry policy: the one a deployed sidecar restarts with.
    return write_config(tmp_path / "pdsidecar.toml", emulator.url, secret_env=SECRET_ENV, policy={})


@pytest.fixture
def processes() -> Iterator[list[SidecarProcess]]:
    started: list[SidecarProcess] = []
    yield started
    for process in started:
        process.stop()


async def test_no_call_with_a_longer_deadline_fails_across_a_restart(
    emulator: Emulator, config: Path, tmp_path: Path, processes: list[SidecarProcess]
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {SECRET_ENV: DEMO_CLIENT_SECRET}
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials is not None
    token = str(account.credentials["oauth_access_token"])

    first = await asyncio.to_thread(SidecarProcess, config, tmp_path / "first.log", env, port=port)
    processes.append(first)

    stop = threading.Event()
    failures: list[str] = []
    latencies: list[float] = []
    wrong: list[str] = []

    def worker(client: CredentialsClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = client.get_credentials(
                    DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion", timeout=DEADLINE
                )
            except CredentialsError as error:
                failures.append(f"{error.code.name} after {time.monotonic() - started:.2f} s")
                continue
            latencies.append(time.monotonic() - started)
            if response.credentials["access_token"] != token:
                wrong.append(response.account.account_id)

    with CredentialsClient(target, timeout=DEADLINE) as client:
        threads = [threading.Thread(target=worker, args=(client,)) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        try:
            await asyncio.sleep(1.0)  # under load
            before_restart = len(latencies)
            first.kill()
            restarted_at = time.monotonic()
            await asyncio.sleep(0.3)  # nothing listens on the port for a while
            second = await asyncio.to_thread(
                SidecarProcess, config, tmp_path / "second.log", env, port=port
            )
            processes.append(second)
            outage = time.monotonic() - restarted_at
            await asyncio.sleep(1.0)  # under load again
        finally:
            stop.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, DEADLINE + 5)

    assert not failures, failures[:10]
    assert not wrong
    assert before_restart > 0 and len(latencies) > before_restart
    # Some calls did wait through the restart (the outage was in their path) ...
    assert max(latencies) > 0.3
    # ... and the restart was shorter than the deadline, which is what makes the promise.
    assert outage < DEADLINE
