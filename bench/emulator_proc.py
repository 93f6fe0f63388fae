"""The benchmark's Pipedream: the project's emulator in its own process, with many accounts.

``python -m bench.emulator_proc --port-file F --accounts N --latency 0.08`` serves the
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
from pathlib import Path
from typing import Any

from aiohttp import web
from pdsidecar_emulator import EmulatorState, build_app
from pdsidecar_emulator.models import Plan, Route

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
