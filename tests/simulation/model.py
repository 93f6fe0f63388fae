"""The fleet's invariants, checked after every step of random schedules (Hypothesis stateful).

:class:`FleetModel` drives a :class:`~tests.simulation.fleet.SimFleet`: calls, watches,
rejected tokens, Pipedream rotations and faults (429, 500, latency), Redis stalls,
failures, restarts (empty or not), dropped events, forged or replayed values and
events, reloads, sidecars joining, crashing and restarting, and idle time. After
every step:

1. **Reads**: Pipedream's account reads (200s) per account stay within a budget:
   1 per fresh interval (``FRESH``) in which the account was in demand, + 1 per
   rotation, + 1 per rejected token, + what faults may cost (each sidecar may read
   alone while Redis is in trouble, after a crash, a forged value or a Pipedream fault).
   A forged or replayed event, or an old value written back, buys no read.
2. **Idle**: time with no calls costs no request for accounts nobody watches.
3. **Versions**: no sidecar serves or pushes a value older than one it served
   (a value's version is its place in Pipedream's history of that account).
4. **Replaced**: once a caller got a newer value of an account, no call started
   after (``GRACE`` later) gets an older one anywhere in the fleet, unless Redis was
   in trouble meanwhile (events may not have reached everyone).
5. **Streams**: no watch stream ends on upstream trouble (RATE_LIMITED,
   UPSTREAM_UNAVAILABLE, OVERLOADED, DEADLINE_EXCEEDED).

Everything runs on virtual time (:mod:`tests.simulation.clock`), so a run is replayed
exactly by its seed. Every run prints its seed; a failure names the command that
replays it, e.g. ``python -m tests.simulation --seed 1234 --schedules 250 --steps 25``
(or ``SIM_SEED=1234 pytest tests/simulation``). More in ``tests/simulation/README.md``.
"""

from __future__ import annotations

import math
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_PROJECT_ID
from redis.exceptions import ConnectionError as RedisConnectionError

from pdsidecar.fleet.store import RETRY_AFTER, FleetStore
from tests.simulation.fleet import ACCOUNTS, FRESH, UPSTREAM_TROUBLE, URL, SimFleet

# Virtual seconds every step lets pass, so what it started gets going.
QUANTUM: Final = 0.2
# How long after a replacement was served before every sidecar must have it.
GRACE: Final = 1.0
# Redis trouble lasts this much longer for the invariants (retry pause, lock waits).
TROUBLE_TAIL: Final = RETRY_AFTER + 2 * 5.0 + GRACE
MAX_SIDECARS: Final = 4

accounts = st.sampled_from(sorted(ACCOUNTS))
picks = st.integers(min_value=0, max_value=1_000)


class FleetModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fleet: SimFleet | None = None
        self.windows: dict[str, set[int]] = {a: set() for a in ACCOUNTS}
        self.rejections: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
        self.extra: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)  # reads faults may cost
        self.trouble: list[tuple[float, float]] = []  # Redis trouble, virtual time spans
        self.checked_until = 0.0

    # --- set up, tear down ---
    @initialize(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3))
    def start(self, seed: int, count: int) -> None:
        self.fleet = SimFleet(seed)
        for _ in range(count):
            self.fleet.join()
        self._step()

    def teardown(self) -> None:
        if self.fleet is not None:
            self.fleet.close()

    @property
    def sim(self) -> SimFleet:
        assert self.fleet is not None
        return self.fleet

    def _pick(self, pick: int) -> int:
        numbers = sorted(self.sim.sidecars)
        return numbers[pick % len(numbers)]

    def _now(self) -> float:
        return self.sim.loop.time()

    def _step(self, seconds: float = QUANTUM) -> None:
        before = self._now()
        for account in self.sim.watched():
            self._demand(account, before)
        self.sim.advance(seconds)
        for account in self.sim.watched():
            self._demand(account, before, self._now())

    def _demand(self, account: str, start: float, end: float | None = None) -> None:
        first = math.floor(start / FRESH)
        last = math.floor((end if end is not None else start) / FRESH)
        self.windows[account].update(range(first, last + 1))

    def _cost_all(self, reads: int) -> None:
        for account in ACCOUNTS:
            self.extra[account] += reads

    def _troubled(self, seconds: float) -> None:
        now = self._now()
        self.trouble.append((now, now + seconds + TROUBLE_TAIL))
        live = len(self.sim.sidecars)
        self._cost_all(2 * live * (1 + math.ceil((seconds + TROUBLE_TAIL) / FRESH)))

    # --- callers ---
    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(pick=picks, account=accounts, count=st.integers(1, 4))
    def call(self, pick: int, account: str, count: int) -> None:
        number = self._pick(pick)
        self._demand(account, self._now())
        for _ in range(count):
            self.sim.call(number, account)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(pick=picks, account=accounts)
    def reject(self, pick: int, account: str) -> None:
        """A caller says the value it got was refused by the source."""
        number = self._pick(pick)
        self._demand(account, self._now())
        if account in self.sim.sidecars[number].last:
            self.rejections[account] += 1
        self.sim.call(number, account, reject=True)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(pick=picks, account=accounts)
    def watch(self, pick: int, account: str) -> None:
        self._demand(account, self._now())
        self.sim.watch(self._pick(pick), account)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(account=accounts)
    def watch_everywhere(self, account: str) -> None:
        """Every sidecar gets a watcher of the account (a sync platform on every pod)."""
        self._demand(account, self._now())
        for number in list(self.sim.sidecars):
            self.sim.watch(number, account)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(pick=picks)
    def unwatch(self, pick: int) -> None:
        streams = self.sim.streams(self._pick(pick))
        if streams:
            streams[pick % len(streams)].cancel()
        self._step()

    # --- Pipedream ---
    @precondition(lambda self: self.fleet is not None)
    @rule(account=accounts)
    def rotate(self, account: str) -> None:
        self.sim.rotate(account)
        self._step()

    @precondition(lambda self: self.fleet is not None)
    @rule(status=st.sampled_from([429, 500]), seconds=st.floats(1, 60))
    def pipedream_fails(self, status: int, seconds: float) -> None:
        pipedream = self.sim.pipedream
        pipedream.status, pipedream.fault_until = status, self._now() + seconds
        self._cost_all(len(self.sim.sidecars) * (1 + math.ceil(seconds / FRESH)))
        self._step()

    @precondition(lambda self: self.fleet is not None)
    @rule(latency=st.floats(0.1, 3.0), seconds=st.floats(1, 60))
    def pipedream_slow(self, latency: float, seconds: float) -> None:
        pipedream = self.sim.pipedream
        pipedream.latency, pipedream.latency_until = latency, self._now() + seconds
        self._step()

    # --- Redis ---
    @precondition(lambda self: self.fleet is not None)
    @rule(stall=st.floats(0.01, 2.0), seconds=st.floats(0.5, 30))
    def redis_stalls(self, stall: float, seconds: float) -> None:
        redis = self.sim.redis
        redis.stall = stall
        self.sim.loop.call_later(seconds, lambda: setattr(redis, "stall", 0.0))
        self._troubled(seconds)
        self._step()

    @precondition(lambda self: self.fleet is not None)
    @rule(seconds=st.floats(0.5, 30))
    def redis_fails(self, seconds: float) -> None:
        redis = self.sim.redis
        redis.failure = RedisConnectionError("simulated outage")
        self.sim.loop.call_later(seconds, lambda: setattr(redis, "failure", None))
        self._troubled(seconds)
        self._step()

    @precondition(lambda self: self.fleet is not None)
    @rule(empty=st.booleans())
    def redis_restarts(self, empty: bool) -> None:
        if empty:
            self.sim.redis.flush()
        else:
            self.sim.redis.cut_subscriptions()
        self._troubled(0)
        self._step()

    @precondition(lambda self: self.fleet is not None)
    @rule(seconds=st.floats(0.5, 60))
    def events_dropped(self, seconds: float) -> None:
        redis = self.sim.redis
        redis.drop_events = True
        self.sim.loop.call_later(seconds, lambda: setattr(redis, "drop_events", False))
        self._troubled(seconds)
        self._step()

    # --- someone with write access to Redis but no key ---
    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(
        account=accounts,
        older=st.integers(1, 4),
        hint=st.sampled_from([None, "i", "w"]),
        version=st.integers(0, 2**63),
    )
    def old_value_written_back(
        self, account: str, older: int, hint: str | None, version: int
    ) -> None:
        """A rollback: an older sealed value of the account written back (it opens: same
        key, same name), maybe with an event to make the fleet look."""
        name = self._name(account)
        history = self.sim.redis.history(name)
        if len(history) > older:
            self.sim.redis.replay(name, -1 - older, px=600_000)
            if hint is not None:
                self._inject(account, hint, version)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(account=accounts, blob=st.binary(max_size=64))
    def forged_value(self, account: str, blob: bytes) -> None:
        self.sim.redis.forge(self._name(account), blob, px=600_000)
        self.extra[account] += len(self.sim.sidecars)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(
        account=accounts,
        kind=st.sampled_from(["i", "w"]),
        version=st.integers(0, 2**63),
        count=st.integers(1, 200),
        every=st.sampled_from([0.0, 0.05, 0.5]),
    )
    def forged_events(
        self, account: str, kind: str, version: int, count: int, every: float
    ) -> None:
        """Events anyone may publish (old kinds, any version): a burst, or a stream."""
        channel, text = self._event(account, kind, version)
        for index in range(count):
            self.sim.loop.call_later(index * every, self.sim.redis.inject, channel, text)
        self._step()

    def _inject(self, account: str, kind: str, version: int) -> None:
        self.sim.redis.inject(*self._event(account, kind, version))

    def _event(self, account: str, kind: str, version: int) -> tuple[str, str]:
        """(channel, message) of a forged event about ``account``."""
        tag = self._name(account).decode().split("{")[1].split("}")[0]
        return self._store().events.channel, f"{kind}:{tag}:{version}"

    # --- sidecars ---
    @precondition(lambda self: self.fleet is not None and len(self.fleet.sidecars) < MAX_SIDECARS)
    @rule()
    def join(self) -> None:
        self.sim.join()
        self._cost_all(1)
        self._step()

    @precondition(lambda self: self.fleet is not None and len(self.fleet.sidecars) > 1)
    @rule(pick=picks, graceful=st.booleans(), again=st.booleans())
    def leave(self, pick: int, graceful: bool, again: bool) -> None:
        """A sidecar stops, or crashes (its locks stay until their TTL); maybe a new one starts."""
        number = self._pick(pick)
        if graceful:
            self.sim.stop(number)
        else:
            self.sim.crash(number)
            self._cost_all(len(self.sim.sidecars) + 1)
        if again:
            self.sim.join()
            self._cost_all(1)
        self._step()

    @precondition(lambda self: self.fleet is not None and self.fleet.sidecars)
    @rule(pick=picks, change=st.sampled_from(["nothing", "store", "connection"]))
    def reload(self, pick: int, change: str) -> None:
        number = self._pick(pick)
        config: dict[str, dict[str, Any]] = {
            "nothing": {},
            "store": {"timeout": 0.3},
            "connection": {"scope": "sim"},
        }
        current = self.sim.sidecars[number].config
        self.sim.reload(number, **({} if current == config[change] else config[change]))
        self._cost_all(1)
        self._step()

    # --- time ---
    @precondition(lambda self: self.fleet is not None)
    @rule(seconds=st.floats(0.1, 90))
    def time_passes(self, seconds: float) -> None:
        self._step(seconds)

    @precondition(lambda self: self.fleet is not None)
    @rule(minutes=st.integers(1, 5))
    def idle(self, minutes: int) -> None:
        """No calls for a while: accounts nobody watches cost no request at all."""
        self._step(30.0)  # what was started settles
        watched = self.sim.watched()
        before = dict(self.sim.pipedream.requests)
        self._step(minutes * 60.0)
        watched |= self.sim.watched()
        for account in sorted(set(ACCOUNTS) - watched):
            made = self.sim.pipedream.requests[account] - before.get(account, 0)
            assert made == 0, f"{made} Pipedream requests for {account} while idle, unwatched"

    # --- invariants ---
    @invariant()
    def reads_within_budget(self) -> None:
        if self.fleet is None:
            return
        for account in ACCOUNTS:
            budget = (
                len(self.windows[account])
                + 1
                + self.sim.current(account)  # rotations
                + self.rejections[account]
                + self.extra[account]
            )
            reads = self.sim.pipedream.reads[account]
            assert reads <= budget, (
                f"{reads} Pipedream reads of {account}, budget {budget}: "
                f"{len(self.windows[account])} fresh intervals in demand, "
                f"{self.sim.current(account)} rotations, {self.rejections[account]} rejections, "
                f"{self.extra[account]} for faults"
            )

    @invariant()
    def no_version_goes_back(self) -> None:
        if self.fleet is not None:
            assert not self.sim.problems, "; ".join(self.sim.problems[:5])

    @invariant()
    def no_replaced_value_after_the_replacement_was_seen(self) -> None:
        if self.fleet is None:
            return
        seen: dict[str, tuple[int, float]] = {}
        for served in self.sim.served:
            newest = seen.get(served.account)
            if newest is None or served.version > newest[0]:
                seen[served.account] = (served.version, served.finished)
                continue
            version, at = newest
            if (
                served.kind == "call"
                and served.version < version
                and served.started > at + GRACE
                and served.finished > self.checked_until - 1e-9
                and not self._in_trouble(at - GRACE, served.finished)
            ):
                raise AssertionError(
                    f"sidecar {served.sidecar} served {served.account} version {served.version} "
                    f"at t={served.finished:.3f}, {served.started - at:.3f} s after version "
                    f"{version} was served"
                )
        self.checked_until = self._now()

    @invariant()
    def streams_outlive_upstream_trouble(self) -> None:
        if self.fleet is None:
            return
        ended = [e for e in self.sim.stream_ends if e[2] in UPSTREAM_TROUBLE]
        assert not ended, f"watch streams ended on upstream trouble: {ended[:3]}"

    def _in_trouble(self, start: float, end: float) -> bool:
        return any(a < end and start < b for a, b in self.trouble)

    def _store(self) -> FleetStore:
        sidecar = next(iter(self.sim.sidecars.values())).sidecar
        assert sidecar.fleet is not None
        return sidecar.fleet.store

    def _name(self, account: str) -> bytes:
        parts = ("account", URL, DEMO_CLIENT_ID, DEMO_PROJECT_ID, "production", account)
        return self._store().slot(*parts).name("v")
