"""The operating guide (``docs/operating.md``, with ``docs/security.md``): every switch it
names exists, and a test in this folder runs pdsidecar with it; so does every switch of a
``pdsidecar`` command anywhere in the README or ``docs/`` (``tests/test_docs.py``).

"Runs with it" is recorded as the tests run (``tests/support/exercised.py``): the argv,
environment and config of each ``pdsidecar serve`` process and in-process CLI run, and
the config mappings and environments tests hand to the loaders. A name that merely
appears in a test file does not count. That check reads what the other tests of this
folder did: in this session when they ran before it (it is ordered last), else by
running the missing ones in a pytest process of their own, so it never depends on order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdsidecar.cli import _parser
from tests.support import exercised
from tests.support.docs import PAGES, pdsidecar_commands
from tests.support.fixtures import DESELECTED, RAN

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


def exercised_by_the_other_tests(session: pytest.Session, tmp_path: Path) -> set[str]:
    """What the other tests of this folder ran pdsidecar with.

    Read from this session when they all ran in this process before this test (a whole
    run orders this test last); otherwise the missing files run in a pytest process of
    their own, which reports its names in a file: never a skip, whatever the order.
    """
    mine = Path(__file__).name
    tests: dict[str, list[str]] = {p.name: [] for p in HERE.glob("test_*.py")}
    tests.pop(mine)
    for item in session.items:
        if Path(item.path).parent == HERE and item.path.name != mine:
            tests[item.path.name].append(item.nodeid)
    deselected = {Path(item.path).name for item in DESELECTED}
    missing = sorted(
        name
        for name, ids in tests.items()
        if not ids or name in deselected or not all(nodeid in RAN for nodeid in ids)
    )
    if not missing:
        return set(exercised.NAMES)
    report = tmp_path / "exercised.json"
    env = {**os.environ, exercised.SAVE_TO: str(report)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    subprocess.run(
        [*args, *(str(HERE / name) for name in missing)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,  # their failures are theirs to report; only the names count here
        timeout=900,
    )
    return set(exercised.NAMES) | set(json.loads(report.read_text(encoding="utf-8")))


@pytest.mark.last
def test_every_switch_in_the_operating_section_is_run_by_a_test(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    text = section()
    names = flags(text) | command_switches()
    names |= set(re.findall(r"\b(?:PDSIDECAR|OTEL_EXPORTER_OTLP)_[A-Z_]+\b", text))
    names |= {key for key in CONFIG_KEYS if key in text}
    untested = sorted(names - exercised_by_the_other_tests(request.session, tmp_path))
    assert not untested, f"no test ran pdsidecar with {untested}"
