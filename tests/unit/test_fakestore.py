"""What the simulation needs of FakeSharedStore beyond Redis's meaning (which
tests/integration/test_store_contract.py checks against a real redis-server)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pdsidecar.clock import ManualClock
from tests.support.fakestore import FakeSharedStore

pytestmark = pytest.mark.anyio


async def test_values_expire_on_the_manual_clock() -> None:
    clock = ManualClock()
    fake = FakeSharedStore(now=clock.monotonic)
    await fake.set(b"k", b"v", px=1500)
    clock.advance(1.4)
    assert await fake.get(b"k") == b"v" and fake.pttl(b"k") == 100
    clock.advance(0.1)
    assert await fake.get(b"k") is None and fake.pttl(b"k") == -2


async def test_an_older_value_can_be_written_back() -> None:
    fake = FakeSharedStore()
    for value in (b"one", b"two", b"three"):
        await fake.set(b"k", value, px=10_000)
    assert fake.history(b"k") == [b"one", b"two", b"three"]
    fake.replay(b"k", 0)
    assert await fake.get(b"k") == b"one"


async def test_a_severed_connection_fails_and_loses_its_subscription() -> None:
    fake = FakeSharedStore()
    connection, other = fake.connect(), fake.connect()
    subscription = connection.pubsub()
    await subscription.subscribe("events")
    connection.sever()
    with pytest.raises(RedisConnectionError):
        await connection.get(b"k")
    with pytest.raises(RedisConnectionError):
        await subscription.get_message(timeout=0)
    await other.set(b"k", b"v", px=1000)  # the store itself lives on
    assert await other.get(b"k") == b"v"


async def test_events_reach_subscribers_in_order_unless_dropped() -> None:
    fake = FakeSharedStore()
    subscription = fake.pubsub()
    await subscription.subscribe("events")
    await fake.publish("events", "a")
    fake.drop_events = True
    assert await fake.publish("events", "lost") == 0
    fake.drop_events = False
    fake.inject("events", "b")
    got = [await subscription.get_message(ignore_subscribe_messages=True, timeout=0) for _ in "ab"]
    assert [m["data"] for m in got if m] == [b"a", b"b"]
    assert await subscription.get_message(timeout=0) is None


async def test_a_failure_knob_fails_every_command() -> None:
    fake = FakeSharedStore()
    fake.failure = RedisConnectionError("down")
    with pytest.raises(RedisConnectionError):
        await fake.ping()
    fake.failure = None
    assert await fake.ping() is True
