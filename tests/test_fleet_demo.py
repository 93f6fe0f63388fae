"""``scripts/fleet-demo.sh``: three sidecars cost Pipedream three tokens and three reads of
one account on their own, one and one sharing Redis. The script's Python runs here, in
this process (its imports are loaded already), against a real redis-server."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest

from tests.support.ci import missing

pytestmark = pytest.mark.anyio

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


async def test_the_fleet_demo_counts_what_sharing_saves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed (apt-get install redis-server)")
    assert "scripts/fleet_demo.py" in (SCRIPTS / "fleet-demo.sh").read_text(encoding="utf-8")
    demo = runpy.run_path(str(SCRIPTS / "fleet_demo.py"), run_name="fleet_demo")
    assert await demo["main"]() == 0
    out = capsys.readouterr().out
    assert "without the shared tier: 3 Pipedream token requests, 3 account reads" in out
    assert "with the shared tier:    1 Pipedream token request, 1 account read" in out
