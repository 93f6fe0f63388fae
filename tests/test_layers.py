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
    leaves = {"__init__", "__main__", "cli", "settings", "errors", "secret", "clock", "background"}
    flat = sorted(
        p.stem for p in (ROOT / "server" / "pdsidecar").glob("*.py") if p.stem not in leaves
    )
    assert flat == [], f"modules outside the layer packages: {flat}"


def test_no_hook_is_assigned_onto_another_object_after_construction() -> None:
    # Collaborators are passed in when built (the fleet's tier through source holders);
    # an assignment like ``x.y.on_store = ...`` or ``provider.shared = ...`` wires behind them.
    import re

    pattern = re.compile(
        r"^\s+[a-z_]+(\.[a-z_]+)*\.(shared|on_[a-z_]+|[a-z_]*hook[a-z_]*|[a-z_]*listener[a-z_]*)"
        r"\s*=[^=]"
    )
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "server" / "pdsidecar").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.match(line) and not re.match(r"^\s+self\.[a-z_]+\s*=", line)
    ]
    assert found == []
