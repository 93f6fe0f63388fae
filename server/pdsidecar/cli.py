"""The ``pdsidecar`` command. Each subcommand lives in :mod:`pdsidecar.commands`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from pdsidecar import __version__
from pdsidecar.commands import accounts, dev_certs, emulator, health, reload, serve
from pdsidecar.observe import logs
from pdsidecar.settings import ConfigError

COMMANDS = (serve, emulator, health, accounts, reload, dev_certs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdsidecar", description="gRPC sidecar serving Pipedream Connect credentials."
    )
    parser.add_argument("--version", action="version", version=f"pdsidecar {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _run(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run, on uvloop when it is installed (the ``fast`` extra): it cut about
    a fifth of the server's CPU per call in the benchmark."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # JSON lines with a redaction filter for the server; plain text for the other commands.
    logs.configure(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        code: int = _run(args.run(args))
        return code
    except ConfigError as error:
        print(f"pdsidecar: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
