"""``pdsidecar health``: asks a running sidecar whether it is ready (or alive).

For Docker ``HEALTHCHECK`` and Kubernetes exec probes. It calls
``grpc.health.v1.Health/Check`` for ``pdsidecar.v1.CredentialsService``
(readiness), or for the server as a whole with ``--liveness``, prints the
status and exits 0 when SERVING, 1 otherwise (NOT_SERVING, unknown, or no
answer within ``--timeout``). Health needs no API token.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pdsidecar.commands import client_flags

SERVICE: Final = "pdsidecar.v1.CredentialsService"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health",
        help="check a running sidecar's gRPC health (exit 0 when SERVING)",
        description=(
            "Ask a running sidecar whether it is ready: grpc.health.v1 Check for "
            f"{SERVICE} (or the server as a whole with --liveness). Prints the status; exit "
            "0 when SERVING, 1 otherwise (NOT_SERVING, unknown, no answer). Needs no API token."
        ),
    )
    client_flags.add_client_flags(parser, timeout=3.0)
    parser.add_argument(
        "--liveness",
        action="store_true",
        help="check the server as a whole (service ''), not the credentials service's readiness",
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    # One blocking call: the synchronous API, so the command runs anywhere, even beside
    # another grpc.aio event loop in the same process.
    problem = client_flags.usage_problem(args)
    if problem:
        print(f"pdsidecar health: {problem}", file=sys.stderr)
        return 2
    service = "" if args.liveness else SERVICE
    with client_flags.channel(args) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            call = error if isinstance(error, grpc.Call) else None
            code = call.code().name if call else "UNKNOWN"
            details = (call.details() if call else "") or ""
            hint = client_flags.connection_hint(args, details)
            text = f"pdsidecar health: {args.target}: {code}"
            text += f": {details}" if details and code == "UNAVAILABLE" else ""
            print(text + (f" ({hint})" if hint else ""), file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1
