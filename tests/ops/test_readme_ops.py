"""The operating guide (``docs/operating.md``, with ``docs/security.md``): every switch it
names exists, and a test in this folder runs pdsidecar with it; so does every switch of a
``pdsidecar`` command anywhere in the README or ``docs/`` (``tests/test_docs.py``).

"Runs with it" is recorded as the tests run (``tests/support/exercised.py``): the argv,
environment and config of each ``pdsidecar serve`` process and in-process CLI run, and
the config mappings and environments tests hand to the loaders. A name that merely
appears in a test file does not count. That check needs the other tests of this folder
to have run first in the same session; it is ordered last.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pdsidecar.cli import _parser
from tests.support import exercised
from tests.support.ci import IN_CI
from tests.support.docs import PAGES, pdsidecar_commands
from tests.support.fixtures import DESELECTED

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG_KEYS = ("api_token_file", "socket_mode", "allow_connections", "allow_sources")


def section() -> str:
    """The operating guide and the security notes, whose every switch is an operator's."""
    return "".join(
        (ROOT / "docs" / name).read_text(encoding="utf-8")
        for name in ("operating.md", "security.md")
    )


def command_switches() -> set[str]:
    """The switches of every ``pdsidecar`` command line in the README and docs/."""
    return {
        word.partition("=")[0]
        for page in PAGES
        for command in pdsidecar_commands(page)
        for word in command
        if word.startswith("--")
    }


def flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))


def defined_flags() -> set[str]:
    defined: set[str] = set()
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_parser in action.choices.values():
                for sub in sub_parser._actions:
                    defined.update(s for s in sub.option_strings if s.startswith("--"))
    return defined


def test_every_switch_in_the_operating_section_is_real() -> None:
    named = flags(section())
    assert named, "the section names no switch"
    unknown = sorted(named - defined_flags())
    assert not unknown, f"the README names switches pdsidecar does not have: {unknown}"


@pytest.mark.last
def test_every_switch_in_the_operating_section_is_run_by_a_test(
    request: pytest.FixtureRequest,
) -> None:
    ran = {Path(item.path).name for item in request.session.items}
    others = {p.name for p in HERE.glob("test_*.py")} - {Path(__file__).name}
    partial = sorted(others - ran) or [i.nodeid for i in DESELECTED if Path(i.path).parent == HERE]
    if partial:
        message = f"needs every test in tests/ops in this session; not run: {partial[:5]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    text = section()
    names = flags(text) | command_switches()
    names |= set(re.findall(r"\b(?:PDSIDECAR|OTEL_EXPORTER_OTLP)_[A-Z_]+\b", text))
    names |= {key for key in CONFIG_KEYS if key in text}
    untested = sorted(names - exercised.NAMES)
    assert not untested, f"no test ran pdsidecar with {untested}"
