"""Calls the pdsidecar CredentialsService with the generated Python stubs and
prints one line per answer, in the format every language's example shares:

    credentials access_token=<token> fields=<names,...>
    valid=<true|false> problems=<REASON,...>
    refreshed=<true|false> expires_at=<RFC 3339, UTC>
    watch access_token=<token> expires_at=<RFC 3339, UTC>
    error code=<GRPC_CODE> reason=<ErrorInfo reason or ->

A failed call's ErrorInfo reason and RetryInfo come from the google.rpc.Status
in the grpc-status-details-bin trailer (grpcio-status reads it); a call with
RetryInfo is retried after that delay, up to --attempts times. Calls without
RetryInfo are not retried.

watch opens WatchCredentials and prints a line for the first value and for
every rotation after it (--count N: stop after N lines). A stream ending
UNAVAILABLE (the sidecar restarting) is opened again; any other error ends it.
For a sync, ``pdsidecar_client.RefreshableCredentials`` does this for you.

    python pdsidecar_example.py [--target HOST:PORT] get      --project P --account A --source S
    python pdsidecar_example.py [--target HOST:PORT] validate --project P --account A --source S
    python pdsidecar_example.py [--target HOST:PORT] refresh  [--connection C] [--force]
    python pdsidecar_example.py [--target HOST:PORT] watch    --project P --account A --source S

Flags fall back to PDSIDECAR_TARGET (default 127.0.0.1:50051),
PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE and PDSIDECAR_CONNECTION.
The typed client in `pdsidecar_client` wraps the same calls; this example uses
the generated stubs directly, as the other languages' examples do.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

CALL_TIMEOUT = 10.0
MAX_RETRY_DELAY = 30.0
T = TypeVar("T")


@dataclass
class CallError:
    """What a failed call says: code, ErrorInfo reason, RetryInfo delay, violations."""

    code: grpc.StatusCode
    reason: str = "-"
    retry_delay: float | None = None
    message: str = ""
    violations: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, error: grpc.RpcError) -> CallError:
        call = error if isinstance(error, grpc.Call) else None
        code = call.code() if call else grpc.StatusCode.UNKNOWN
        result = cls(code=code, message=(call.details() or "") if call else str(error))
        status = rpc_status.from_call(call) if call else None
        details: list[Any] = list(status.details) if status else []
        for detail in details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                result.reason = info.reason
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                result.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                result.violations += [f"{v.field}: {v.description}" for v in bad.field_violations]
        return result


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="pdsidecar-example")
    parser.add_argument("command", choices=["get", "validate", "refresh", "watch"])
    parser.add_argument("--target", default=env("PDSIDECAR_TARGET") or "127.0.0.1:50051")
    parser.add_argument("--project", default=env("PDSIDECAR_PROJECT", ""))
    parser.add_argument("--account", default=env("PDSIDECAR_ACCOUNT", ""))
    parser.add_argument("--source", default=env("PDSIDECAR_SOURCE", ""))
    parser.add_argument("--connection", default=env("PDSIDECAR_CONNECTION") or "default")
    parser.add_argument("--force", action="store_true", help="refresh even when not yet due")
    parser.add_argument("--attempts", type=int, default=3, help="attempts when RetryInfo says so")
    parser.add_argument("--count", type=int, default=0, help="watch: stop after N values")
    return parser


def _call(attempts: int, rpc: Callable[[float], T]) -> T:
    """Runs one RPC with a deadline, retrying after RetryInfo's delay."""
    attempt = 1
    while True:
        try:
            return rpc(CALL_TIMEOUT)
        except grpc.RpcError as error:
            err = CallError.of(error)
            if err.retry_delay is None or attempt >= attempts:
                raise
            delay = min(err.retry_delay, MAX_RETRY_DELAY)
            print(
                f"retrying in {delay:.3f}s: code={err.code.name} reason={err.reason} "
                f"(attempt {attempt} of {attempts})",
                file=sys.stderr,
            )
            time.sleep(delay)
            attempt += 1


def _rfc3339(present: bool, ts: Timestamp) -> str:
    if not present:
        return ""
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(args: argparse.Namespace, stub: pb_grpc.CredentialsServiceStub) -> None:
    attempts = max(1, args.attempts)
    account = pb.AccountRef(
        connection=args.connection, project_id=args.project, account_id=args.account
    )
    if args.command == "get":
        creds = _call(
            attempts,
            lambda t: stub.GetCredentials(
                pb.GetCredentialsRequest(account=account, source=args.source), timeout=t
            ),
        )
        fields = ",".join(sorted(creds.credentials))
        token = creds.credentials.get("access_token", "")
        print(f"credentials access_token={token} fields={fields}")
    elif args.command == "validate":
        check = _call(
            attempts,
            lambda t: stub.ValidateAccount(
                pb.ValidateAccountRequest(account=account, source=args.source), timeout=t
            ),
        )
        problems = ",".join(
            pb.Reason.Name(p.reason).removeprefix("REASON_") for p in check.problems
        )
        print(f"valid={str(check.valid).lower()} problems={problems}")
    elif args.command == "watch":
        _watch(stub, pb.WatchCredentialsRequest(account=account, source=args.source), args.count)
    else:
        refresh = _call(
            attempts,
            lambda t: stub.RefreshToken(
                pb.RefreshTokenRequest(connection=args.connection, force=args.force), timeout=t
            ),
        )
        expires_at = _rfc3339(refresh.HasField("expires_at"), refresh.expires_at)
        print(f"refreshed={str(refresh.refreshed).lower()} expires_at={expires_at}")


def _watch(stub: pb_grpc.CredentialsServiceStub, request: Any, count: int) -> None:
    """Prints every value as the sidecar pushes it; no deadline: it lives as long as the sync."""
    printed = 0
    while True:
        try:
            for message in stub.WatchCredentials(request, wait_for_ready=True):
                token = message.credentials.get("access_token", "")
                expires_at = _rfc3339(message.HasField("expires_at"), message.expires_at)
                print(f"watch access_token={token} expires_at={expires_at}", flush=True)
                printed += 1
                if count and printed >= count:
                    return
        except grpc.RpcError as error:
            err = CallError.of(error)
            if err.code != grpc.StatusCode.UNAVAILABLE:
                raise
            print(f"stream ended UNAVAILABLE (reason={err.reason}); reconnecting", file=sys.stderr)
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with grpc.insecure_channel(args.target) as channel:
        try:
            _run(args, pb_grpc.CredentialsServiceStub(channel))
        except grpc.RpcError as error:
            err = CallError.of(error)
            print(f"error code={err.code.name} reason={err.reason}")
            print(f"message: {err.message}", file=sys.stderr)
            for violation in err.violations:
                print(f"violation: {violation}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
