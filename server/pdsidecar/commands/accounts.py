"""``pdsidecar accounts``: lists a project's connected accounts through a running sidecar.

It asks the sidecar (``--target``, default ``127.0.0.1:50051``) rather than
Pipedream, so it needs no Pipedream credentials of its own and works from
inside the sidecar's pod. It pages through every page by default, up to
``--max-pages``. Output is a plain aligned table, or with ``--json`` an array
of objects with stable keys. Neither ever holds a credential value: the
sidecar's ListAccounts answer carries field names only.

Exit codes: 0 listed (possibly nothing), 1 the sidecar refused or could not be
reached, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

import grpc

from pdsidecar.commands import client_flags
from pdsidecar_client import AsyncCredentialsClient, CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb

DEFAULT_PAGE_SIZE: Final = 100
DEFAULT_MAX_PAGES: Final = 100
PROG: Final = "pdsidecar accounts"

Stamp = Literal["expires_at", "last_refreshed_at", "next_refresh_at"]

# Table columns: (heading, widest cell shown).
COLUMNS: Final = (
    ("ACCOUNT ID", 40),
    ("NAME", 40),
    ("APP", 30),
    ("EXTERNAL USER", 40),
    ("STATUS", 9),
    ("CREDENTIALS", 11),
    ("EXPIRES AT", 20),
)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "accounts",
        help="list a project's connected accounts through a running sidecar",
        description=(
            "List the connected accounts (apn_...) of a Pipedream project, asking a running "
            "sidecar. Credential values are never shown; CREDENTIALS says whether Pipedream "
            "returns them for the account (custom OAuth or keys) or not (Pipedream's OAuth)."
        ),
    )
    env = os.environ
    client_flags.add_client_flags(parser, timeout=10.0)
    parser.add_argument(
        "--project",
        # PDSIDECAR_PROJECT, as the examples in every language read it; the older
        # PDSIDECAR_PROJECT_ID still works.
        default=env.get("PDSIDECAR_PROJECT") or env.get("PDSIDECAR_PROJECT_ID") or "",
        metavar="PROJECT_ID",
        help="the Pipedream project, proj_... (default: $PDSIDECAR_PROJECT)",
    )
    parser.add_argument(
        "--connection", default="", help="the sidecar connection to use (default: 'default')"
    )
    parser.add_argument(
        "--environment",
        choices=("production", "development"),
        default="production",
        help="Pipedream environment (default: production)",
    )
    parser.add_argument(
        "--source", default="", help="only accounts of this source's app, like notion or slack"
    )
    parser.add_argument("--external-user-id", default="", help="only accounts of this end user")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead")
    parser.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        help=f"accounts per request, 1 to 100 (default {DEFAULT_PAGE_SIZE})",
    )
    parser.add_argument(
        "--all",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow every page (default); --no-all prints one page and its next page token",
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=DEFAULT_MAX_PAGES,
        help=f"stop after this many pages (default {DEFAULT_MAX_PAGES})",
    )
    parser.add_argument(
        "--page-token", default="", help="continue from a next page token printed before"
    )
    parser.add_argument(
        "--api-token",
        default=env.get("PDSIDECAR_API_TOKEN") or "",
        help="sent as 'authorization: Bearer ...' to sidecars that require it "
        "(default: $PDSIDECAR_API_TOKEN, which unlike this flag other users cannot see in ps)",
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    accounts: list[pb.AccountInfo] = []
    token: str = args.page_token
    pages = 0
    try:
        # wait_for_ready off: a sidecar that is not there is reported at once, not
        # after --timeout.
        async with AsyncCredentialsClient(
            args.target,
            api_token=args.api_token or None,
            wait_for_ready=False,
            **client_flags.client_options(args),
        ) as client:
            while True:
                response = await client.list_accounts(
                    args.project,
                    connection=args.connection,
                    environment=args.environment,
                    source=args.source,
                    external_user_id=args.external_user_id,
                    page_size=args.page_size,
                    page_token=token,
                )
                pages += 1
                accounts.extend(response.accounts)
                token = response.next_page_token
                if not token or not args.all or pages >= args.max_pages:
                    break
    except CredentialsError as error:
        print(f"{PROG}: {_describe(error, args)}", file=sys.stderr)
        return 1
    if args.json:
        json.dump([account_json(a) for a in accounts], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif accounts:
        print_table(accounts, sys.stdout)
    _summary(args, len(accounts), token, pages)
    return 0


def _usage_problem(args: argparse.Namespace) -> str:
    if not args.project:
        return (
            "--project is required (or set PDSIDECAR_PROJECT): the Pipedream project id, "
            "like proj_abc123, from the project's Settings page"
        )
    if args.max_pages < 1:
        return "--max-pages must be at least 1"
    return client_flags.usage_problem(args)


def _describe(error: CredentialsError, args: argparse.Namespace) -> str:
    """``<reason>: <message>``; the gRPC code stands in when the sidecar gave no reason."""
    reason = error.reason or error.code.name
    message = error.message
    if not error.reason and error.code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        message = f"no answer from a sidecar at {args.target}"
        if error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            message += f" within {args.timeout:g} s"
        if error.connection_error:
            message += f"; last connection error: {error.connection_error}"
        # The client's own message names its parameters; here the flags are what to change.
        hint = client_flags.connection_hint(args, error.connection_error)
        message += f"; {hint}" if hint else "; is 'pdsidecar serve' running there?"
        message += f". Another sidecar: --target or {client_flags.TARGET_ENV}"
    elif error.reason == "UNAUTHENTICATED":
        message += " (pass the sidecar's API token with --api-token or PDSIDECAR_API_TOKEN)"
    return f"{reason}: {message}"


def _summary(args: argparse.Namespace, count: int, token: str, pages: int) -> None:
    """What was listed and whether more follow, on stderr: stdout stays the data."""
    scope = f"project {args.project} ({args.environment})"
    if args.source:
        scope += f", source {args.source}"
    if args.external_user_id:
        scope += f", external user {args.external_user_id}"
    noun = "account" if count == 1 else "accounts"
    print(f"{count} {noun} in {scope}", file=sys.stderr)
    if token:
        why = f"stopped after {pages} pages (--max-pages)" if args.all else "more accounts follow"
        print(f"{why}; continue with --page-token {token}", file=sys.stderr)


def status(account: pb.AccountInfo) -> str:
    if account.dead:
        return "dead"
    return "healthy" if account.healthy else "unhealthy"


def _iso(account: pb.AccountInfo, field: Stamp, timespec: str = "milliseconds") -> str | None:
    if not account.HasField(field):
        return None
    stamp = getattr(account, field)
    moment = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def account_json(account: pb.AccountInfo) -> dict[str, object]:
    """One account for ``--json``: always these keys, in this order."""
    return {
        "account_id": account.account_id,
        "name": account.name,
        "app_slug": account.app_slug,
        "app_name": account.app_name,
        "auth_type": account.auth_type,
        "external_id": account.external_id,
        "status": status(account),
        "healthy": account.healthy,
        "dead": account.dead,
        "error": account.error,
        "credentials_available": bool(account.credential_fields),
        "credential_fields": list(account.credential_fields),
        "expires_at": _iso(account, "expires_at"),
        "last_refreshed_at": _iso(account, "last_refreshed_at"),
        "next_refresh_at": _iso(account, "next_refresh_at"),
    }


def _cell(text: str, width: int) -> str:
    # Names and ids come from Pipedream and its end users: no control characters
    # (terminal escapes) reach the terminal, and no cell runs on forever.
    shown = "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


def table_rows(accounts: Sequence[pb.AccountInfo]) -> list[list[str]]:
    rows = [[heading for heading, _ in COLUMNS]]
    for account in accounts:
        cells = (
            account.account_id,
            account.name or "-",
            account.app_slug,
            account.external_id or "-",
            status(account),
            "yes" if account.credential_fields else "no",
            _iso(account, "expires_at", "seconds") or "-",
        )
        rows.append([_cell(c, width) for c, (_, width) in zip(cells, COLUMNS, strict=True)])
    return rows


def print_table(accounts: Sequence[pb.AccountInfo], out: TextIO) -> None:
    rows = table_rows(accounts)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
