"""``pdsidecar emulator``: the Pipedream API emulator on its own."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator", help="run the Pipedream API emulator alone"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from pdsidecar_emulator import run_emulator

    await run_emulator(args.host, args.port)
    return 0
