"""A long sync never holds a dead token: the proof of WatchCredentials.

For 16 s the emulator rotates the Notion token every 4 s (each token lives 7 s and is
replaced 3 s before it expires; after its ``expires_at`` the fake source API answers 401
to it). A worker reading ``RefreshableCredentials.access_token`` before each call to the
source, every 50 ms, sees no 401 at all, and the tokens it used did die. The comparison
with a worker that keeps its token until a 401, over 60 s, is ``python -m bench.long_sync``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from harness.long_sync import call_source, watching_worker
from pdsidecar.runtime.sidecar import Sidecar

pytestmark = pytest.mark.anyio

DURATION = 16.0
EVERY = 0.05
LIFETIME, LEAD = 7.0, 3.0  # a new token every 4 s; the one it replaced dies 3 s later
ROTATIONS = int(DURATION / (LIFETIME - LEAD))


async def test_a_watching_worker_sees_no_401_while_tokens_rotate_and_die(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.rotations.start(account, LIFETIME, LEAD)
    source = f"{emulator.url}/source/v1/users/me"
    stop = threading.Event()
    started = time.monotonic()
    watching = asyncio.ensure_future(
        asyncio.to_thread(watching_worker, sidecar.bound[0], source, stop, EVERY)
    )
    await asyncio.sleep(DURATION)
    stop.set()
    watched = await watching
    elapsed = time.monotonic() - started

    rotations = emulator.state.rotations.stats()["rotations"]
    assert isinstance(rotations, dict)
    assert sum(rotations.values()) >= ROTATIONS
    # The worker went through every token, without a single 401 ...
    assert watched.unauthorized == 0
    assert len(watched.tokens) >= ROTATIONS
    assert watched.ok >= elapsed / EVERY / 4  # it kept calling (no long stalls)
    # ... and the tokens it moved on from did die: a worker keeping one would have met 401s.
    dead = await asyncio.to_thread(call_source, source, watched.tokens[0])
    assert dead == 401
