"""The Python client's RefreshableCredentials (blocking) and AsyncRefreshableCredentials.

Against the emulator and real sidecars: values follow rotations, ``reject``
waits for a different token, account problems make reads raise, and sidecar
restarts (in process, and a ``pdsidecar serve`` process sent SIGTERM) pass
unnoticed by readers.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.config import write_config
from harness.ports import free_port
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Settings
from pdsidecar_client import (
    AsyncCredentialsClient,
    CredentialsClient,
    CredentialsError,
    RefreshableCredentials,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

NOTION = (DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")


def emulator_token(emulator: Emulator) -> str:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials
    token: str = account.credentials["oauth_access_token"]
    return token


async def test_async_reads_follow_rotations(emulator: Emulator, sidecar: Sidecar) -> None:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.rotations.start(account, 3.0, 1.0)
    async with (
        AsyncCredentialsClient(sidecar.bound[0]) as client,
        await client.refreshable_credentials(*NOTION) as creds,
    ):
        seen = [creds.access_token]
        for _ in range(2):
            await eventually(lambda: creds.access_token != seen[-1], timeout=6)
            seen.append(creds.access_token)
            assert creds.access_token == emulator_token(emulator)
        frozen = creds.get_frozen_credentials()
        assert frozen.credentials["access_token"] == frozen.access_token == creds.token
        assert creds.valid and not creds.expired and creds.expiry is not None
        assert frozen.access_token not in repr(frozen)


async def test_reject_waits_for_a_different_token(emulator: Emulator, sidecar: Sidecar) -> None:
    def work() -> tuple[str, str, str, int]:
        with (
            CredentialsClient(sidecar.bound[0]) as client,
            client.refreshable_credentials(*NOTION) as creds,
        ):
            old = creds.access_token
            new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
            reads = emulator.state.requests["account"]
            fresh = creds.reject(old)
            # An old token rejected again is answered from memory: no call.
            assert creds.reject(old).access_token == fresh.access_token
            return new, fresh.access_token, creds.access_token, reads

    new, fresh, current, reads = await asyncio.to_thread(work)
    assert fresh == current == new
    assert emulator.state.requests["account"] == reads + 1  # one refetch, for every watcher


async def test_async_reject_waits_for_a_different_token(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    async with (
        AsyncCredentialsClient(sidecar.bound[0]) as client,
        await client.refreshable_credentials(*NOTION) as creds,
    ):
        old = creds.access_token
        new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        assert (await creds.reject(old)).access_token == new == creds.access_token


async def test_reject_times_out_when_pipedream_keeps_the_token(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    async with (
        AsyncCredentialsClient(sidecar.bound[0]) as client,
        await client.refreshable_credentials(*NOTION) as creds,
    ):
        with pytest.raises(CredentialsError) as caught:
            await creds.reject(creds.access_token, timeout=0.3)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert creds.access_token == emulator_token(emulator)  # still readable


async def test_a_problem_at_start_raises_and_a_dead_account_later_makes_reads_raise(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    async with AsyncCredentialsClient(sidecar.bound[0]) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.refreshable_credentials(DEMO_PROJECT_ID, DEMO_DEAD_ACCOUNT_ID, "notion")
        assert caught.value.reason == "ACCOUNT_DEAD"

        async with await client.refreshable_credentials(*NOTION) as creds:
            old = creds.access_token
            emulator.state.update_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, dead=True)
            with pytest.raises(CredentialsError) as caught:
                await creds.reject(old)
            assert caught.value.reason == "ACCOUNT_DEAD"
            await eventually(lambda: not creds.valid)
            with pytest.raises(CredentialsError) as caught:
                _ = creds.access_token
            assert caught.value.reason == "ACCOUNT_DEAD"


async def test_raw_stream_yields_values_and_raises_errors(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    async with AsyncCredentialsClient(sidecar.bound[0]) as client:
        stream = client.watch_credentials(*NOTION)
        first = await anext(stream)
        assert first.credentials["access_token"] == emulator_token(emulator)
        await stream.aclose()
        with pytest.raises(CredentialsError) as caught:
            dead = (DEMO_PROJECT_ID, DEMO_DEAD_ACCOUNT_ID, "notion")
            async for _ in client.watch_credentials(*dead):
                pass
        assert caught.value.reason == "ACCOUNT_DEAD"

    def blocking() -> str:
        with CredentialsClient(sidecar.bound[0]) as client:
            for message in client.watch_credentials(*NOTION):
                token: str = message.credentials["access_token"]
                return token
        raise AssertionError("no message")

    assert await asyncio.to_thread(blocking) == emulator_token(emulator)


async def test_async_reconnects_across_a_sidecar_restart_unnoticed(
    emulator: Emulator, settings: Settings
) -> None:
    listen = parse_listen(f"127.0.0.1:{free_port()}")
    first = Sidecar(settings, [listen])
    await first.start()
    second: Sidecar | None = None
    async with AsyncCredentialsClient(listen.grpc_target) as client:
        creds = await client.refreshable_credentials(*NOTION)
        try:
            old = creds.access_token
            await first.stop(grace=5)  # the stream ends UNAVAILABLE, SIDECAR_STOPPING
            assert creds.access_token == old  # readers keep the last value meanwhile
            new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
            second = Sidecar(settings, [listen])
            await second.start()
            await eventually(lambda: creds.access_token == new, timeout=10)
            assert creds.reconnects >= 1
        finally:
            await creds.aclose()
            if second is not None:
                await second.stop(grace=0)


async def test_blocking_reconnects_across_sigterm_of_a_serve_process(
    emulator: Emulator, serve: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    target = f"127.0.0.1:{free_port()}"
    process = serve("--config", str(config), "--listen", target, "--grace", "30")
    await process.bound()
    client = CredentialsClient(target)
    creds: RefreshableCredentials = await asyncio.to_thread(client.refreshable_credentials, *NOTION)
    failures: list[BaseException] = []
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                assert creds.access_token
            except BaseException as error:
                failures.append(error)
                return
            stop.wait(0.005)

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        old = creds.access_token
        process.signal(signal.SIGTERM)
        # Not held for the 30 s grace: the watch stream ended at once.
        assert await process.wait(timeout=10) == 0
        new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        assert creds.access_token == old
        again = serve("--config", str(config), "--listen", target)
        await again.bound()
        await eventually(lambda: creds.access_token == new, timeout=15)
        assert creds.reconnects >= 1
    finally:
        stop.set()
        await asyncio.to_thread(reader.join)
        await asyncio.to_thread(creds.close)
        client.close()
    assert failures == []


async def test_blocking_reads_from_many_threads_see_whole_values_through_rotations(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.rotations.start(account, 2.0, 1.0)  # a new token every second
    client = CredentialsClient(sidecar.bound[0])
    creds = await asyncio.to_thread(client.refreshable_credentials, *NOTION)
    stop = threading.Event()
    seen: list[set[str]] = [set() for _ in range(8)]
    torn: list[str] = []

    def read(mine: set[str]) -> None:
        while not stop.is_set():
            frozen = creds.get_frozen_credentials()
            if frozen.credentials["access_token"] != frozen.access_token:
                torn.append("a snapshot mixed two values")
            mine.add(creds.access_token)
            stop.wait(0.001)

    threads = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for thread in threads:
        thread.start()
    try:
        await eventually(lambda: all(len(mine) >= 3 for mine in seen), timeout=10)
    finally:
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        await asyncio.to_thread(creds.close)
        client.close()
    assert torn == []
