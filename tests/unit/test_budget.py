"""The read budget's shares per caller and listener, alone, on a manual clock."""

from __future__ import annotations

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.credentials.budget import ReadBudget, caller_id, fleet_peer, listener_of
from pdsidecar.errors import Overloaded
from pdsidecar.settings import Policy

POLICY = Policy(
    upstream_read_budget=100,
    upstream_read_window=60.0,
    caller_read_share=0.5,
    listener_read_share=0.75,
    not_found_allowance=10,
)


def spend(budget: ReadBudget, caller: str, reads: int) -> int:
    """Reads ``caller`` may start now, up to ``reads``."""
    for done in range(reads):
        try:
            budget.check(caller)
        except Overloaded:
            return done
        budget.spend(caller)
    return reads


def test_caller_ids_keep_their_listener() -> None:
    assert listener_of(caller_id("127.0.0.1:50051", "ipv4:127.0.0.1:4242")) == "127.0.0.1:50051"
    assert listener_of(caller_id("unix:/run/a b.sock", "unix:")) == "unix:/run/a b.sock"
    assert listener_of("(watchers)") == ""


def test_one_caller_gets_its_share_and_the_others_theirs() -> None:
    clock = ManualClock()
    budget = ReadBudget(POLICY, clock)
    greedy, other, third = (caller_id("a:1", f"ipv4:10.0.0.1:{p}") for p in (1, 2, 3))
    assert spend(budget, greedy, 80) == 50  # half the budget
    with pytest.raises(Overloaded) as refused:
        budget.check(greedy)
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    # The listener's share (75) leaves 25 for the next caller on it...
    assert spend(budget, other, 80) == 25
    # ...and another listener keeps its own.
    assert spend(budget, caller_id("b:2", "ipv4:10.0.0.1:9"), 80) == 50
    assert spend(budget, third, 1) == 0
    # The counts decay with the window: a minute later there is room again.
    clock.advance(60)
    assert spend(budget, greedy, 5) == 5


def test_a_caller_whose_reads_are_mostly_not_found_is_slowed() -> None:
    clock = ManualClock()
    budget = ReadBudget(POLICY, clock)
    guesser = caller_id("a:1", "ipv4:10.0.0.1:1")
    honest = caller_id("b:2", "ipv4:10.0.0.1:2")
    for _ in range(10):
        budget.check(guesser)
        budget.spend(guesser)
        budget.not_found(guesser)
    with pytest.raises(Overloaded, match="found no account"):
        budget.check(guesser)
    clock.advance(1.0)
    budget.check(guesser)  # one read a second
    budget.spend(guesser)
    budget.not_found(guesser)
    with pytest.raises(Overloaded):
        budget.check(guesser)
    # A caller with a few misses among many reads is not.
    for index in range(40):
        budget.check(honest)
        budget.spend(honest)
        if index % 4 == 0:
            budget.not_found(honest)
    budget.check(honest)


def test_watchers_rereads_are_not_limited() -> None:
    budget = ReadBudget(POLICY, ManualClock())
    assert spend(budget, "(watchers)", 500) == 500


def test_a_fleet_caller_is_its_address_without_the_port_and_local_ones_name_their_host() -> None:
    assert fleet_peer("ipv4:10.1.2.3:51234", "pod-a") == "ipv4:10.1.2.3"
    assert fleet_peer("ipv6:[2001:db8::7]:51234", "pod-a") == "ipv6:[2001:db8::7]"
    assert fleet_peer("ipv4:127.0.0.1:40001", "pod-a") == "pod-a/ipv4:127.0.0.1"
    assert fleet_peer("ipv6:[::1]:40001", "pod-a") == "pod-a/ipv6:[::1]"
    assert fleet_peer("unix:", "pod-a") == "pod-a/unix:"
