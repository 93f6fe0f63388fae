"""The benchmark's outputs: targets checked, a Markdown report and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCENARIOS = (
    ("health", "1. Health/Check (floor)"),
    ("hot", "2. GetCredentials, 1 hot account"),
    ("spread", "3. GetCredentials, spread (cached)"),
    ("storm_one", "4a. cold storm, 1 account"),
    ("storm_many", "4b. cold storm, distinct accounts"),
    ("mixed", "5. mixed 90/9/1"),
    ("miss", "6. cache miss, sequential"),
)
SETUPS = {
    "ghz_pinned": "ghz pinned to the client CPUs, sidecar workers unpinned",
    "unpinned": "nothing pinned",
}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue #5 that this run measured, with the measurement."""
    s = results["scenarios"]
    rows: list[dict[str, Any]] = []

    def add(name: str, measured: str, ok: bool | None) -> None:
        rows.append({"target": name, "measured": measured, "met": ok})

    health, hot, spread = s.get("health"), s.get("hot"), s.get("spread")
    if health and hot:
        ratio = hot["rps"] / health["rps"]
        cpu = health["server_cpu_us_per_call"] / hot["server_cpu_us_per_call"]
        add(
            "S2 RPS >= 0.95 x S1 RPS",
            f"{ratio:.3f} ({hot['rps']:.0f} / {health['rps']:.0f}); by server CPU per call "
            f"{cpu:.3f} ({hot['server_cpu_us_per_call']:.0f} vs "
            f"{health['server_cpu_us_per_call']:.0f} us)",
            ratio >= 0.95,
        )
        ratio = hot["p99_ms"] / health["p99_ms"]
        add(
            "S2 p99 <= 1.2 x S1 p99",
            f"{ratio:.2f} ({hot['p99_ms']:.2f} / {health['p99_ms']:.2f} ms)",
            ratio <= 1.2,
        )
    if hot and spread:
        ratio = spread["rps"] / hot["rps"]
        add(
            "S3 RPS >= 0.9 x S2 RPS",
            f"{ratio:.3f} ({spread['rps']:.0f} / {hot['rps']:.0f})",
            ratio >= 0.9,
        )
    if spread and "fill" in spread:
        growth = spread["rss_growth_mb"]
        n = spread["fill"]["accounts"]
        add(f"RSS growth for {n} cached accounts < 40 MB", f"{growth:.1f} MB", growth < 40)
    workers = results["options"]["workers"]
    one = s.get("storm_one")
    if one:
        # With N workers each has its own token and cache: N tokens, up to N lookups.
        ok = (
            one["upstream_token_requests"] == workers
            and 1 <= one["upstream_account_requests"] <= workers
            and one["failed"] == 0
        )
        add(
            f"S4 one account, {one['count']} calls: 1 token + 1 account request, none failing"
            + (f" (x{workers} workers)" if workers > 1 else ""),
            f"{one['upstream_token_requests']} token, {one['upstream_account_requests']} "
            f"account, {one['failed']} failed",
            ok,
        )
    many = s.get("storm_many")
    if many:
        n = many["distinct_accounts"]
        cap = many["upstream_concurrency_cap"]
        ok = (
            many["upstream_token_requests"] == workers
            and many["upstream_account_requests"] == n
            and many["upstream_max_in_flight"] <= cap * workers
            and many["failed"] == 0
        )
        add(
            f"S4 {n} accounts: 1 token + {n} account requests, <= {cap} in flight, none failing",
            f"{many['upstream_token_requests']} token, {many['upstream_account_requests']} "
            f"account, max {many['upstream_max_in_flight']} in flight, {many['failed']} failed",
            ok,
        )
    miss = s.get("miss")
    if miss:
        direct = miss["emulator_direct"]["p50_ms"]
        add(
            "added latency on a miss (sidecar - emulator) < 2 ms at p50",
            f"{miss['added_p50_vs_direct_ms']:.2f} ms over the emulator's measured "
            f"{direct:.2f} ms; {miss['added_p50_vs_setting_ms']:.2f} ms over its "
            f"{miss['emulator_latency_setting_ms']:.0f} ms setting",
            miss["added_p50_vs_direct_ms"] < 2.0,
        )
    soak = results.get("soak")
    if soak:
        c = soak["checker"]
        add(
            "soak: 0 wrong credentials; failures only UNAVAILABLE/RESOURCE_EXHAUSTED + RetryInfo",
            f"{c['calls']} checked calls, {c['wrong_credentials']} wrong, unexpected "
            f"{c['unexpected'] or 'none'}, {c['missing_retry_info']} without RetryInfo; "
            f"ghz {soak['ghz']['statuses']}",
            soak["passed"],
        )
        f = soak["flatness"]
        if "rss_mb_change" in f:
            flat = abs(f["rss_mb_change"]) < 10 and f["fds_max"] - f["fds_min"] <= 40
            add(
                "soak: RSS and open FDs flat after warm-up",
                f"RSS {f['rss_mb_first_quarter']} -> {f['rss_mb_last_quarter']} MB (min "
                f"{f['rss_mb_min']}, max {f['rss_mb_max']}); FDs {f['fds_min']}..{f['fds_max']}",
                flat,
            )
    return rows


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def _header(results: dict[str, Any]) -> list[str]:
    m, o = results["machine"], results["options"]
    pinning = (
        f"sidecar pinned to CPU {o['server_cpus']}, ghz, the emulator and the checking client "
        f"to CPU {o['client_cpus']}."
        if o["server_cpus"]
        else "nothing pinned."
    )
    return [
        "# pdsidecar benchmark",
        "",
        f"Run {results['started']} with `{results['command'].strip()}` on {m['cpu']} "
        f"({m['cpus']} cores, {m['memory_gb']} GB), Linux {m['kernel']}, Python {m['python']}, "
        f"grpcio {m['grpcio']}, ghz {m['ghz']}; load average {m.get('load_before', '?')} "
        "before the run (the machine is shared).",
        "",
        f"Emulator latency {o['latency'] * 1000:.0f} ms on every route. ghz at concurrency "
        f"{o['concurrency']} over {o['connections']} connections, {o['duration']:.0f} s per "
        f"run after a {o['warmup']:.0f} s warm-up; scenarios 1-3 interleaved over "
        f"{o['rounds']} rounds, medians reported. Sidecar workers: {o['workers']}; {pinning}",
        "",
    ]


