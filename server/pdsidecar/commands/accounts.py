"""``pdsidecar accounts``: lists a project's connected accounts."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "accounts", help="list connected accounts through a running sidecar"
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("pdsidecar accounts is not built yet")
