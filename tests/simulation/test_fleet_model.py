"""Random schedules of a simulated fleet, the invariants after every step (model.py).

CI runs ``SIM_SCHEDULES`` schedules (default below) on new seeds each run, in
``PARTS`` tests of their own seed each (so pytest's workers share them); each seed
is printed, and a failure names the command that replays it. ``SIM_SEED`` fixes the
seed; ``python -m tests.simulation`` runs longer (README.md here).
"""

from __future__ import annotations

import os

import pytest

from tests.simulation.run import new_seed, replay_command, run

SCHEDULES = int(os.environ.get("SIM_SCHEDULES", "250"))
STEPS = int(os.environ.get("SIM_STEPS", "25"))
PARTS = 2


@pytest.mark.parametrize("part", range(PARTS))
def test_random_schedules_keep_the_fleet_invariants(part: int) -> None:
    chosen = int(os.environ.get("SIM_SEED") or new_seed()) + part
    schedules = SCHEDULES // PARTS + (part < SCHEDULES % PARTS)
    replay = replay_command(chosen, schedules, STEPS)
    print(f"simulation seed {chosen}; replay: {replay}")
    try:
        run(chosen, schedules, STEPS)
    except BaseException as error:
        error.add_note(f"simulation seed {chosen}; replay: {replay}")
        raise
