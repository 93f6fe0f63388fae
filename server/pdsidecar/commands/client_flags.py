"""The flags every client-side subcommand (``health``, ``accounts``, ``reload``'s peers)
shares: where the sidecar is, how long to wait, and TLS.

One name per idea: ``--target`` / ``$PDSIDECAR_TARGET`` is the sidecar's address
everywhere (``health --address`` and ``$PDSIDECAR_HEALTH_ADDRESS``, the old
spellings, still work and are not shown). The TLS flags mean what they mean for
``pdsidecar serve``, seen from the client: ``--tls-ca`` trusts the CA that signed
the listener's ``--tls-cert``; ``--tls-cert``/``--tls-key`` are the client's own
certificate for a listener with ``--tls-client-ca``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import grpc

from pdsidecar_client import channels

DEFAULT_TARGET: Final = "127.0.0.1:50051"
TARGET_ENV: Final = "PDSIDECAR_TARGET"
OLD_TARGET_ENV: Final = "PDSIDECAR_HEALTH_ADDRESS"  # health's earlier name; still read


def default_target(env: Mapping[str, str]) -> str:
    return env.get(TARGET_ENV) or env.get(OLD_TARGET_ENV) or DEFAULT_TARGET


def add_client_flags(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    parser.add_argument(
        "--target",
        default=default_target(os.environ),
        metavar="ADDR",
        help=f"the sidecar: HOST:PORT or unix:PATH (default: ${TARGET_ENV}, else {DEFAULT_TARGET})",
    )
    # The old spelling of --target (health had it); kept so scripts keep working.
    parser.add_argument(
        "--address", dest="target", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help=f"how long to wait for an answer (default {timeout:g})",
    )
    tls = parser.add_argument_group("TLS (for a listener started with --tls-cert/--tls-key)")
    tls.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help="connect with TLS, trusting this CA"
    )
    tls.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mutual TLS)")
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="client key (mutual TLS)")
    tls.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="expected name in the server certificate, when the target does not name it",
    )


def usage_problem(args: argparse.Namespace) -> str:
    if args.timeout <= 0:
        return "--timeout must be more than 0 seconds"
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    return ""


def uses_tls(args: argparse.Namespace) -> bool:
    return any(value is not None for value in (args.tls_ca, args.tls_cert, args.tls_key))


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for the Python clients."""
    return {
        "timeout": args.timeout,
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_server_name": args.tls_server_name,
    }


def channel(args: argparse.Namespace) -> grpc.Channel:
    """A blocking channel to ``--target`` with the TLS flags applied."""
    credentials = channels.tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    options = channels.options((), args.tls_server_name)
    if credentials is None:
        return grpc.insecure_channel(args.target, options)
    return grpc.secure_channel(args.target, credentials, options)


def connection_hint(args: argparse.Namespace, details: str) -> str:
    """A hint for a connection that failed, naming TLS when the handshake is the cause."""
    advice = channels.hint(channels.last_error(details), uses_tls(args))
    # The client library names its own parameters; here the flags are what to change.
    for parameter, flag in (
        ("tls_cert/tls_key, --tls-cert/--tls-key", "--tls-cert/--tls-key"),
        ("tls_ca (--tls-ca)", "--tls-ca"),
        ("tls_ca", "--tls-ca"),
    ):
        advice = advice.replace(parameter, flag)
    return advice
