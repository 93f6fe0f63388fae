"""The fleet with real processes: S ``pdsidecar serve`` processes, one ``redis-server``, the
emulator in its own process, the fleet tier on its default Redis timeout.

    python -m bench.fleet --processes                    # 3 sidecars, 10 idle minutes
    python -m bench.fleet --processes --idle-minutes 1   # a short run

Beside it, the same burst on S in-process sidecars (one event loop, same Redis, same
emulator), as ``bench.fleet`` measures the tier: the difference is what separate
processes (their own loops, real scheduling) change. Two phases, counted at the
emulator (``/_emulator/stats``):

1. **Cold burst**, ``--runs`` times on new accounts: ``--callers`` concurrent callers
   spread over the sidecars each ask for every one of ``--accounts`` accounts; right is
   one Pipedream read per account, fleet-wide.
2. **Idle**: every sidecar watches every account (WatchCredentials streams) of a set
   of OAuth and key-based accounts; then nothing happens for ``--idle-minutes``.
   Reads beyond the schedules (key-based accounts are re-read every
   ``credentials_max_age``; OAuth ones at ``next_refresh_at``, an hour away) are a bug.

Results: ``bench/results/fleet_processes.{json,md}``. Timing on a shared machine is
noise; the counts are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from harness.config import write_config
from harness.emulator_proc import BENCH_CLIENT_ID, EmulatorProcess, start_emulator
from harness.redis import RedisServer, make_key_file, redis_servers
from harness.sidecar import SidecarProcess
from pdsidecar.config.listen import parse_listen
from pdsidecar.config.load import load_settings
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = "proj_demo"
SECRET_ENV = "PDSIDECAR_BENCH_SECRET"  # what bench.emulator_proc reads


def fleet_config(tmp: Path, emulator_url: str, redis: RedisServer) -> Path:
    """The sidecars' config: the bench client, the ``[fleet]`` table on the default timeout
    (what the issue measured)."""
    fleet = redis.config_toml([make_key_file(tmp, "fleet.key")])
    connections = {"default": BENCH_CLIENT_ID}
    return write_config(
        tmp / "fleet.toml", emulator_url, connections, fleet, secret_env=SECRET_ENV, policy={}
    )


def reads(emulator: EmulatorProcess) -> tuple[int, int]:
    """(account requests, token requests) so far."""
    requests = emulator.stats().get("requests", {})
    return int(requests.get("account", 0)), int(requests.get("token", 0))


def generate(emulator: EmulatorProcess, count: int, app: str = "notion") -> list[str]:
    body = {"n": count, "app": app}
    ids: list[str] = emulator.control("POST", "/_emulator/accounts/generate", body)["ids"]
    return ids


def request(account_id: str, app: str) -> pb.GetCredentialsRequest:
    fields = ["api_key"] if app == "coda" else []
    return pb.GetCredentialsRequest(
        account=pb.AccountRef(project_id=PROJECT, account_id=account_id),
        source=app,
        required_fields=fields,
    )


async def burst(targets: list[str], ids: list[str], callers: int) -> float:
    """Every caller asks for every account on its sidecar, all at once; seconds taken."""
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [pb_grpc.CredentialsServiceStub(c) for c in channels]
    started = time.perf_counter()

    async def caller(number: int) -> None:
        stub = stubs[number % len(stubs)]
        for account_id in ids[number % len(ids) :] + ids[: number % len(ids)]:
            await stub.GetCredentials(request(account_id, "notion"), timeout=30)

    try:
        await asyncio.gather(*(caller(n) for n in range(callers)))
        return time.perf_counter() - started
    finally:
        for channel in channels:
            await channel.close()


async def cold_bursts(
    emulator: EmulatorProcess, targets: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    runs = []
    for _ in range(args.runs):
        ids = generate(emulator, args.burst_accounts)
        before, _ = reads(emulator)
        took = await burst(targets, ids, args.callers)
        after, _ = reads(emulator)
        runs.append({"reads": after - before, "right": len(ids), "seconds": round(took, 2)})
    return runs


async def idle(
    emulator: EmulatorProcess, targets: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    watched = [(a, "notion") for a in generate(emulator, args.watched)]
    watched += [(a, "coda") for a in generate(emulator, args.watched_keys, app="coda")]
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    streams = []
    for channel in channels:
        stub = pb_grpc.CredentialsServiceStub(channel)
        for account_id, app in watched:
            fields = ["api_key"] if app == "coda" else []
            call = stub.WatchCredentials(
                pb.WatchCredentialsRequest(
                    account=pb.AccountRef(project_id=PROJECT, account_id=account_id),
                    source=app,
                    required_fields=fields,
                )
            )
            await call.read()  # the first value: the stream is open
            streams.append(call)
    before, tokens_before = reads(emulator)
    await asyncio.sleep(args.idle_minutes * 60)
    after, tokens_after = reads(emulator)
    ended = sum(1 for call in streams if call.done())
    for call in streams:
        call.cancel()
    for channel in channels:
        await channel.close()
    max_age = 300.0  # the default credentials_max_age
    scheduled = args.watched_keys * int(args.idle_minutes * 60 // max_age)
    return {
        "minutes": args.idle_minutes,
        "streams": len(streams),
        "account_reads": after - before,
        "scheduled_reads_at_most": scheduled,
        "token_requests": tokens_after - tokens_before,
        "streams_ended": ended,
    }


async def in_process(config: Path, args: argparse.Namespace, emulator: EmulatorProcess) -> Any:
    settings = load_settings(config, {SECRET_ENV: os.environ[SECRET_ENV]})
    sidecars = [Sidecar(settings, [parse_listen("127.0.0.1:0")]) for _ in range(args.sidecars)]
    for sidecar in sidecars:
        await sidecar.start()
    try:
        return await cold_bursts(emulator, [s.bound[0] for s in sidecars], args)
    finally:
        for sidecar in sidecars:
            await sidecar.stop(grace=0)


def markdown(results: dict[str, Any]) -> str:
    a = results["args"]
    lines = [
        "# Fleet with real processes",
        "",
        f"{a['sidecars']} `pdsidecar serve` processes, one redis-server (Unix socket), the "
        "emulator in its own process, the fleet tier on its default Redis timeout. Command: "
        f"`{results['command']}`. Shared 2-core machine: times are noise, counts are not.",
        "",
        f"## Cold burst: {a['callers']} callers x {a['burst_accounts']} accounts",
        "",
        "| sidecars | run | Pipedream reads | right | seconds |",
        "|---|---|---|---|---|",
    ]
    for where in ("processes", "in_process"):
        for index, run in enumerate(results[where], 1):
            lines.append(
                f"| {where.replace('_', '-')} | {index} | {run['reads']} | {run['right']} | "
                f"{run['seconds']} |"
            )
    idle_run = results["idle"]
    lines += [
        "",
        f"## Idle: {idle_run['minutes']} minutes, {idle_run['streams']} watch streams",
        "",
        f"- Pipedream account reads: **{idle_run['account_reads']}** (scheduled, at most: "
        f"{idle_run['scheduled_reads_at_most']})",
        f"- Pipedream token requests: {idle_run['token_requests']}",
        f"- streams ended: {idle_run['streams_ended']}",
        "",
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    secret = base64.b64encode(os.urandom(18)).decode()
    os.environ[SECRET_ENV] = secret
    env = {**os.environ}
    with tempfile.TemporaryDirectory(prefix="pd-fleetp-", dir="/tmp") as folder:
        tmp = Path(folder)
        emulator = start_emulator(tmp, accounts=1, latency=args.latency, env=env, cpus=None)
        try:
            with redis_servers(1) as [redis]:
                config = fleet_config(tmp, emulator.url, redis)
                sidecars = [
                    SidecarProcess(config, tmp / f"sidecar{n}.log", env, ready_timeout=60)
                    for n in range(args.sidecars)
                ]
                try:
                    targets = [s.target for s in sidecars]
                    processes = await cold_bursts(emulator, targets, args)
                    idle_run = await idle(emulator, targets, args)
                finally:
                    for sidecar in sidecars:
                        sidecar.stop()
                redis.client().flushall()
                inside = await in_process(config, args, emulator)
        finally:
            emulator.stop()
    results = {
        "command": "python -m bench.fleet " + " ".join(args.argv),
        "args": {k: v for k, v in vars(args).items() if k != "argv"},
        "processes": processes,
        "in_process": inside,
        "idle": idle_run,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_processes.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "fleet_processes.md").write_text(markdown(results))
    print(markdown(results))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--processes: real sidecar processes")
    group.add_argument("--sidecars", type=int, default=3)
    group.add_argument("--burst-accounts", type=int, default=30)
    group.add_argument("--callers", type=int, default=45)
    group.add_argument("--runs", type=int, default=3)
    group.add_argument("--idle-minutes", type=float, default=10.0)
    group.add_argument("--watched", type=int, default=5, help="OAuth accounts watched")
    group.add_argument("--watched-keys", type=int, default=2, help="key-based accounts watched")


def run(args: argparse.Namespace, argv: list[str]) -> None:
    args.argv = argv
    asyncio.run(main(args))
