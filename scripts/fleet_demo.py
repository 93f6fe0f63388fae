"""A fleet on one machine: the emulator, a redis-server and three sidecars, first each on
its own, then sharing through Redis ([shared_cache]); prints what Pipedream saw.

Run by ``scripts/fleet-demo.sh`` (which sets up ``.venv`` first). The three sidecars run in
this process, to start in a moment; each is a whole sidecar (its own cache, Pipedream token,
Redis client and gRPC listener) built from a config file as ``pdsidecar serve --config``
builds it. Everything lives in a temporary folder on Unix sockets and stops at the end.
For the same fleet as processes, see bench/fleet.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path

import grpc
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
    demo_state,
)

from harness.redis import RedisServer, make_key_file, redis_servers
from pdsidecar.config.listen import parse_listen
from pdsidecar.config.load import load_settings
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

SIDECARS = 3
WAIT = 30.0


def say(text: str) -> None:
    print(f"fleet-demo: {text}", flush=True)


def write_config(folder: Path, emulator_url: str, server: RedisServer | None) -> Path:
    """A sidecar config; with ``server``, a [shared_cache] table on that Redis (its ACL
    user, as docs/fleet.md configures one)."""
    text = f'pipedream_url = "{emulator_url}"\n\n[connections.default]\n'
    text += f'client_id = "{DEMO_CLIENT_ID}"\nclient_secret_env = "PIPEDREAM_CLIENT_SECRET"\n\n'
    if server is not None:
        # Production's 50 ms per command would count a busy laptop's pauses as Redis trouble
        # (the sidecar then serves alone, failing no call, and the counts would show it).
        text += server.config_toml([make_key_file(folder, "cache-key")], timeout_ms=2000)
    path = folder / ("shared.toml" if server else "alone.toml")
    path.write_text(text, encoding="utf-8")
    return path


async def ask(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        account = pb.AccountRef(project_id=DEMO_PROJECT_ID, account_id=DEMO_NOTION_ACCOUNT_ID)
        request = pb.GetCredentialsRequest(account=account, source="notion")
        await stub.GetCredentials(request, timeout=10)


async def fleet(folder: Path, config: Path, emulator: Emulator, name: str) -> tuple[int, int]:
    """Three sidecars from ``config``, each with its own cache, Pipedream token and (with
    the table) Redis client; all three are asked at once for the demo Notion account.
    Returns the emulator's token and account requests."""
    emulator.state.reset_stats()
    env = {**os.environ, "PIPEDREAM_CLIENT_SECRET": DEMO_CLIENT_SECRET}
    targets = [f"unix:{folder}/{name}-{i}.sock" for i in range(SIDECARS)]
    sidecars = [Sidecar(load_settings(config, env), [parse_listen(t)]) for t in targets]
    try:
        for sidecar in sidecars:
            await sidecar.start()
            # Sharing starts once the sidecar listens to the fleet's events; until then it
            # serves alone (so a sidecar still connecting to Redis never fails a call).
            if sidecar.fleet is not None and not await sidecar.fleet.store.subscribed(WAIT):
                raise SystemExit("fleet-demo: a sidecar could not subscribe to Redis")
        await asyncio.gather(*(ask(target) for target in targets))
        stats = emulator.state.stats()["requests"]
        return stats["token"], stats["account"]
    finally:
        for sidecar in sidecars:
            await sidecar.stop(grace=1)


async def main() -> int:
    if shutil.which("redis-server") is None:
        raise SystemExit("fleet-demo: needs redis-server (apt-get install redis-server)")
    # The sidecars' own lines (each warns that it has no API token) would bury the counts.
    logging.getLogger("pdsidecar").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="pdfleet-") as tmp:
        folder = Path(tmp)
        async with Emulator(demo_state()) as emulator:
            say(f"Pipedream emulator on {emulator.url}")
            with redis_servers(1) as (server,):
                say(f"redis-server on {server.url}")
                say(f"{SIDECARS} sidecars on their own, asked at once for {DEMO_NOTION_ACCOUNT_ID}")
                alone = await fleet(
                    folder, write_config(folder, emulator.url, None), emulator, "alone"
                )
                say(f"{SIDECARS} sidecars sharing Redis ([shared_cache]); asked at once again")
                shared_config = write_config(folder, emulator.url, server)
                shared = await fleet(folder, shared_config, emulator, "shared")
    for label, (tokens, reads) in (("without", alone), ("with", shared)):
        print(
            f"{label + ' the shared tier:':<24} {tokens} Pipedream token "
            f"request{'s' * (tokens != 1)}, {reads} account read{'s' * (reads != 1)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
