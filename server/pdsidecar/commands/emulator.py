"""``pdsidecar emulator``: the Pipedream API emulator on its own, for a sidecar started apart.

It prints what a sidecar needs to use it, as a ``pdsidecar serve`` line to paste:
the demo client id and secret (a demo value, useless anywhere else) and the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
from typing import Any, Final

from pdsidecar.config.listen import parse_listen
from pdsidecar.settings import ConfigError

DEFAULT_LISTEN: Final = "127.0.0.1:8765"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        help="run the Pipedream API emulator alone",
        description=(
            "Serve a Pipedream Connect API emulator with demo accounts (one OAuth client, "
            "project proj_demo) over plain HTTP, and print the 'pdsidecar serve' line that "
            "points a sidecar at it. For trying things out and tests; 'pdsidecar serve "
            "--emulator' runs both in one process instead."
        ),
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"where to serve (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    # The earlier spellings of --listen, kept so scripts keep working.
    parser.add_argument("--host", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def _address(args: argparse.Namespace) -> tuple[str, int]:
    if args.listen:
        address = parse_listen(args.listen)
        if address.kind != "tcp":
            raise ConfigError("pdsidecar emulator --listen takes HOST:PORT")
        return address.host, address.port
    default = parse_listen(DEFAULT_LISTEN)
    host = default.host if args.host is None else args.host
    return host, default.port if args.port is None else args.port


def banner(url: str) -> str:
    from pdsidecar_emulator import (
        DEMO_ACCOUNTS,
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_ENVIRONMENT,
        DEMO_PROJECT_ID,
    )

    env = {
        "PIPEDREAM_CLIENT_ID": DEMO_CLIENT_ID,
        "PIPEDREAM_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "PDSIDECAR_PIPEDREAM_URL": url,
    }
    lines = [
        f"pdsidecar emulator: Pipedream API on {url}",
        f"  client_id {DEMO_CLIENT_ID}, client_secret {DEMO_CLIENT_SECRET} (demo values)",
        f"  project_id {DEMO_PROJECT_ID}, environment {DEMO_ENVIRONMENT}; accounts:",
        *(f"  {a:<20} {app:<13} {user:<11} {note}" for a, app, user, note in DEMO_ACCOUNTS),
        "",
        "Point a sidecar at it (in another terminal):",
        "  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " pdsidecar serve",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    from pdsidecar_emulator import Emulator, demo_state

    host, port = _address(args)
    try:
        emulator = Emulator(demo_state(), host, port)
        await emulator.start()
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    try:
        print(banner(emulator.url), flush=True)
        await asyncio.Event().wait()
    finally:
        await emulator.stop()
    return 0
