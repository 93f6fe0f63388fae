"""A long sync never holds a dead token: the proof of WatchCredentials.

For 60 s the emulator rotates the Notion token every 10 s (each token lives
15 s and is replaced 5 s before it expires; after its ``expires_at`` the fake
source API answers 401 to it). Two workers call the source every 50 ms, side by
side, each in its own thread with the blocking client:

- ``watching`` reads ``RefreshableCredentials.access_token`` before each call;
- ``caching`` is the usual code: GetCredentials once, keep the token, and on a
  401 ask again with ``rejected_access_token``.

The first sees no 401 at all; the second sees one per token that died under it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar_client import CredentialsClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DURATION = 60.0
EVERY = 0.05
LIFETIME, LEAD = 15.0, 5.0  # a new token every 10 s; the one it replaced dies 5 s later


@dataclass
class Tally:
    ok: int = 0
    unauthorized: int = 0
    tokens: set[str] = field(default_factory=set)


def call_source(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def count(tally: Tally, status: int, token: str) -> None:
    tally.tokens.add(token)
    if status == 200:
        tally.ok += 1
    elif status == 401:
        tally.unauthorized += 1
    else:
        raise AssertionError(f"the source answered {status}")


def watching_worker(target: str, source: str, stop: threading.Event) -> Tally:
    tally = Tally()
    with (
        CredentialsClient(target) as client,
        client.refreshable_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion") as creds,
    ):
        while not stop.is_set():
            token = creds.access_token
            status = call_source(source, token)
            count(tally, status, token)
            if status == 401:
                creds.reject(token)
            stop.wait(EVERY)
    return tally


def caching_worker(target: str, source: str, stop: threading.Event) -> Tally:
    tally = Tally()
    with CredentialsClient(target) as client:
        answer = client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        token = answer.credentials["access_token"]
        while not stop.is_set():
            status = call_source(source, token)
            count(tally, status, token)
            if status == 401:
                answer = client.get_credentials(
                    DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=token
                )
                token = answer.credentials["access_token"]
            stop.wait(EVERY)
    return tally


async def test_a_watching_worker_sees_no_401_where_a_caching_one_does(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.rotations.start(account, LIFETIME, LEAD)
    source = f"{emulator.url}/source/v1/users/me"
    stop = threading.Event()

    def run(worker: Callable[[str, str, threading.Event], Tally]) -> asyncio.Future[Tally]:
        return asyncio.ensure_future(asyncio.to_thread(worker, sidecar.bound[0], source, stop))

    started = time.monotonic()
    watching, caching = run(watching_worker), run(caching_worker)
    await asyncio.sleep(DURATION)
    stop.set()
    watched, cached = await watching, await caching
    elapsed = time.monotonic() - started

    rotations = emulator.state.rotations.stats()["rotations"]
    assert isinstance(rotations, dict)
    assert sum(rotations.values()) >= int(DURATION / (LIFETIME - LEAD))
    # The watching worker went through every token, without a single 401...
    assert watched.unauthorized == 0
    assert len(watched.tokens) >= int(DURATION / (LIFETIME - LEAD))
    assert watched.ok >= elapsed / EVERY / 4  # it kept calling (no long stalls)
    # ...where the caching one met a dead token each time one expired under it.
    assert cached.unauthorized >= int((DURATION - LIFETIME) / (LIFETIME - LEAD))
    print(
        f"\nlong sync, {elapsed:.0f} s: watching {watched.ok} ok / {watched.unauthorized} x 401, "
        f"caching {cached.ok} ok / {cached.unauthorized} x 401, {sum(rotations.values())} tokens"
    )
