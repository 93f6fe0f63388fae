"""The benchmark, one command: ``python -m bench.run`` (``--quick`` for a short run).

It installs ghz (pinned, with ``go install``) into ``.tools/bin`` if missing, starts the
Pipedream emulator (harness/emulator_proc.py) with 80 ms latency and generated accounts,
starts ``pdsidecar serve`` processes against it, runs every scenario of bench/scenarios.py
with ghz over loopback TCP, then the soak (bench/soak.py), and writes
``bench/results/latest.{json,md,png}``. Scratch files and process logs go to
``bench/results/tmp/`` (ignored by git).

On a machine with two or more cores the sidecar is pinned to the last core and ghz, the
emulator and this process to the others (``--no-pin`` to not pin), so the numbers are
those of one server core; ``--workers`` and the scaling table run unpinned.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("installing matplotlib (bench only) with pip...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)


def _machine(ghz_version: str | None) -> dict[str, Any]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    go = shutil.which("go")
    go_version = (
        subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip() if go else ""
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": importlib.metadata.version("grpcio"),
        "ghz": ghz_version,
        "go": go_version,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _options(args: argparse.Namespace) -> Any:
    from bench.scenarios import Options

    cores = os.cpu_count() or 1
    pin = not args.no_pin and cores >= 2 and args.workers == 1
    server_cpus = str(cores - 1) if pin else None
    client_cpus = (f"0-{cores - 2}" if cores > 2 else "0") if pin else None
    quick = args.quick
    return Options(
        quick=quick,
        workers=args.workers,
        duration=args.duration or (4.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        concurrency=args.concurrency,
        connections=args.connections,
        latency=args.latency,
        spread=1000 if quick else 10_000,
        storm=1000,
        misses=50 if quick else 200,
        upstream_concurrency=args.upstream_concurrency,
        rounds=args.rounds or (1 if quick else 5),
        server_cpus=server_cpus,
        client_cpus=client_cpus,
    )


def _step(results: dict[str, Any], key: str, step: Any) -> None:
    """One part of the run; a failure is written into the results, not fatal."""
    try:
        results[key] = step()
    except Exception as error:  # the results of the other parts are still written
        print(f"  {key} failed: {type(error).__name__}: {error}", flush=True)
        results.setdefault("failed_parts", {})[key] = f"{type(error).__name__}: {error}"[:3000]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1,000 spread accounts")
    parser.add_argument("--workers", type=int, default=1, help="sidecar processes on one port")
    parser.add_argument(
        "--scaling",
        default=None,
        help="worker counts for the scaling table, e.g. 1,2 (default: 1,2 when the sidecar "
        "supports --workers; 'none' to skip)",
    )
    parser.add_argument(
        "--soak", type=float, default=None, help="soak seconds (default 60, quick 10; 0 skips)"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of scenarios 1-3")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.08, help="emulator latency, seconds")
    parser.add_argument("--upstream-concurrency", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.* go")
    args = parser.parse_args(argv)

    from bench.ghz import Ghz, ensure_ghz, ghz_version, write_protoset
    from bench.report import chart, markdown, targets
    from bench.scenarios import Accounts, Context, run_main, run_scaling
    from bench.soak import run_soak
    from harness.emulator_proc import start_emulator
    from harness.processes import all_cpus

    options = _options(args)
    soak_seconds = args.soak if args.soak is not None else (10.0 if args.quick else 60.0)
    tmp = args.out / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    _ensure_matplotlib()
    ghz_bin = ensure_ghz(ROOT / ".tools" / "bin")
    from grpc_health.v1 import health_pb2

    from pdsidecar_client.v1 import credentials_pb2

    protoset = write_protoset(
        tmp / "pdsidecar.protoset", health_pb2.DESCRIPTOR, credentials_pb2.DESCRIPTOR
    )
    if options.client_cpus:
        # This process runs the soak's checking client: keep it off the sidecar's core.
        last = int(options.client_cpus.split("-")[-1])
        os.sched_setaffinity(0, set(range(last + 1)))

    secret_env = "PDSIDECAR_BENCH_SECRET"
    # The emulator's process imports bench/; an existing PYTHONPATH keeps precedence.
    python_path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    env = {**os.environ, secret_env: secrets.token_urlsafe(24), "PYTHONPATH": python_path}
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"emulator: {Accounts.needed(options)} accounts, latency {options.latency * 1000:.0f} ms",
        flush=True,
    )
    emulator = start_emulator(
        tmp,
        accounts=Accounts.needed(options),
        latency=options.latency,
        env=env,
        cpus=options.client_cpus or all_cpus(),
    )
    results: dict[str, Any] = {
        "started": started,
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _machine(ghz_version(ghz_bin)),
        "options": vars(options),
    }
    t0 = time.monotonic()
    try:
        ctx = Context(
            tmp=tmp,
            ghz=Ghz(ghz_bin, protoset, tmp, options.client_cpus),
            emulator=emulator,
            env=env,
            secret_env=secret_env,
            options=options,
            accounts=Accounts.split(emulator.ids, options),
        )
        results["scenarios"] = run_main(ctx)
        scaling = args.scaling or ("none" if args.quick else "1,2")
        if scaling != "none":
            counts = [int(n) for n in scaling.split(",")]
            _step(results, "scaling", lambda: run_scaling(ctx, counts))
        if soak_seconds > 0:
            print(f"  soak: {soak_seconds:.0f} s with faults", flush=True)
            _step(results, "soak", lambda: run_soak(ctx, soak_seconds))
    finally:
        emulator.stop()
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    (args.out / "latest.md").write_text(markdown(results))
    chart(results, args.out / "latest.png")
    print((args.out / "latest.md").read_text())
    missed = [t["target"] for t in results["targets"] if t["met"] is False]
    print(
        f"targets met: {sum(1 for t in results['targets'] if t['met'])}/{len(results['targets'])}"
    )
    if missed:
        print("missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
