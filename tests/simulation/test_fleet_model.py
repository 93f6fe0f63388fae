"""Random schedules of a simulated fleet, invariants after every step (see model.py).

CI runs ``SIM_SCHEDULES`` schedules (300 by default); ``python -m tests.simulation``
runs more, or replays one seed.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.simulation.model import FleetModel

SCHEDULES = int(os.environ.get("SIM_SCHEDULES", "300"))

TestFleetModel = FleetModel.TestCase
TestFleetModel.settings = settings(
    max_examples=SCHEDULES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
