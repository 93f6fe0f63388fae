"""The benchmarks' Pipedream: the project's emulator in its own process, with many accounts.

``python -m harness.emulator_proc --port-file F --accounts N --latency 0.08`` serves the
emulator on loopback, adds the benchmark's OAuth client (its secret comes from the
environment variable named by ``--secret-env``), generates ``N`` Notion accounts, each with
its own access token, writes ``{"url", "ids", "tokens"}`` to ``--accounts-file`` (tokens:
account id -> access token, for the soak's answer check) and the bound port to
``--port-file``, then serves until SIGTERM.

Besides the emulator's own ``/_emulator/`` control routes it adds one:
``POST /_bench/mixed_faults`` ``{"faults": [[status, probability, retry_after], ...],
"stall": s, "stall_probability": p}`` draws, for every request, at most one of several
status faults (the emulator's own fault holds one status per route) plus a stall;
``{"faults": []}`` turns them off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pdsidecar_emulator import EmulatorState, build_app
from pdsidecar_emulator.models import Plan, Route

from harness.processes import Child, pinned

BENCH_CLIENT_ID = "bench-client"


class MixedFaultState(EmulatorState):
    """An emulator state that can answer several kinds of faults at once, each with its odds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # (status, probability, retry_after)
        self.mixed: list[tuple[int, float, str | None]] = []
        self.mixed_stall = 0.0
        self.mixed_stall_probability = 0.0

    def plan(self, route: Route) -> Plan:
        base = super().plan(route)
        if not self.mixed and self.mixed_stall_probability <= 0:
            return base
        delay = base.delay
        if self.mixed_stall_probability > 0 and self.rng.random() < self.mixed_stall_probability:
            delay += self.mixed_stall
        draw = self.rng.random()
        for status, probability, retry_after in self.mixed:
            if draw < probability:
                return Plan(delay, status, retry_after)
            draw -= probability
        return Plan(delay, base.status, base.retry_after)


def _set_mixed(state: MixedFaultState, body: dict[str, Any]) -> dict[str, Any]:
    faults = [
        (int(status), float(probability), None if retry is None else str(retry))
        for status, probability, retry in body.get("faults", [])
    ]
    if sum(p for _, p, _ in faults) > 1.0:
        raise ValueError("fault probabilities add up to more than 1")
    state.mixed = faults
    state.mixed_stall = float(body.get("stall", 0.0))
    state.mixed_stall_probability = float(body.get("stall_probability", 0.0))
    return {"faults": faults, "stall": state.mixed_stall, "p": state.mixed_stall_probability}


def _write(path: Path, text: str) -> None:
    # Before serving anything: a blocking write is fine here.
    path.write_text(text)


async def serve(args: argparse.Namespace) -> None:
    state = MixedFaultState(seed=args.seed, read_budget=args.read_budget or None)
    state.add_client(BENCH_CLIENT_ID, os.environ[args.secret_env])
    ids = state.add_generated_accounts(args.accounts)
    tokens = {}
    for account_id in ids:
        account = state.get_account("proj_demo", account_id)
        assert account is not None and account.credentials is not None
        tokens[account_id] = str(account.credentials["oauth_access_token"])
    state.set_latency(args.latency)

    app = build_app(state)

    async def mixed(request: web.Request) -> web.Response:
        try:
            return web.json_response(_set_mixed(state, await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    app.router.add_post("/_bench/mixed_faults", mixed)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096).start()
    port = int(runner.addresses[0][1])
    url = f"http://127.0.0.1:{port}"
    _write(Path(args.accounts_file), json.dumps({"url": url, "ids": ids, "tokens": tokens}))
    _write(Path(args.port_file), str(port))  # written last: the launcher waits for it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--accounts-file", required=True)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.08)
    parser.add_argument("--secret-env", default="PDSIDECAR_BENCH_SECRET")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--read-budget",
        type=int,
        default=0,
        help="Pipedream's account reads per project per 5 minutes (0: no budget)",
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()


@dataclass
class EmulatorProcess:
    """A running ``python -m harness.emulator_proc``, as its launcher sees it."""

    child: Child
    url: str
    ids: list[str]
    tokens: dict[str, str] = field(repr=False)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_emulator/stats")
        return result

    def reset_stats(self) -> None:
        self.control("POST", "/_emulator/stats/reset", {})

    def stop(self) -> None:
        self.child.stop(grace=5.0)


def start_emulator(
    tmp: Path, *, accounts: int, latency: float, env: dict[str, str], cpus: str | None
) -> EmulatorProcess:
    """The emulator in its own process (on ``cpus``), once it serves."""
    port_file = tmp / "emulator.port"
    accounts_file = tmp / "emulator.accounts.json"
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "harness.emulator_proc",
        *("--port-file", str(port_file), "--accounts-file", str(accounts_file)),
        *("--accounts", str(accounts), "--latency", str(latency)),
    ]
    child = Child(pinned(command, cpus), tmp / "emulator.log", env)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if not child.alive() or time.monotonic() > deadline:
            child.stop(grace=5.0)
            raise RuntimeError(f"the emulator did not start:\n{child.tail()}")
        time.sleep(0.05)
    data = json.loads(accounts_file.read_text())
    return EmulatorProcess(child, data["url"], data["ids"], data["tokens"])