def _scenario_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | RPS | p50 ms | p90 ms | p99 ms | OK | errors | server CPU us/call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, title in SCENARIOS:
        row = s.get(key)
        if not row:
            continue
        lines.append(
            f"| {title} | {row['rps']:.0f} | {_ms(row['p50_ms'])} | {_ms(row['p90_ms'])} | "
            f"{_ms(row['p99_ms'])} | {row['ok']} | {row['failed']} | "
            f"{row.get('server_cpu_us_per_call', '')} |"
        )
    return lines


def _details(s: dict[str, Any]) -> list[str]:
    lines = ["", "## Memory, upstream counts, the miss", ""]
    spread = s.get("spread")
    if spread and "fill" in spread:
        fill = spread["fill"]
        lines += [
            f"- RSS at start {spread['rss_at_start_mb']} MB; before filling the cache "
            f"{spread['rss_before_fill_mb']} MB; after {fill['accounts']} accounts "
            f"{spread['rss_after_fill_mb']} MB (+{spread['rss_growth_mb']} MB). The fill took "
            f"{fill['seconds']} s: {fill['upstream_account_requests']} account requests, at most "
            f"{fill['upstream_max_in_flight']} in flight, {fill['failed']} failed.",
            f"- Scenarios 1-3 sent {spread.get('upstream_account_requests')} requests upstream.",
        ]
    for key in ("storm_one", "storm_many"):
        row = s.get(key)
        if row:
            lines.append(
                f"- {dict(SCENARIOS)[key]}: {row['count']} calls at once on a sidecar just "
                f"started: {row['upstream_token_requests']} token and "
                f"{row['upstream_account_requests']} account requests, at most "
                f"{row['upstream_max_in_flight']} in flight (cap {row['upstream_concurrency_cap']}"
                f"), p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
                f"{row['failed']} failed."
            )
    mixed = s.get("mixed")
    if mixed:
        per = ", ".join(
            f"{name} {v['rps']:.0f} RPS (p99 {v['p99_ms']:.2f} ms)"
            for name, v in mixed["per_method"].items()
        )
        lines.append(
            f"- Mixed (concurrency {mixed['concurrency']}): shares of calls "
            f"{mixed['share_pct']}; {per}."
        )
    miss = s.get("miss")
    if miss:
        d = miss["emulator_direct"]
        lines.append(
            f"- Cache miss, one call at a time on cold accounts: p50 {miss['p50_ms']:.2f} ms, "
            f"p90 {miss['p90_ms']:.2f} ms ({miss['upstream_account_requests']} account "
            f"requests). The same GET sent straight to the emulator (Python httpx, keep-alive): "
            f"p50 {d['p50_ms']:.2f} ms, p90 {d['p90_ms']:.2f} ms."
        )
    for key, error in (s.get("errors") or {}).items():
        lines.append(f"- **{key} failed**: {error}")
    return lines


