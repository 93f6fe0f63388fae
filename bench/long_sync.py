"""A long sync, two ways: the printed comparison behind tests/integration/test_long_sync.py.

    python -m bench.long_sync                  # 60 s, a new token every 10 s
    python -m bench.long_sync --duration 30 --lifetime 7 --lead 3

The emulator rotates the demo Notion token on a schedule (each token lives ``--lifetime``
seconds and is replaced ``--lead`` seconds before it dies; the fake source API answers
401 after that). A sidecar serves it; two workers call the source side by side every
50 ms (harness/long_sync.py): one reads an always-current RefreshableCredentials, the
other keeps its token until a 401. Prints one line: each worker's OK calls and 401s.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
    demo_state,
)

from harness.long_sync import caching_worker, watching_worker
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Settings

EVERY = 0.05


async def compare(duration: float, lifetime: float, lead: float) -> str:
    state = demo_state(seed=7)
    async with Emulator(state) as emulator:
        demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
        sidecar = Sidecar(
            Settings(pipedream_url=emulator.url, connections={"default": demo}),
            [parse_listen("127.0.0.1:0")],
        )
        await sidecar.start()
        try:
            account = state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
            assert account is not None
            state.rotations.start(account, lifetime, lead)
            source = f"{emulator.url}/source/v1/users/me"
            stop = threading.Event()
            target = sidecar.bound[0]
            started = time.monotonic()
            workers = [
                asyncio.to_thread(worker, target, source, stop, EVERY)
                for worker in (watching_worker, caching_worker)
            ]
            running = asyncio.gather(*workers)
            await asyncio.sleep(duration)
            stop.set()
            watched, cached = await running
            elapsed = time.monotonic() - started
        finally:
            await sidecar.stop(grace=0)
    rotations = state.rotations.stats()["rotations"]
    assert isinstance(rotations, dict)
    return (
        f"long sync, {elapsed:.0f} s, {sum(rotations.values())} tokens: "
        f"watching {watched.ok} ok / {watched.unauthorized} x 401, "
        f"caching {cached.ok} ok / {cached.unauthorized} x 401"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--lifetime", type=float, default=15.0)
    parser.add_argument("--lead", type=float, default=5.0)
    args = parser.parse_args()
    print(asyncio.run(compare(args.duration, args.lifetime, args.lead)))


if __name__ == "__main__":
    main()
