"""``pdsidecar health``: asks a running sidecar whether it is ready."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "health", help="check a running sidecar's gRPC health (exit 0 when SERVING)"
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("pdsidecar health is not built yet")
