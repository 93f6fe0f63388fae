"""Running schedules: a seed, a number of schedules, a number of steps each.

A seed fixes every schedule Hypothesis draws (and, through the drawn seed of each
schedule, the fleet's own chance): the same seed and the same ``schedules`` replay
the same runs, step for step, and a failing schedule is found and shrunk again.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.simulation.model import FleetModel


def new_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def replay_command(chosen: int, schedules: int, steps: int) -> str:
    return f"python -m tests.simulation --seed {chosen} --schedules {schedules} --steps {steps}"


def run(chosen: int, schedules: int, steps: int, *, shrink: bool = True) -> None:
    """Run ``schedules`` random schedules of up to ``steps`` steps; raise the first
    invariant broken (shrunk to a short schedule unless ``shrink`` is False)."""
    machine = seed(chosen)(type("FleetSchedules", (FleetModel,), {}))
    phases = None if shrink else [p for p in settings.default.phases if p.name != "shrink"]
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=schedules,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            **({"phases": phases} if phases is not None else {}),
        ),
    )
