"""Schedules written by hand: the ones issue 18 measured on real processes, replayed on
the simulated fleet in virtual time. Each broke the code before the fleet model (the
numbers in the comments are what it did); the random schedules (test_fleet_model.py)
look for the ones nobody wrote down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
)

from tests.simulation import fleet as simulated
from tests.simulation.fleet import ACCOUNTS, URL, SimFleet
from tests.simulation.model import FleetModel

NOTION = DEMO_NOTION_ACCOUNT_ID


@pytest.fixture
def sim() -> Iterator[SimFleet]:
    fleet = SimFleet(seed=18)
    yield fleet
    fleet.close()


def redis_name(sim: SimFleet, account: str) -> bytes:
    store = next(iter(sim.sidecars.values())).sidecar.fleet
    assert store is not None
    slot = store.store.slot("account", URL, DEMO_CLIENT_ID, DEMO_PROJECT_ID, "production", account)
    return slot.name("v")


def forge_event(sim: SimFleet, account: str) -> None:
    """Events about ``account`` anyone may publish: a hint naming a version far ahead,
    and the invalidation of the protocol before versions (with the time of now)."""
    fleet = next(iter(sim.sidecars.values())).sidecar.fleet
    assert fleet is not None
    tag = redis_name(sim, account).decode().split("{")[1].split("}")[0]
    sim.redis.inject(fleet.store.events.channel, f"w:{tag}:{2**62}")
    sim.redis.inject(fleet.store.events.channel, f"i:{tag}:{sim.clock.wall():.6f}")


def test_one_rejection_with_watchers_on_two_sidecars_is_one_read(sim: SimFleet) -> None:
    # Item 1 (before: 152 reads in 30 s, 3,152 in the next 10 minutes).
    one, two = sim.join(), sim.join()
    sim.watch(one, NOTION)
    sim.watch(two, NOTION)
    sim.advance(1)
    sim.call(one, NOTION, reject=True)
    sim.advance(30)
    assert sim.pipedream.reads[NOTION] <= 2
    sim.advance(600)
    assert sim.pipedream.reads[NOTION] <= 2 + 600 // simulated.FRESH


def test_an_older_value_written_back_is_never_served(sim: SimFleet) -> None:
    # Item 2 (before: both sidecars served the replaced token again).
    one, two = sim.join(), sim.join()
    sim.call(one, NOTION)
    sim.advance(0.5)
    sim.rotate(NOTION)
    sim.call(one, NOTION, reject=True)
    sim.advance(0.5)
    sim.call(two, NOTION)
    sim.advance(0.5)
    sim.redis.replay(redis_name(sim, NOTION), -2, px=600_000)
    forge_event(sim, NOTION)
    sim.advance(0.5)
    sim.call(one, NOTION)
    sim.call(two, NOTION)
    sim.advance(0.5)
    assert [s.version for s in sim.served] == [0, 1, 1, 1, 1]
    assert not sim.problems


def test_forged_events_cost_no_read(sim: SimFleet) -> None:
    # Item 3 (before: 40 reads for 200 events over 10 s, three sidecars watching).
    for number in (sim.join(), sim.join(), sim.join()):
        sim.watch(number, NOTION)
    sim.advance(1)
    before = sim.pipedream.reads[NOTION]
    for index in range(200):
        sim.loop.call_later(index * 0.05, forge_event, sim, NOTION)
    sim.advance(10)
    assert sim.pipedream.reads[NOTION] == before


def test_refused_re_reads_keep_the_streams(sim: SimFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    # Item 5 (before: OVERLOADED ended streams). One Pipedream request at a time.
    policy = dataclasses.replace(simulated.POLICY, upstream_concurrency=1, fetch_queue_wait=1.0)
    monkeypatch.setattr(simulated, "POLICY", policy)
    one, two = sim.join(), sim.join()
    for account in ACCOUNTS:
        sim.watch(one, account)
        sim.watch(two, account)
    sim.advance(1)
    sim.pipedream.latency, sim.pipedream.latency_until = 3.0, sim.loop.time() + 60
    for account in ACCOUNTS:
        sim.call(one, account, reject=True)
    sim.advance(120)
    assert sim.stream_ends == []
    assert len(sim.watched()) == len(ACCOUNTS)


def test_a_reload_that_changes_a_connection_still_refuses_a_value_older_than_one_served() -> None:
    # Found by a random schedule in a stress run (seed 1825039567), shrunk to this: the
    # reload forgot the versions the sidecar held for the connection, so the replaced
    # value written back to Redis, announced by an event, was taken and pushed to the
    # watcher again.
    model = FleetModel()
    try:
        model.start(seed=0, count=1)
        model.watch(account=DEMO_CODA_ACCOUNT_ID, pick=0)
        model.rotate(account=DEMO_CODA_ACCOUNT_ID)
        model.time_passes(seconds=53.5)
        model.idle(minutes=1)
        model.reload(change="connection", pick=0)
        model.old_value_written_back(account=DEMO_CODA_ACCOUNT_ID, hint="w", older=2, version=1)
        model.no_version_goes_back()
    finally:
        model.teardown()
