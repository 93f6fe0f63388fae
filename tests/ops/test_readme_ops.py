"""The README's "Operating pdsidecar" section: every switch it names exists and is
exercised by a test in this folder."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pdsidecar.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def section(text: str) -> str | None:
    found = re.search(r"^## Operating pdsidecar\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return found.group(1) if found else None


def defined_flags() -> set[str]:
    flags: set[str] = set()
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_parser in action.choices.values():
                for sub in sub_parser._actions:
                    flags.update(s for s in sub.option_strings if s.startswith("--"))
    return flags


def test_every_switch_in_the_operating_section_is_real_and_tested() -> None:
    text = section((ROOT / "README.md").read_text(encoding="utf-8"))
    if text is None:
        pytest.skip("README.md has no 'Operating pdsidecar' section yet")
    tests = "\n".join(p.read_text(encoding="utf-8") for p in HERE.glob("test_*.py"))
    tests = tests.replace(Path(__file__).read_text(encoding="utf-8"), "")
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))
    assert flags, "the section names no switch"
    unknown = sorted(flags - defined_flags())
    assert not unknown, f"the README names switches pdsidecar does not have: {unknown}"
    names = flags | set(re.findall(r"\b(?:PDSIDECAR|OTEL_EXPORTER_OTLP)_[A-Z_]+\b", text))
    names |= {
        k
        for k in ("api_token_file", "socket_mode", "allow_connections", "allow_sources")
        if k in text
    }
    untested = sorted(n for n in names if n not in tests)
    assert not untested, f"no test in tests/ops uses {untested}"
