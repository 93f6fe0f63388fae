"""The always-current credentials object, per language: ``python -m bench.clients``.

Runs each language's conformance driver (tests/conformance/drivers.py) in its ``bench``
scenario (client/SPEC.md, "Conformance driver") against the emulator and one sidecar
(``pdsidecar serve``), and measures:

1. **Read cost**: ns per read of the object's access token (N reads in a tight loop,
   timed inside the driver).
2. **Memory per held object**: the driver's heap growth over building ``--objects``
   objects, divided by their number, as the driver measures it (Python: tracemalloc,
   Python allocations only, not gRPC core's).
3. **Rotation to readable**: for each of the ``--objects`` accounts, the emulator moves to
   a new token and this process sends the sidecar one GetCredentials with
   ``rejected_access_token`` (what a worker whose source said 401 sends); from that moment
   to the driver first reading the new token from its object (p50/p99; both clocks are
   this machine's wall clock).

Results: ``bench/results/clients.json`` and ``clients.md``. Languages whose driver is
not built (or has no ``bench`` scenario) are listed with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pdsidecar_emulator import DEMO_PROJECT_ID

from pdsidecar_client import CredentialsClient
from tests.conformance import drivers
from tests.conformance.stack import Stack, start_stack
from tests.support.certs import make_certs
from tests.support.logsink import LogSink

RESULTS = Path(__file__).resolve().parent / "results"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(stack: Stack, driver: drivers.Driver, objects: int, reads: int) -> dict[str, Any]:
    generated = stack.control(
        "POST", "accounts/generate", {"n": objects, "project_id": DEMO_PROJECT_ID}
    )
    accounts: list[str] = generated["ids"]
    argv = [*driver.argv, "bench", "--target", stack.target("plain")]
    argv += ["--project", DEMO_PROJECT_ID, "--source", "notion", "--reads", str(reads)]
    argv += ["--duration-s", "30"]
    for account in accounts:
        argv += ["--account", account]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    if ready.get("event") != "ready":
        proc.kill()
        return {"error": f"no ready line (exit {proc.wait()})"}
    sent: dict[str, float] = {}
    with CredentialsClient(stack.target("plain")) as client:
        for account in accounts:
            path = f"accounts/{DEMO_PROJECT_ID}/{account}"
            old = stack.control("PATCH", path, {})["credentials"]["oauth_access_token"]
            stack.control("POST", f"{path}/rotate")
            sent[account] = time.time() * 1000
            client.get_credentials(DEMO_PROJECT_ID, account, "notion", rejected_access_token=old)
    result = json.loads(proc.stdout.read().strip().splitlines()[-1])
    proc.wait()
    changed: dict[str, int] = result.get("changed_at_ms", {})
    latencies = [changed[a] - sent[a] for a in accounts if a in changed]
    return {
        "read_ns": round(ready["read_ns"], 1),
        "bytes_per_object": ready.get("bytes_per_object"),
        "objects": objects,
        "rotations_seen": len(latencies),
        "rotation_ms_p50": round(_percentile(latencies, 0.5), 1) if latencies else None,
        "rotation_ms_p99": round(_percentile(latencies, 0.99), 1) if latencies else None,
        "rotation_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
    }


def markdown(rows: dict[str, dict[str, Any]], command: str) -> str:
    lines = [
        "# The always-current credentials object, per language",
        "",
        f"`{command}` on {platform.machine()}, {platform.python_version()}; "
        "a shared 2-core machine: the numbers are noisy.",
        "",
        "| language | read (ns) | memory per object (bytes) | rotation→readable p50 (ms) "
        "| p99 (ms) | rotations seen |",
        "|---|---|---|---|---|---|",
    ]
    notes = [
        "",
        "Read: one object's access token read in a tight loop, timed inside the driver. Memory:",
        "the driver's own heap growth over building the objects (Python: tracemalloc, Python",
        "allocations only; the others: their runtime's heap measure, see each driver's bench).",
        "Rotation: from the harness's `rejected_access_token` call after a rotation at the",
        "emulator to the driver first reading the new token (it polls every 1 ms).",
    ]
    for lang, row in rows.items():
        if "error" in row:
            lines.append(f"| {lang} | {row['error']} | | | | |")
            continue
        lines.append(
            f"| {lang} | {row['read_ns']} | {row['bytes_per_object']} | {row['rotation_ms_p50']} "
            f"| {row['rotation_ms_p99']} | {row['rotations_seen']}/{row['objects']} |"
        )
    return "\n".join(lines + notes) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--langs", default=",".join(drivers.LANGS))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pdbench-", dir="/tmp"))
    rows: dict[str, dict[str, Any]] = {}
    try:
        built = {lang: drivers.build(lang, folder) for lang in args.langs.split(",")}
        stack = start_stack(folder, folder, make_certs(folder), names=("plain",))
        try:
            for lang, driver in built.items():
                if driver.missing or driver.build_error:
                    rows[lang] = {"error": driver.missing or "build failed"}
                    continue
                rows[lang] = measure(stack, driver, args.objects, args.reads)
                print(lang, rows[lang], flush=True)
        finally:
            stack.close(LogSink())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = f"python -m bench.clients --objects {args.objects} --reads {args.reads}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clients.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "clients.md").write_text(markdown(rows, command))


if __name__ == "__main__":
    main()
