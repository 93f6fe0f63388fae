"""The fleet row of ``python -m bench.hostile``: one caller spreads its reads over a fleet.

Two ``pdsidecar serve`` children share one ``redis-server`` (a ``[fleet]`` table),
each with two listeners, at the product's defaults (2,000 reads per 5 minutes, half
to one caller) and an emulator that keeps the same budget. One client sends
``n`` GetCredentials for distinct, existing cold accounts (no not-found slowing:
every read finds an account), half to the first listener of each sidecar; then one
cold call goes to the other listener of the second. Reported: Pipedream's account
reads (counted at the emulator), the hostile calls' codes, and the cold call.
Before the fleet pooled the budget, each sidecar gave the caller its own half.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import grpc
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PROJECT_ID, Emulator

from bench.hostile_streams import OWN_CONNECTION, codes, cold
from harness.redis import PASSWORD, USER, redis_servers
from harness.sidecar import ServeProcess

GET = "/pdsidecar.v1.CredentialsService/GetCredentials"


def _config(folder: Path, index: int, url: str, redis_url: str) -> Path:
    secret, password, key = (folder / name for name in ("secret", "redis-password", "key"))
    secret.write_text(DEMO_CLIENT_SECRET)
    password.write_text(PASSWORD)
    if not key.exists():
        key.write_text(base64.b64encode(os.urandom(32)).decode())
    config = folder / f"pdsidecar-{index}.toml"
    config.write_text(
        f'pipedream_url = "{url}"\n\n[connections.default]\n'
        f'client_id = "{DEMO_CLIENT_ID}"\nclient_secret_file = "{secret}"\n\n'
        f'[fleet]\nurl = "{redis_url}"\nusername = "{USER}"\n'
        f'password_file = "{password}"\nkey_files = ["{key}"]\n'
    )
    return config


async def fleet_budget(
    emulator: Emulator, folder: Path, n: int, server_path: str | None
) -> dict[str, Any]:
    state = emulator.state
    ids = state.add_generated_accounts(n + 1, project_id=DEMO_PROJECT_ID)
    fresh = ids.pop()
    with redis_servers(1) as [redis]:
        env = dict(os.environ)
        if server_path:
            env["PYTHONPATH"] = server_path + os.pathsep + env.get("PYTHONPATH", "")
        listen = ("--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log-format", "json")
        children = [
            ServeProcess(
                ["--config", str(_config(folder, i, emulator.url, redis.url)), *listen],
                folder / f"sidecar-{i}.log",
                env,
            )
            for i in range(2)
        ]
        try:
            (first, _), (second, other) = [await c.bound() for c in children]
            state.reset_stats()
            lanes = asyncio.Semaphore(100)

            async def hammer(target: str, accounts: list[str]) -> list[Any]:
                async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as channel:
                    call = channel.unary_unary(GET)

                    async def one(account: str) -> Any:
                        async with lanes:
                            try:
                                return await call(cold(account), timeout=30)
                            except grpc.RpcError as error:
                                return error

                    return await asyncio.gather(*(one(a) for a in accounts))

            half = len(ids) // 2
            results = await hammer(first, ids[:half]) + await hammer(second, ids[half:])
            reads = state.requests["account"]
            started = time.monotonic()
            async with grpc.aio.insecure_channel(other, options=OWN_CONNECTION) as legit:
                try:
                    await legit.unary_unary(GET)(cold(fresh), timeout=10)
                    cold_call = "OK"
                except grpc.RpcError as error:
                    cold_call = error.code().name
            took = time.monotonic() - started
        finally:
            for child in children:
                child.stop()
    return {
        "sidecars": 2,
        "calls": n,
        "codes": codes(results),
        "account_requests": reads,
        "legit_cold_call_other_listener": f"{cold_call} in {took:.2f} s",
    }
