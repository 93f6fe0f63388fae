"""The soak: ghz and a checking client at concurrency 100 each while Pipedream misbehaves.

The emulator answers 10% of requests (token and account routes alike) with 500, 2% with
429 and ``Retry-After: 1``, and stalls 1% of them for 2 s; API tokens live 60 s and
cached accounts are fresh for at most ``MIN_FRESH`` (5 s), so the sidecar goes upstream
all the time, refreshes its token in the advisory window, and serves stale entries when a
refresh fails. The checker (harness/checker.py) reads every answer it gets. RSS and open
descriptors of the sidecar are sampled every second; "flat" compares the first and the
last quarter of the samples taken after the warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from typing import Any

import grpc

from bench.scenarios import GET, MB, Context, get_request
from harness.checker import Tally, checked_load
from harness.sidecar import SidecarProcess
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

FAULTS = {
    "faults": [[500, 0.10, None], [429, 0.02, "1"]],
    "stall": 2.0,
    "stall_probability": 0.01,
}
TOKEN_LIFETIME = 60


async def _sample(sidecar: SidecarProcess, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        use = sidecar.usage()
        out.append(
            {"t": round(time.monotonic() - t0, 1), "rss_mb": use.rss_bytes / MB, "fds": use.fds}
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _run(ctx: Context, sidecar: SidecarProcess, seconds: float) -> dict[str, Any]:
    accounts = ctx.accounts.soak
    tokens = {a: ctx.emulator.tokens[a] for a in accounts}
    data = ctx.data_file("soak", [get_request(a) for a in accounts])
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(sidecar, stop, samples))
    ghz_proc, ghz_out = ctx.ghz.start(
        sidecar.target,
        GET,
        data_file=data,
        concurrency=100,
        connections=10,
        duration=seconds,
        timeout=10,
    )
    tally = Tally()
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        await checked_load(
            pb_grpc.CredentialsServiceStub(channel),
            tokens,
            accounts,
            concurrency=100,
            duration=seconds,
            tally=tally,
        )
    ghz = await asyncio.to_thread(ctx.ghz.finish, GET, ghz_proc, ghz_out)
    stop.set()
    await sampler
    return {"checker": tally.summary(), "ghz": ghz.summary(), "samples": samples}


def _flatness(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) < 4:
        return {"samples": len(after)}
    quarter = max(1, len(after) // 4)
    first, last = after[:quarter], after[-quarter:]
    rss_first = statistics.mean(s["rss_mb"] for s in first)
    rss_last = statistics.mean(s["rss_mb"] for s in last)
    return {
        "samples": len(after),
        "rss_mb_first_quarter": round(rss_first, 1),
        "rss_mb_last_quarter": round(rss_last, 1),
        "rss_mb_change": round(rss_last - rss_first, 1),
        "rss_mb_min": round(min(s["rss_mb"] for s in after), 1),
        "rss_mb_max": round(max(s["rss_mb"] for s in after), 1),
        "fds_first_quarter": round(statistics.mean(s["fds"] for s in first), 1),
        "fds_last_quarter": round(statistics.mean(s["fds"] for s in last), 1),
        "fds_min": min(s["fds"] for s in after),
        "fds_max": max(s["fds"] for s in after),
    }


def run_soak(ctx: Context, seconds: float) -> dict[str, Any]:
    emu = ctx.emulator
    emu.control("POST", "/_emulator/tokens/lifetime", {"expires_in": TOKEN_LIFETIME})
    try:
        with ctx.sidecar("sidecar-soak", credentials_max_age=1.0) as sidecar:
            emu.reset_stats()
            emu.control("POST", "/_bench/mixed_faults", FAULTS)
            try:
                result = asyncio.run(_run(ctx, sidecar, seconds))
            finally:
                emu.control("POST", "/_bench/mixed_faults", {"faults": []})
            stats = emu.stats()
            log = sidecar.log
    finally:
        emu.control("POST", "/_emulator/tokens/lifetime", {"expires_in": 3600})
    text = log.read_text(errors="replace")
    warmup = min(10.0, seconds / 4)
    checker, ghz = result["checker"], result["ghz"]
    ghz_unexpected = {
        code: n
        for code, n in ghz["statuses"].items()
        if code not in ("OK", "Unavailable", "ResourceExhausted")
    }
    return {
        "seconds": seconds,
        "faults": FAULTS,
        "token_lifetime_s": TOKEN_LIFETIME,
        "credentials_max_age_s": "1 s (5 s at least: the cache's MIN_FRESH)",
        "checker": checker,
        "ghz": ghz,
        "ghz_unexpected": ghz_unexpected,
        "upstream": {
            "requests": stats["requests"],
            "statuses": stats["statuses"],
            "max_in_flight": stats["max_in_flight"],
            "tokens_issued": stats["tokens_issued"],
        },
        "warmup_s": warmup,
        "flatness": _flatness(result["samples"], warmup),
        "samples": result["samples"],
        "log_tracebacks": len(re.findall(r"Traceback", text)),
        "log_unexpected_errors": len(re.findall(r"unexpected error", text)),
        "passed": (
            checker["wrong_credentials"] == 0
            and not checker["unexpected"]
            and checker["missing_retry_info"] == 0
            and not ghz_unexpected
        ),
    }
