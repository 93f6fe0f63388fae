"""The layer contract of pyproject.toml holds: no module imports from a layer above it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_every_server_module_sits_in_a_layer_package() -> None:
    leaves = {"__init__", "__main__", "cli", "settings", "errors", "secret", "clock"}
    flat = sorted(
        p.stem for p in (ROOT / "server" / "pdsidecar").glob("*.py") if p.stem not in leaves
    )
    assert flat == [], f"modules outside the layer packages: {flat}"