def _scaling(results: dict[str, Any]) -> list[str]:
    scaling = results.get("scaling")
    if not scaling:
        note = results.get("scaling_note")
        return ["", "## Workers", "", note] if note else []
    lines = [
        "",
        "## Workers (`--workers N`, SO_REUSEPORT, a cache per worker)",
        "",
        "| set-up | workers | health RPS | hot RPS | hot p50 ms | hot p99 ms | "
        "sidecar cores busy | ghz cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setup, rows in scaling.items():
        for n, row in rows.items():
            hot = row["hot"]
            lines.append(
                f"| {SETUPS.get(setup, setup)} | {n} | {row['health']['rps']:.0f} | "
                f"{hot['rps']:.0f} | {hot['p50_ms']:.2f} | {hot['p99_ms']:.2f} | "
                f"{hot.get('server_cores', '')} | {hot.get('client_cores', '')} |"
            )
    return lines


def _soak(results: dict[str, Any]) -> list[str]:
    soak = results.get("soak")
    if not soak:
        return []
    c, g, f, up = soak["checker"], soak["ghz"], soak["flatness"], soak["upstream"]
    return [
        "",
        f"## Soak: {soak['seconds']:.0f} s, Pipedream answering 10% 500, 2% 429 "
        "(Retry-After: 1), 1% stalled 2 s",
        "",
        f"API tokens live {soak['token_lifetime_s']} s; cached accounts are fresh for "
        f"{soak['credentials_max_age_s']}.",
        "",
        f"- Checking client (concurrency 100, 10 s deadline): {c['calls']} calls, {c['ok']} OK, "
        f"**{c['wrong_credentials']} wrong credentials**; failures {c['codes'] or 'none'} "
        f"(reasons {c['reasons'] or 'none'}), {c['missing_retry_info']} without RetryInfo, "
        f"unexpected codes {c['unexpected'] or 'none'}; p50 {c['p50_ms']} ms, p99 "
        f"{c['p99_ms']} ms.",
        f"- ghz (concurrency 100): {g['count']} calls, {g['rps']:.0f} RPS, p50 "
        f"{g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms, statuses {g['statuses']}.",
        f"- Pipedream saw {up['requests']} requests, answered {up['statuses']}, at most "
        f"{up['max_in_flight']} in flight; {up['tokens_issued']} API tokens issued.",
        f"- After a {soak['warmup_s']:.0f} s warm-up: RSS {f.get('rss_mb_first_quarter')} -> "
        f"{f.get('rss_mb_last_quarter')} MB (first and last quarter; min {f.get('rss_mb_min')}, "
        f"max {f.get('rss_mb_max')}), open descriptors {f.get('fds_min')}..{f.get('fds_max')}. "
        f"Sidecar log: {soak['log_tracebacks']} tracebacks, {soak['log_unexpected_errors']} "
        "unexpected errors.",
    ]


def markdown(results: dict[str, Any]) -> str:
    s = results["scenarios"]
    lines = _header(results) + _scenario_table(s)
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    lines += _details(s) + _scaling(results) + _soak(results)
    for key, error in (results.get("failed_parts") or {}).items():
        lines += ["", f"**{key} failed**: `{error.splitlines()[-1] if error else ''}`"]
    lines += ["", "![latency and RPS per scenario](latest.png)", ""]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["scenarios"]
    rows = [(title, s[key]) for key, title in SCENARIOS if s.get(key)]
    labels = [title for title, _ in rows]
    xs = list(range(len(rows)))
    fig, (ax_lat, ax_rps) = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.27
    colours = (("p50_ms", "#4c72b0"), ("p90_ms", "#dd8452"), ("p99_ms", "#c44e52"))
    for i, (pct, colour) in enumerate(colours):
        ax_lat.bar(
            [x + (i - 1) * width for x in xs],
            [row[pct] for _, row in rows],
            width,
            label=pct.removesuffix("_ms"),
            color=colour,
        )
    ax_lat.set_yscale("log")
    ax_lat.set_ylim(bottom=1)
    ax_lat.set_ylabel("latency, ms (log scale)")
    ax_lat.set_title("Latency percentiles (ghz)")
    ax_lat.legend()
    ax_lat.grid(axis="y", which="both", alpha=0.3)
    ax_rps.bar(xs, [row["rps"] for _, row in rows], color="#55a868")
    for x, (_, row) in zip(xs, rows, strict=True):
        ax_rps.annotate(f"{row['rps']:.0f}", (x, row["rps"]), ha="center", va="bottom", fontsize=8)
    ax_rps.set_ylabel("requests per second")
    ax_rps.set_title("Throughput (ghz)")
    ax_rps.grid(axis="y", alpha=0.3)
    for axis in (ax_lat, ax_rps):
        axis.set_xticks(xs)
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    m, o = results["machine"], results["options"]
    fig.suptitle(
        f"pdsidecar on {m['cpus']} cores ({m['cpu']}), emulator latency "
        f"{o['latency'] * 1000:.0f} ms, workers {o['workers']}, {results['started']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
