"""WatchCredentials benchmark: ``python -m bench.watch`` (``--quick`` for a short run).

Starts the emulator (harness/emulator_proc.py, 80 ms latency, 100 Notion accounts) and
``pdsidecar serve`` as processes, then measures from this process, over loopback TCP:

1. **Memory per idle watcher**: the sidecar's RSS with one watcher per account, then with
   ``--idle`` more (spread over the accounts, on 10 connections), settled; the difference
   divided by their number. Nothing rotates meanwhile. Beside it, the floor: the same
   measure for a bare grpc.aio stream that waits forever (bench/watch_floor.py).
2. **Pushed rotation**, 1,000 watchers (10 per account): every account gets a new token at
   the emulator, then one ``GetCredentials`` with ``rejected_access_token`` per account
   (what a worker whose source said 401 sends); the time from that moment to each
   watcher's message with the new token, and the account reads the emulator counted.
3. **Scheduled rotation**, 1,000 watchers: every account rotates on the emulator's
   schedule (a token lives 20 s and is replaced 8 s before it expires) and the sidecar
   re-reads each after ``next_refresh_at`` on its own, spread by its jitter; the time
   from each rotation (the account's ``last_refreshed_at``) to each watcher's message,
   over two rotations, and the reads per rotation.

Results: ``bench/results/watch.json`` and ``watch.md``. The latencies include this
client reading 1,000 streams in one asyncio process on the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from harness.config import write_config
from harness.emulator_proc import EmulatorProcess, start_emulator
from harness.sidecar import SidecarProcess
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROJECT = "proj_demo"
SECRET_ENV = "PDSIDECAR_BENCH_SECRET"
ACCOUNTS = 100
PER_ACCOUNT = 10
CHANNELS = 10
LIFETIME, LEAD = 20.0, 8.0


def _request(account_id: str) -> pb.WatchCredentialsRequest:
    account = pb.AccountRef(project_id=PROJECT, account_id=account_id)
    return pb.WatchCredentialsRequest(account=account, source="notion")


class Watchers:
    """Streams spread over ``CHANNELS`` connections; each records when it got what."""

    def __init__(self, target: str) -> None:
        # A local subchannel pool per channel: separate HTTP/2 connections.
        self.channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CHANNELS)
        ]
        self.stubs = [pb_grpc.CredentialsServiceStub(c) for c in self.channels]
        self.calls: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        # per stream: (wall time received, access token, last_refreshed_at)
        self.received: list[list[tuple[float, str, float]]] = []

    async def open(self, account_ids: list[str]) -> None:
        start = len(self.calls)
        for n, account_id in enumerate(account_ids):
            stub = self.stubs[(start + n) % CHANNELS]
            call = stub.WatchCredentials(_request(account_id), wait_for_ready=True)
            self.calls.append(call)
            self.received.append([])
            self.tasks.append(asyncio.ensure_future(self._follow(len(self.calls) - 1, call)))
        await self.wait(lambda log: len(log) >= 1, self.received[start:])

    async def _follow(self, index: int, call: Any) -> None:
        log = self.received[index]
        try:
            async for message in call:
                refreshed = message.account.last_refreshed_at
                log.append(
                    (
                        time.time(),
                        message.credentials["access_token"],
                        refreshed.seconds + refreshed.nanos / 1e9,
                    )
                )
        except grpc.RpcError:
            pass

    @staticmethod
    async def wait(done: Any, logs: list[list[Any]], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(done(log) for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError("watchers did not receive what was expected in time")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close(grace=None)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


async def _settled_rss(sidecar: SidecarProcess) -> int:
    """RSS once it stops moving (three reads 0.5 s apart within 64 KB)."""
    readings: list[int] = []
    for _ in range(40):
        readings.append(sidecar.usage().rss_bytes)
        if len(readings) >= 3 and max(readings[-3:]) - min(readings[-3:]) < 64 * 1024:
            break
        await asyncio.sleep(0.5)
    return readings[-1]


async def idle_memory(sidecar: SidecarProcess, ids: list[str], idle: int) -> dict[str, Any]:
    watchers = Watchers(sidecar.target)
    try:
        await watchers.open(ids)  # warm: one feed per account, the cache filled
        before = await _settled_rss(sidecar)
        await watchers.open([ids[n % len(ids)] for n in range(idle)])
        after = await _settled_rss(sidecar)
    finally:
        await watchers.close()
    return {
        "watchers": idle,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "bytes_per_watcher": round((after - before) / idle),
    }


async def pushed(
    sidecar: SidecarProcess, emulator: EmulatorProcess, ids: list[str]
) -> dict[str, Any]:
    watchers = Watchers(sidecar.target)
    try:
        await watchers.open([a for a in ids for _ in range(PER_ACCOUNT)])
        old = {a: watchers.received[n * PER_ACCOUNT][0][1] for n, a in enumerate(ids)}
        new = {
            a: emulator.control("POST", f"/_emulator/accounts/{PROJECT}/{a}/rotate", {})[
                "access_token"
            ]
            for a in ids
        }
        emulator.reset_stats()
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            answered: dict[str, float] = {}

            async def reject(account_id: str) -> None:
                await stub.GetCredentials(
                    pb.GetCredentialsRequest(
                        account=pb.AccountRef(project_id=PROJECT, account_id=account_id),
                        source="notion",
                        rejected_access_token=old[account_id],
                    )
                )
                answered[account_id] = time.time()

            started = time.time()
            await asyncio.gather(*(reject(a) for a in ids))
        await watchers.wait(lambda log: len(log) >= 2, watchers.received)
        latencies, after_answer = [], []
        for n, log in enumerate(watchers.received):
            account_id = ids[n // PER_ACCOUNT]
            when = next(t for t, token, _ in log if token == new[account_id])
            latencies.append(when - started)
            after_answer.append(when - answered[account_id])
        reads = emulator.stats()["requests"]["account"]
    finally:
        await watchers.close()
    return {
        "watchers": len(latencies),
        "account_reads": reads,
        **_percentiles(latencies),
        # From the rejected_access_token call's answer for the account to each of its
        # watchers' messages (negative: the push came first).
        "after_answer": _percentiles(after_answer),
    }


async def scheduled(
    sidecar: SidecarProcess, emulator: EmulatorProcess, ids: list[str], rotations: int
) -> dict[str, Any]:
    for account_id in ids:
        path = f"/_emulator/accounts/{PROJECT}/{account_id}/rotation"
        emulator.control("POST", path, {"lifetime": LIFETIME, "lead": LEAD})
    watchers = Watchers(sidecar.target)
    try:
        await watchers.open([a for a in ids for _ in range(PER_ACCOUNT)])
        emulator.reset_stats()
        await watchers.wait(
            lambda log: len(log) >= rotations + 1,
            watchers.received,
            timeout=(LIFETIME - LEAD) * (rotations + 2),
        )
        reads = emulator.stats()["requests"]["account"]
        latencies = [t - refreshed for log in watchers.received for t, _, refreshed in log[1:]]
    finally:
        await watchers.close()
    return {
        "watchers": len(watchers.received),
        "rotations_per_account": rotations,
        "account_reads": reads,
        "token_lifetime_s": LIFETIME,
        "refresh_lead_s": LEAD,
        **_percentiles(latencies),
    }


def _markdown(results: dict[str, Any]) -> str:
    m, p, s = results["idle_memory"], results["pushed"], results["scheduled"]
    return "\n".join(
        [
            "# WatchCredentials benchmark",
            "",
            f"{results['date']}, {results['machine']}, load average "
            f"{results['load_average_1m']} at the end (a shared machine); `python -m bench.watch`.",
            "",
            "| measure | result | goal |",
            "|---|---|---|",
            f"| memory per idle watcher ({m['watchers']:,} streams, sidecar RSS "
            f"{m['rss_before_mb']} → {m['rss_after_mb']} MB) | "
            f"{m['bytes_per_watcher'] / 1024:.1f} KB | < 10 KB |",
            f"| the same for a bare grpc.aio stream (no pdsidecar code) | "
            f"{m['grpc_floor_bytes_per_stream'] / 1024:.1f} KB | |",
            f"| pushed rotation → every watcher's message ({p['watchers']:,} watchers on "
            f"{ACCOUNTS} accounts) | p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
            f"max {p['max_ms']} ms | |",
            f"| the same, from each account's `rejected_access_token` answer to its "
            f"watchers' messages | p50 {p['after_answer']['p50_ms']} ms, "
            f"p99 {p['after_answer']['p99_ms']} ms | |",
            f"| upstream reads for that rotation | {p['account_reads']} | {ACCOUNTS} |",
            f"| scheduled rotation (`last_refreshed_at`) → message ({s['watchers']:,} watchers, "
            f"{s['rotations_per_account']} rotations each) | p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms | |",
            f"| upstream reads for those rotations | {s['account_reads']} | "
            f"{ACCOUNTS * s['rotations_per_account']} |",
            "",
            "The scheduled latency is mostly deliberate: the sidecar re-reads an account "
            "0.5 s after `next_refresh_at` plus a random delay of up to a quarter of the "
            f"refresh lead ({LEAD:g} s here, so up to {LEAD / 4:g} s) so that accounts "
            "Pipedream refreshed together are not re-read together; the token it replaces "
            f"works for {LEAD:g} s more. Reads include the emulator's 80 ms latency; the "
            "pushed case reads 100 accounts at once through `upstream_concurrency` 32.",
            "",
        ]
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, SECRET_ENV: secrets.token_urlsafe(24)}
    emulator = start_emulator(tmp, accounts=ACCOUNTS, latency=0.08, env=env, cpus=None)
    sidecar = None
    try:
        policy = {"max_watchers": 50_000}
        config = write_config(
            tmp / "watch.toml", emulator.url, secret_env=SECRET_ENV, policy=policy
        )
        sidecar = SidecarProcess(config, tmp / "sidecar-watch.log", env)
        ids = emulator.ids[:ACCOUNTS]
        print(f"idle memory with {args.idle:,} watchers...", flush=True)
        memory = await idle_memory(sidecar, ids, args.idle)
        floor = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bench.watch_floor", "--streams", str(args.idle)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        memory["grpc_floor_bytes_per_stream"] = json.loads(floor.stdout)["bytes_per_stream"]
        print(f"  {memory}", flush=True)
        print("pushed rotation, 1,000 watchers...", flush=True)
        push = await pushed(sidecar, emulator, ids)
        print(f"  {push}", flush=True)
        print("scheduled rotation, 1,000 watchers (a new sidecar: nothing cached)...", flush=True)
        sidecar.stop()
        sidecar = SidecarProcess(config, tmp / "sidecar-watch-2.log", env)
        schedule = await scheduled(sidecar, emulator, ids, args.rotations)
        print(f"  {schedule}", flush=True)
    finally:
        if sidecar is not None:
            sidecar.stop()
        emulator.stop()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # The machine is shared: the 1-minute load average at the end says how much.
        "load_average_1m": round(os.getloadavg()[0], 1),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}",
        "idle_memory": memory,
        "pushed": push,
        "scheduled": schedule,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 idle watchers, 1 rotation")
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--rotations", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.idle, args.rotations = 1000, 1
    results = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "watch.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "watch.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
