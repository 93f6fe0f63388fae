"""``pdsidecar health``: asks a running sidecar whether it is ready (or alive).

For Docker ``HEALTHCHECK`` and Kubernetes exec probes. It calls
``grpc.health.v1.Health/Check`` for ``pdsidecar.v1.CredentialsService``
(readiness), or for the server as a whole with ``--liveness``, prints the
status and exits 0 when SERVING, 1 otherwise (NOT_SERVING, unknown, or no
answer within ``--timeout``). Health needs no API token.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS: Final = "127.0.0.1:50051"
SERVICE: Final = "pdsidecar.v1.CredentialsService"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health", help="check a running sidecar's gRPC health (exit 0 when SERVING)"
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("PDSIDECAR_HEALTH_ADDRESS") or DEFAULT_ADDRESS,
        metavar="ADDR",
        help=f"HOST:PORT or unix:PATH (default: $PDSIDECAR_HEALTH_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--liveness",
        action="store_true",
        help="check the server as a whole (service ''), not the credentials service's readiness",
    )
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for an answer (default 3)"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help="connect with TLS, trust this CA"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="client key (mTLS)")
    parser.add_argument(
        "--tls-server-name", metavar="NAME", help="expected name in the server certificate"
    )
    parser.set_defaults(run=run)


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None and args.tls_cert is None:
        return grpc.insecure_channel(args.address)
    from pdsidecar.runtime.tls import client_credentials

    options = []
    if args.tls_server_name:
        options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    credentials = client_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    return grpc.secure_channel(args.address, credentials, options=options)


async def run(args: argparse.Namespace) -> int:
    # One blocking call: the synchronous API, so the command runs anywhere, even beside
    # another grpc.aio event loop in the same process.
    service = "" if args.liveness else SERVICE
    with _channel(args) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            code = error.code().name if isinstance(error, grpc.Call) else "UNKNOWN"
            print(f"pdsidecar health: {args.address}: {code}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1
