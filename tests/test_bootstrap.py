"""``scripts/demo.sh`` (through ``scripts/bootstrap.sh``) installs only when something changed.

Run on a copy of the scripts in a folder of their own, with a stand-in ``.venv`` whose
``python`` and ``pdsidecar`` only record how they were called: no package index, no
real install.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RECORDER = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then echo "Python 3.11.7 (fake)"; exit 0; fi
echo "$(basename "$0") $*" >>"$(dirname "$0")/../calls"
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / "client/python").mkdir(parents=True)
    for script in ("bootstrap.sh", "demo.sh"):
        shutil.copy(ROOT / "scripts" / script, root / "scripts" / script)
    for name in ("pyproject.toml", "constraints.txt", "client/python/pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    bin_dir = root / ".venv/bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "uv", "pdsidecar"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    return root


PRINTED: list[str] = []


def demo(root: Path) -> list[str]:
    calls = root / ".venv/calls"
    calls.unlink(missing_ok=True)
    done = subprocess.run(
        [root / "scripts/demo.sh", "--listen", "127.0.0.1:0"],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    PRINTED[:] = done.stderr.splitlines()
    return calls.read_text().splitlines()


def test_demo_installs_once_and_again_only_after_a_change(tmp_path: Path) -> None:
    root = project(tmp_path)
    serve = "pdsidecar serve --emulator --listen 127.0.0.1:0"
    first = demo(root)
    assert any(call.startswith("python -m pip install") and "uv==" in call for call in first)
    assert any(call.startswith("uv pip install") and "-c constraints.txt" in call for call in first)
    assert first[-1] == serve
    steps = [line.split(":")[0] + ": " + line.split(": ")[1].split()[0] for line in PRINTED]
    assert steps == [  # one line per step, so a first run is never silent
        "demo: setting",
        "bootstrap: installing",  # uv
        "bootstrap: installing",  # the project, with uv
        "bootstrap: .venv",
        "demo: starting",
    ]
    assert demo(root) == [serve]  # nothing changed: no pip at all
    with (root / "constraints.txt").open("a") as constraints:
        constraints.write("# a new pin\n")
    assert any("pip install" in call for call in demo(root))
    assert demo(root) == [serve]
