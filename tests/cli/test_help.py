"""Every subcommand's ``--help`` says what it does and every default; ``serve --help``
lists the environment variables the sidecar reads."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdsidecar.cli import _parser

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_each_subcommand_describes_itself_and_every_default(name: str) -> None:
    parser = subcommands()[name]
    assert parser.description and len(parser.description) > 60, name
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings}: no help"
        if action.default not in (None, False, "", argparse.SUPPRESS):
            assert "default" in action.help, f"{name} {action.option_strings}: default unsaid"


def test_serve_help_names_every_environment_variable_it_reads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pdsidecar", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    sources = [
        ROOT / "server/pdsidecar/config/load.py",
        ROOT / "server/pdsidecar/commands/serve.py",
    ]
    names = set()
    for source in sources:
        names |= set(re.findall(r'"((?:PIPEDREAM|PDSIDECAR)_[A-Z_]+)"', source.read_text()))
    names.add("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert {"PIPEDREAM_CLIENT_ID", "PDSIDECAR_API_TOKEN"} <= names
    environment = done.stdout.partition("environment:")[2]
    missing = sorted(n for n in names if n not in environment)
    assert not missing, f"serve --help does not name {missing}"
    for default in ("(default 10)", "default info", "(default json)", "(default 1)"):
        assert default in done.stdout
