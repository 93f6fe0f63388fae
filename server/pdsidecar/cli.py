"""The ``pdsidecar`` command. Each subcommand lives in :mod:`pdsidecar.commands`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pdsidecar import __version__
from pdsidecar.commands import accounts, emulator, health, serve
from pdsidecar.config import ConfigError

COMMANDS = (serve, emulator, health, accounts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdsidecar", description="gRPC sidecar serving Pipedream Connect credentials."
    )
    parser.add_argument("--version", action="version", version=f"pdsidecar {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "info").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = asyncio.run(args.run(args))
        return code
    except ConfigError as error:
        print(f"pdsidecar: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
