"""The README and docs/ keep their promises: every link resolves, every ``pdsidecar``
command parses with the real command line, and every script, module and file a command
names exists. (``tests/ops/test_readme_ops.py`` checks that a test runs each switch.)"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from pdsidecar.cli import _parser
from tests.support.docs import PAGES, ROOT, anchors, links, pdsidecar_commands, shell_commands


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{_name(page)} links to what is not there: {broken}"


def test_the_readme_links_every_docs_page() -> None:
    readme = set(links(ROOT / "README.md"))
    unlinked = [_name(p) for p in PAGES[1:] if _name(p) not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_pdsidecar_command_parses(page: Path) -> None:
    for command in pdsidecar_commands(page):
        try:
            _parser().parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"{_name(page)}: `{' '.join(command)}` does not parse")


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_script_module_and_folder_a_command_names_exists(page: Path) -> None:
    missing = []
    for words in shell_commands(page):
        program, args = words[0], words[1:]
        if program.startswith("scripts/"):
            if not os.access(ROOT / program, os.X_OK):
                missing.append(program)
        elif program == "python" and args[:1] == ["-m"]:
            if importlib.util.find_spec(args[1]) is None:
                missing.append(f"python -m {args[1]}")
        elif program == "python" and args and args[0].endswith(".py"):
            if not (ROOT / args[0]).exists():
                missing.append(args[0])
        elif program == "cd" and not (ROOT / args[0]).is_dir():
            missing.append(f"cd {args[0]}")
    assert not missing, f"{_name(page)} names what is not there: {missing}"
