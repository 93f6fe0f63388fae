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


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue #5 that this run measured, with the measurement."""
    s = results["scenarios"]
    rows: list[dict[str, Any]] = []

    def add(name: str, measured: str, ok: bool | None, note: str = "") -> None:
        rows.append({"target": name, "measured": measured, "met": ok, "note": note})

    health, hot, spread = s.get("health"), s.get("hot"), s.get("spread")
    if health and hot:
        ratio = hot["rps"] / health["rps"]
        add(
            "S2 RPS >= 0.95 x S1 RPS",
            f"{ratio:.3f} ({hot['rps']:.0f} / {health['rps']:.0f})",
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
        growth = spread["rss_growth_mb"]
        n = spread["fill"]["accounts"]
        add(f"RSS growth for {n} cached accounts < 40 MB", f"{growth:.1f} MB", growth < 40)
    workers = results["options"]["workers"]
    one = s.get("storm_one")
    if one:
        ok = (
            one["upstream_token_requests"] == workers
            and one["upstream_account_requests"] == workers
            and one["failed"] == 0
        )
        add(
            f"S4 one account: 1 token + 1 account request, no failure (x{workers} workers)",
            f"{one['upstream_token_requests']} token, {one['upstream_account_requests']} account, "
            f"{one['failed']} failed of {one['count']}",
            ok,
        )
    many = s.get("storm_many")
    if many:
        n = many["distinct_accounts"]
        ok = (
            many["upstream_token_requests"] == workers
            and many["upstream_account_requests"] == n
            and many["upstream_max_in_flight"] <= many["upstream_concurrency_cap"] * workers
            and many["failed"] == 0
        )
        add(
            f"S4 {n} accounts: 1 token + {n} account requests, in flight <= cap, no failure",
            f"{many['upstream_token_requests']} token, {many['upstream_account_requests']} account, "
            f"max {many['upstream_max_in_flight']} in flight (cap {many['upstream_concurrency_cap']}), "
            f"{many['failed']} failed",
            ok,
        )
    miss = s.get("miss")
    if miss:
        add(
            "added latency on a miss < 2 ms at p50",
            f"{miss['added_p50_vs_setting_ms']:.2f} ms vs the {miss['emulator_latency_setting_ms']:.0f} ms "
            f"setting; {miss['added_p50_vs_direct_ms']:.2f} ms vs a direct HTTP GET "
            f"({miss['emulator_direct']['p50_ms']:.2f} ms)",
            miss["added_p50_vs_setting_ms"] < 2.0,
        )
    soak = results.get("soak")
    if soak:
        c = soak["checker"]
        add(
            "soak: zero wrong credentials; failures only UNAVAILABLE/RESOURCE_EXHAUSTED with RetryInfo",
            f"{c['calls']} checked calls, {c['wrong_credentials']} wrong, unexpected {c['unexpected'] or 0}, "
            f"{c['missing_retry_info']} without RetryInfo; ghz {soak['ghz']['statuses']}",
            soak["passed"],
        )
        f = soak["flatness"]
        if "rss_mb_change" in f:
            flat = abs(f["rss_mb_change"]) < 10 and f["fds_max"] - f["fds_min"] <= 40
            add(
                "soak: RSS and open FDs flat after warm-up",
                f"RSS {f['rss_mb_first_quarter']} -> {f['rss_mb_last_quarter']} MB "
                f"(min {f['rss_mb_min']}, max {f['rss_mb_max']}); FDs {f['fds_min']}..{f['fds_max']}",
                flat,
            )
    return rows


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    o = results["options"]
    s = results["scenarios"]
    lines = [
        "# pdsidecar benchmark",
        "",
        f"Run {results['started']} with `{results['command']}` on {m['cpu']} "
        f"({m['cpus']} cores, {m['memory_gb']} GB), Linux {m['kernel']}, Python {m['python']}, "
        f"grpcio {m['grpcio']}, ghz {m['ghz']}.",
        "",
        f"Emulator latency {o['latency'] * 1000:.0f} ms on every route; ghz at concurrency "
        f"{o['concurrency']} over {o['connections']} connections, {o['duration']:.0f} s per "
        f"scenario after a {o['warmup']:.0f} s warm-up; sidecar workers: {o['workers']}; "
        + (
            f"sidecar pinned to CPU {o['server_cpus']}, ghz and the emulator to CPU {o['client_cpus']}."
            if o["server_cpus"]
            else "nothing pinned."
        ),
        "",
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
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    spread = s.get("spread")
    if spread:
        fill = spread["fill"]
        lines += [
            "",
            "## Memory and upstream counts",
            "",
            f"- RSS at start {spread['rss_at_start_mb']} MB; before filling the cache "
            f"{spread['rss_before_fill_mb']} MB; after {fill['accounts']} accounts "
            f"{spread['rss_after_fill_mb']} MB (+{spread['rss_growth_mb']} MB). Fill: "
            f"{fill['seconds']} s, {fill['upstream_account_requests']} account requests, at most "
            f"{fill['upstream_max_in_flight']} in flight, {fill['failed']} failed.",
            f"- Scenarios 1-3 sent {spread['upstream_account_requests']} requests upstream.",
        ]
    for key in ("storm_one", "storm_many"):
        row = s.get(key)
        if row:
            lines.append(
                f"- {dict(SCENARIOS)[key]}: {row['count']} calls at concurrency {row['count']}, "
                f"{row['upstream_token_requests']} token and {row['upstream_account_requests']} "
                f"account requests, at most {row['upstream_max_in_flight']} in flight (cap "
                f"{row['upstream_concurrency_cap']}), p50 {row['p50_ms']:.0f} ms, p99 "
                f"{row['p99_ms']:.0f} ms, {row['failed']} failed."
            )
    mixed = s.get("mixed")
    if mixed:
        per = ", ".join(
            f"{name} {v['rps']:.0f} RPS p99 {v['p99_ms']:.2f} ms"
            for name, v in mixed["per_method"].items()
        )
        lines.append(f"- Mixed: shares {mixed['share_pct']} of calls; {per}.")
    miss = s.get("miss")
    if miss:
        lines.append(
            f"- Cache miss, sequential: p50 {miss['p50_ms']:.2f} ms, p90 {miss['p90_ms']:.2f} ms "
            f"({miss['upstream_account_requests']} account requests); the same GET straight to the "
            f"emulator: p50 {miss['emulator_direct']['p50_ms']:.2f} ms."
        )
    scaling = results.get("scaling")
    if scaling:
        lines += [
            "",
            "## Workers (SO_REUSEPORT), nothing pinned",
            "",
            "| workers | health RPS | hot RPS | hot p50 ms | hot p99 ms | hot / health |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for n, row in scaling.items():
            lines.append(
                f"| {n} | {row['health']['rps']:.0f} | {row['hot']['rps']:.0f} | "
                f"{row['hot']['p50_ms']:.2f} | {row['hot']['p99_ms']:.2f} | "
                f"{row['hot']['rps'] / row['health']['rps']:.2f} |"
            )
    elif results.get("scaling_note"):
        lines += ["", "## Workers", "", results["scaling_note"]]
    soak = results.get("soak")
    if soak:
        c, g, f = soak["checker"], soak["ghz"], soak["flatness"]
        lines += [
            "",
            f"## Soak ({soak['seconds']:.0f} s, faults: 10% 500, 2% 429 + Retry-After, 1% 2 s stalls)",
            "",
            f"- Checking client (concurrency 100): {c['calls']} calls, {c['ok']} OK, "
            f"{c['wrong_credentials']} wrong credentials, failures {c['codes'] or 'none'} "
            f"(reasons {c['reasons'] or 'none'}), {c['missing_retry_info']} without RetryInfo, "
            f"unexpected codes {c['unexpected'] or 'none'}.",
            f"- ghz (concurrency 100): {g['count']} calls, {g['rps']:.0f} RPS, p50 {g['p50_ms']:.2f} ms, "
            f"p99 {g['p99_ms']:.2f} ms, statuses {g['statuses']}.",
            f"- Upstream saw {soak['upstream']['requests']} requests, statuses "
            f"{soak['upstream']['statuses']}, at most {soak['upstream']['max_in_flight']} in flight.",
            f"- After a {soak['warmup_s']:.0f} s warm-up: RSS {f.get('rss_mb_first_quarter')} -> "
            f"{f.get('rss_mb_last_quarter')} MB (min {f.get('rss_mb_min')}, max {f.get('rss_mb_max')}), "
            f"open FDs {f.get('fds_min')}..{f.get('fds_max')}. Sidecar log: "
            f"{soak['log_tracebacks']} tracebacks, {soak['log_unexpected_errors']} unexpected errors.",
        ]
    lines += ["", "![latency and RPS per scenario](latest.png)", ""]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["scenarios"]
    rows = [
        (title.split(" ", 1)[0].rstrip("."), title, s[key])
        for key, title in SCENARIOS
        if s.get(key)
    ]
    labels = [f"{title}" for _, title, _ in rows]
    fig, (ax_lat, ax_rps) = plt.subplots(1, 2, figsize=(14, 5.5))
    width = 0.27
    xs = range(len(rows))
    for i, (pct, color) in enumerate(
        (("p50_ms", "#4c72b0"), ("p90_ms", "#dd8452"), ("p99_ms", "#c44e52"))
    ):
        ax_lat.bar(
            [x + (i - 1) * width for x in xs],
            [row[pct] for _, _, row in rows],
            width,
            label=pct.replace("_ms", ""),
            color=color,
        )
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency, ms (log scale)")
    ax_lat.set_title("Latency percentiles (ghz)")
    ax_lat.set_xticks(list(xs))
    ax_lat.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax_lat.legend()
    ax_lat.grid(axis="y", which="both", alpha=0.3)
    ax_rps.bar(list(xs), [row["rps"] for _, _, row in rows], color="#55a868")
    for x, (_, _, row) in zip(xs, rows, strict=True):
        ax_rps.annotate(f"{row['rps']:.0f}", (x, row["rps"]), ha="center", va="bottom", fontsize=8)
    ax_rps.set_ylabel("requests per second")
    ax_rps.set_title("Throughput (ghz)")
    ax_rps.set_xticks(list(xs))
    ax_rps.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax_rps.grid(axis="y", alpha=0.3)
    m, o = results["machine"], results["options"]
    fig.suptitle(
        f"pdsidecar, {m['cpus']}-core {m['cpu']}, emulator latency {o['latency'] * 1000:.0f} ms, "
        f"workers {o['workers']} ({results['started']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
