"""The Python conformance driver: the scenarios of tests/conformance/ on pdsidecar_client alone.

    python conformance_driver.py SCENARIO --target T [flags]

Scenarios: get, list, error, hold, reject, bench (see client/SPEC.md, "Conformance driver").
Each stdout line is one JSON object, the last one the result; tokens are printed only as
fingerprints (the first 12 hex characters of their SHA-256). Exit 0 whenever the scenario ran
to its end, even if it observed an error (that is data); 2 for bad flags.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from typing import Any

from pdsidecar_client import AccountRef, CredentialsClient, CredentialsError, RefreshableCredentials

LANG = "python"


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def error_of(error: CredentialsError, started: float) -> dict[str, Any]:
    return {
        "code": error.code.name,
        "reason": error.reason or None,
        "retry_after_ms": None if error.retry_after is None else round(error.retry_after * 1000),
        "violations": [{"field": v.field, "description": v.description} for v in error.violations],
        "hint": error.hint,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["get", "list", "error", "hold", "reject", "bench"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--token")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--server-name")
    parser.add_argument("--project", default="")
    parser.add_argument("--environment", default="production")
    parser.add_argument("--account", action="append", default=[])
    parser.add_argument("--external-user-id", default="")
    parser.add_argument("--source", default="")
    parser.add_argument("--field", action="append", default=[])
    parser.add_argument("--deadline-ms", type=int, default=5000)
    parser.add_argument("--wait-for-ready", action="store_true")
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--source-api")
    parser.add_argument("--reject-timeout-ms", type=int, default=10000)
    parser.add_argument("--reads", type=int, default=1_000_000)
    return parser.parse_args(argv)


def ref(args: argparse.Namespace, account: str | None = None) -> AccountRef:
    return AccountRef(
        args.project,
        account or (args.account[0] if args.account else ""),
        args.source,
        environment=args.environment,
        external_user_id=args.external_user_id,
        required_fields=tuple(args.field),
    )


def source_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def get(client: CredentialsClient, args: argparse.Namespace) -> dict[str, Any]:
    answer = client.get_credentials(ref(args))
    return {
        "fields": sorted(answer.credentials),
        "token_fp": fp(answer.credentials.get("access_token", "")),
    }


def listing(client: CredentialsClient, args: argparse.Namespace) -> dict[str, Any]:
    ids: list[str] = []
    pages = 0
    for page in client.account_pages(
        args.project,
        environment=args.environment,
        source=args.source,
        external_user_id=args.external_user_id,
        page_size=args.page_size,
    ):
        pages += 1
        ids += [account.account_id for account in page.accounts]
    return {"count": len(ids), "pages": pages, "ids_fp": fp(",".join(sorted(ids)))}


def hold(client: CredentialsClient, args: argparse.Namespace) -> dict[str, Any]:
    counts = dict.fromkeys(("reads", "read_errors", "source_ok", "source_401", "rejects"), 0)
    tokens: set[str] = set()
    with client.refreshable_credentials(ref(args)) as creds:
        emit({"event": "ready"})
        interval = args.interval_ms / 1000
        end = time.monotonic() + args.duration_s
        next_at = time.monotonic()
        while time.monotonic() < end:
            counts["reads"] += 1
            try:
                token = creds.access_token
            except CredentialsError as error:
                counts["read_errors"] += 1
                print(f"read error: {error}", file=sys.stderr)
            else:
                tokens.add(token)
                if args.source_api:
                    if source_status(args.source_api, token) == 200:
                        counts["source_ok"] += 1
                    else:
                        counts["source_401"] += 1
                        counts["rejects"] += 1
                        try:
                            creds.reject(token, timeout=args.reject_timeout_ms / 1000)
                        except CredentialsError as error:
                            print(f"reject failed: {error}", file=sys.stderr)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return {**counts, "distinct_tokens": len(tokens)}


def reject(client: CredentialsClient, args: argparse.Namespace) -> dict[str, Any]:
    with client.refreshable_credentials(ref(args)) as creds:
        before = creds.access_token
        emit({"event": "ready", "token_fp": fp(before)})
        sys.stdin.readline()
        started = time.monotonic()
        after = creds.reject(before, timeout=args.reject_timeout_ms / 1000).access_token
        return {
            "before_fp": fp(before),
            "after_fp": fp(after),
            "changed": after != before,
            "elapsed_ms": round((time.monotonic() - started) * 1000),
        }


def bench(client: CredentialsClient, args: argparse.Namespace) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held: dict[str, RefreshableCredentials] = {
        account: client.refreshable_credentials(ref(args, account)) for account in args.account
    }
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    first = next(iter(held.values()))
    started = time.perf_counter_ns()
    for _ in range(args.reads):
        first.access_token  # noqa: B018 (the read is what is measured)
    read_ns = (time.perf_counter_ns() - started) / args.reads
    old = {account: creds.access_token for account, creds in held.items()}
    emit({"event": "ready", "read_ns": read_ns, "bytes_per_object": grown // len(held)})
    changed: dict[str, int] = {}
    end = time.monotonic() + args.duration_s
    while len(changed) < len(held) and time.monotonic() < end:
        for account, creds in held.items():
            if account not in changed and creds.access_token != old[account]:
                changed[account] = time.time_ns() // 1_000_000
        time.sleep(0.001)
    for creds in held.values():
        creds.close()
    return {"read_ns": read_ns, "bytes_per_object": grown // len(held), "changed_at_ms": changed}


SCENARIOS = {"get": get, "list": listing, "error": get, "hold": hold, "reject": reject}
SCENARIOS["bench"] = bench


def main(argv: list[str]) -> int:
    args = parse(argv)
    client = CredentialsClient(
        args.target,
        timeout=args.deadline_ms / 1000,
        api_token=args.token,
        wait_for_ready=args.wait_for_ready,
        tls_ca=args.ca,
        tls_cert=args.cert,
        tls_key=args.key,
        tls_server_name=args.server_name,
    )
    result: dict[str, Any] = {"lang": LANG, "scenario": args.scenario, "ok": True, "error": None}
    started = time.monotonic()
    with client:
        try:
            result |= SCENARIOS[args.scenario](client, args)
        except CredentialsError as error:
            result |= {"ok": False, "error": error_of(error, started)}
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
