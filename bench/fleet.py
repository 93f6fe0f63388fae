"""The fleet scenario: S sidecars over A accounts for a simulated 15 minutes, with and without
the shared tier, against the emulator with Pipedream's read budget.

    python -m bench.fleet                 # S = 1, 2, 5, 10; A = 400; about 2 minutes
    python -m bench.fleet --quick         # S = 1, 5; 5 simulated minutes
    python -m bench.fleet --processes     # real processes, default timeout, idle reads
                                          # (bench/fleet_procs.py)

Everything runs in one event loop, so 10 sidecars fit on 2 cores: S in-process
:class:`~pdsidecar.runtime.sidecar.Sidecar` instances (each with its own cache, Pipedream
token and, with the tier, its own Redis clients and event subscription), the emulator
(aiohttp, 20 ms latency, 2,000 account reads per 5 minutes per project, 429 with
Retry-After beyond) and one real ``redis-server`` on a Unix socket. Calls go straight to
each sidecar's credential broker (no gRPC: the network layer does not change what reaches
Pipedream, and skipping it leaves the CPU to the sidecars).

Simulated time: one clock (:class:`~pdsidecar.clock.ManualClock`) drives the sidecars and
the emulator; it advances 10 s per tick, 90 ticks for 15 minutes. The workload is the same
for every S: each tick, ``--calls`` GetCredentials (200) for accounts drawn uniformly from
A, spread round-robin over the S sidecars and made all at once (a sync platform that
spreads the same jobs over more pods). Redis's own TTLs run on real time; the sidecars
judge freshness from the timestamps inside the values, on the simulated clock.

Reported per (S, tier): Pipedream account reads in each 5-minute window, token requests,
429s seen by callers, and the latency Redis adds to a miss (a cold account, one at a time:
the call's time minus the time spent in the Pipedream request itself), measured
separately on real time. Results: ``bench/results/fleet.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pdsidecar_emulator import Emulator, EmulatorState

from harness.redis import PASSWORD, USER, RedisServer, redis_servers
from pdsidecar.clock import ManualClock
from pdsidecar.config.listen import parse_listen
from pdsidecar.credentials.broker import AccountQuery
from pdsidecar.errors import RateLimited
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, FleetConfig, Policy, Settings

RESULTS = Path(__file__).resolve().parent / "results"
CLIENT_ID, CLIENT_SECRET = "fleet-client", "fleet-client-secret-not-real"
PROJECT = "proj_demo"
TICK = 10.0


def settings(url: str, redis_url: str | None) -> Settings:
    shared = None
    if redis_url is not None:
        key = Secret(base64.b64encode(os.urandom(32)).decode())
        shared = FleetConfig(
            url=redis_url,
            keys=(key,),
            username=USER,
            password=Secret(PASSWORD),
            namespace="bench",
            # All sidecars share one event loop here: its lag must not count as Redis trouble.
            timeout=0.5,
        )
    return Settings(
        pipedream_url=url,
        connections={"default": ConnectionConfig("default", CLIENT_ID, Secret(CLIENT_SECRET))},
        policy=Policy(backoff_initial=0.01, backoff_max=0.05),
        fleet=shared,
    )


def query(account_id: str) -> AccountQuery:
    return AccountQuery("default", PROJECT, account_id, "production", None, "notion")


@contextlib.asynccontextmanager
async def fleet(
    count: int, emulator: Emulator, redis_url: str | None, clock: ManualClock
) -> AsyncIterator[list[Sidecar]]:
    base = settings(emulator.url, redis_url)
    sidecars = []
    try:
        for _ in range(count):
            sidecar = Sidecar(base, [parse_listen("127.0.0.1:0")], clock=clock)
            await sidecar.start()
            sidecars.append(sidecar)
        for sidecar in sidecars:
            if sidecar.fleet is not None:
                await sidecar.fleet.store.subscribed(5.0)
        yield sidecars
    finally:
        for sidecar in sidecars:
            await sidecar.stop(grace=0)


async def run_one(
    count: int, shared: bool, args: argparse.Namespace, redis: RedisServer
) -> dict[str, Any]:
    clock = ManualClock()
    state = EmulatorState(clock=clock.wall, seed=3)
    state.add_client(CLIENT_ID, CLIENT_SECRET)
    ids = state.add_generated_accounts(args.accounts, project_id=PROJECT)
    state.set_latency(args.latency)
    redis.client().flushall()
    rng = random.Random(11)
    windows: list[int] = []
    limited = errors = calls = 0
    tier = redis.url if shared else None
    async with Emulator(state) as emulator, fleet(count, emulator, tier, clock) as sidecars:
        if True:
            tokens_at_start = state.tokens_issued
            window_start = state.requests["account"]
            ticks = int(args.minutes * 60 / TICK)
            for tick in range(ticks):
                deadline = clock.monotonic() + 30
                jobs = [
                    sidecars[i % count].service.get_credentials(
                        query(rng.choice(ids)), deadline=deadline
                    )
                    for i in range(args.calls)
                ]
                results = await asyncio.gather(*jobs, return_exceptions=True)
                calls += len(results)
                for result in results:
                    if isinstance(result, RateLimited):
                        limited += 1
                    elif isinstance(result, BaseException):
                        errors += 1
                clock.advance(TICK)
                if (tick + 1) % int(300 / TICK) == 0:
                    windows.append(state.requests["account"] - window_start)
                    window_start = state.requests["account"]
            out = {
                "sidecars": count,
                "shared": shared,
                "accounts": args.accounts,
                "calls": calls,
                "reads_per_5min": windows,
                "account_requests": state.requests["account"],
                "account_429": state.statuses["account"].get(429, 0),
                "token_requests": state.tokens_issued,
                "tokens_at_start": tokens_at_start,
                "rate_limited_callers": limited,
                "other_errors": errors,
            }
    return out


async def miss_latency(
    shared: bool, args: argparse.Namespace, redis: RedisServer
) -> dict[str, Any]:
    """Cold accounts one at a time (real time): the call minus its Pipedream request."""
    state = EmulatorState(seed=3, read_budget=None)
    state.add_client(CLIENT_ID, CLIENT_SECRET)
    ids = state.add_generated_accounts(args.samples + 20, project_id=PROJECT)
    redis.client().flushall()
    async with Emulator(state) as emulator:
        base = settings(emulator.url, redis.url if shared else None)
        sidecar = Sidecar(base, [parse_listen("127.0.0.1:0")])
        await sidecar.start()
        try:
            connection = sidecar.connections["default"]
            spent: list[float] = []
            original: Callable[..., Awaitable[Any]] = connection.get_account

            async def timed(*a: Any, **k: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*a, **k)
                finally:
                    spent.append(time.perf_counter() - started)

            connection.get_account = timed  # type: ignore[method-assign]
            added = []
            for account_id in ids[:20]:  # warm up: connections, token, code paths
                await sidecar.service.get_credentials(query(account_id), deadline=None)
            for account_id in ids[20:]:
                spent.clear()
                started = time.perf_counter()
                await sidecar.service.get_credentials(query(account_id), deadline=None)
                total = time.perf_counter() - started
                added.append(total - sum(spent))
            # A miss another sidecar already filled: the Redis read alone.
            hits = []
            if shared:
                other = Sidecar(base, [parse_listen("127.0.0.1:0")])
                await other.start()
                try:
                    for account_id in ids[20:]:
                        started = time.perf_counter()
                        await other.service.get_credentials(query(account_id), deadline=None)
                        hits.append(time.perf_counter() - started)
                finally:
                    await other.stop(grace=0)
        finally:
            await sidecar.stop(grace=0)
    out = {"shared": shared, "miss_overhead_p50_ms": statistics.median(added) * 1000}
    out["miss_overhead_p90_ms"] = statistics.quantiles(added, n=10)[-1] * 1000
    if hits:
        out["shared_hit_p50_ms"] = statistics.median(hits) * 1000
        out["shared_hit_p90_ms"] = statistics.quantiles(hits, n=10)[-1] * 1000
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Fleet benchmark",
        "",
        f"{results['when']}; {results['machine']}. `python -m bench.fleet"
        f"{' --quick' if results['quick'] else ''}`: {results['accounts']} accounts, "
        f"{results['calls']} calls per 10 s tick spread over the sidecars, "
        f"{results['minutes']:.0f} simulated minutes, emulator latency "
        f"{results['emulator_latency'] * 1000:.0f} ms and budget "
        "2,000 reads per 5 min per project. Sidecars are in-process instances in one event "
        "loop (Redis timeout 500 ms, so that the shared loop's lag is not taken for Redis "
        "trouble).",
        "",
        "| sidecars | shared tier | Pipedream account requests per 5 min (429s included) | "
        "token requests | 429s from Pipedream | callers answered RATE_LIMITED | other errors |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['sidecars']} | {'yes' if run['shared'] else 'no'} | "
            f"{', '.join(str(w) for w in run['reads_per_5min'])} | {run['token_requests']} | "
            f"{run['account_429']} | {run['rate_limited_callers']} | {run['other_errors']} |"
        )
    load = ", ".join(f"{x:.1f}" for x in results.get("load", ()))
    lines += [
        "",
        "Latency Redis adds (real time, one sidecar, cold accounts one at a time; load average "
        f"of the shared machine when measured: {load}):",
        "",
    ]
    lines += ["| shared tier | miss overhead p50 | p90 | miss answered from Redis p50 | p90 |"]
    lines += ["|---|---:|---:|---:|---:|"]
    for m in results["latency"]:
        lines.append(
            f"| {'yes' if m['shared'] else 'no'} | {m['miss_overhead_p50_ms']:.2f} ms | "
            f"{m['miss_overhead_p90_ms']:.2f} ms | "
            f"{_ms(m.get('shared_hit_p50_ms'))} | {_ms(m.get('shared_hit_p90_ms'))} |"
        )
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for shared, label in ((False, "each sidecar alone"), (True, "shared tier (Redis)")):
        runs = [r for r in results["runs"] if r["shared"] is shared]
        xs = [r["sidecars"] for r in runs]
        asked = [max(r["reads_per_5min"]) for r in runs]
        ax.plot(xs, asked, marker="o", label=label)
    ax.axhline(2000, color="grey", linestyle="--", linewidth=1, label="Pipedream budget")
    ax.set_xlabel("sidecars (S)")
    ax.set_ylabel("Pipedream account requests, busiest 5 min")
    ax.set_title(f"Fleet over {results['accounts']} accounts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main(args: argparse.Namespace) -> None:
    sizes = [1, 5] if args.quick else [1, 2, 5, 10]
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "quick": args.quick,
        "accounts": args.accounts,
        "calls": args.calls,
        "minutes": args.minutes,
        "emulator_latency": args.latency,
        "runs": [],
    }
    if args.latency_only:
        results = json.loads((RESULTS / "fleet.json").read_text())
    with redis_servers(1) as [redis]:
        if not args.latency_only:
            for count in sizes:
                for shared in (False, True):
                    run = await run_one(count, shared, args, redis)
                    print(json.dumps(run), flush=True)
                    results["runs"].append(run)
        results["load"] = os.getloadavg()
        results["latency"] = [await miss_latency(s, args, redis) for s in (False, True)]
        print(json.dumps(results["latency"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "fleet.md").write_text(markdown(results))
    try:
        chart(results, RESULTS / "fleet.png")
    except ImportError:
        print("matplotlib is missing (pip install -e '.[bench]'): no chart", flush=True)


def cli() -> None:
    from bench import fleet_procs  # it imports this module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--calls", type=int, default=200, help="per tick, over all sidecars")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--latency-only", action="store_true", help="measure the latency again, keep the runs"
    )
    parser.add_argument(
        "--processes", action="store_true", help="real sidecar processes (bench/fleet_procs.py)"
    )
    fleet_procs.add_arguments(parser)
    args = parser.parse_args()
    if args.processes:
        fleet_procs.run(args, sys.argv[1:])
        return
    if args.quick:
        args.minutes, args.samples = 5.0, 100
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
