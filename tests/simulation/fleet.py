"""A fleet of sidecars in one virtual-time event loop, and what it did.

Each :class:`SimSidecar` is a production :class:`~pdsidecar.runtime.sidecar.Sidecar`,
built by its own constructor (cache, broker, watch hub, fleet tier, reload) with three
things injected: the Pipedream transport (:mod:`tests.simulation.pipedream`), its Redis
connection to the shared :class:`~tests.support.fakestore.FakeSharedStore`, and a
seeded ``random.Random``. Its gRPC servers are never started: callers and watchers
use the broker (``GetCredentials``) and the watch hub (``WatchCredentials``) directly,
the layer under the servicer, so no socket is opened. :class:`SimFleet` keeps the
record the invariants read (:mod:`tests.simulation.invariants`).
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    demo_state,
)

from pdsidecar.credentials.broker import AccountQuery
from pdsidecar.errors import SidecarError
from pdsidecar.fleet.commands import Commands, Subscriber
from pdsidecar.pipedream.models import Account
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import (
    ConnectionConfig,
    FleetConfig,
    ListenAddress,
    Policy,
    Settings,
)
from tests.simulation.clock import SimClock, VirtualTimeLoop
from tests.simulation.pipedream import SimPipedream
from tests.support.fakestore import FakeConnection, FakeSharedStore

# account id -> the source callers ask for
ACCOUNTS: Final = {
    DEMO_NOTION_ACCOUNT_ID: "notion",
    DEMO_GDRIVE_ACCOUNT_ID: "google_drive",
    DEMO_CODA_ACCOUNT_ID: "coda",
}
# The cache keeps an account fresh this long (short, so schedules cross many intervals).
FRESH: Final = 60.0
# Two Pipedream requests at a time, queued at most 1 s: latency faults can refuse fetches
# (OVERLOADED) with only three accounts.
POLICY: Final = Policy(
    credentials_max_age=FRESH,
    upstream_concurrency=2,
    fetch_queue_wait=1.0,
    watch_jitter=5.0,
    backoff_initial=0.1,
    backoff_max=1.0,
    default_retry_after=5.0,
)
URL: Final = "http://pipedream.sim"
KEY: Final = Secret(base64.b64encode(bytes(range(32))).decode())
# A step that does not end within this many virtual seconds is stuck.
HANG: Final = 3600.0
# Reasons that are upstream trouble: a watch stream must outlive them.
UPSTREAM_TROUBLE: Final = frozenset(
    {"RATE_LIMITED", "UPSTREAM_UNAVAILABLE", "OVERLOADED", "DEADLINE_EXCEEDED"}
)


def settings(timeout: float = 0.25, scope: str = "*") -> Settings:
    connection = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), scope)
    fleet = FleetConfig(url="redis://sim", keys=(KEY,), namespace="sim", timeout=timeout)
    return Settings(
        pipedream_url=URL, connections={"default": connection}, policy=POLICY, fleet=fleet
    )


def query(account_id: str) -> AccountQuery:
    source = ACCOUNTS[account_id]
    fields = ("api_key",) if source == "coda" else ("access_token",)
    return AccountQuery("default", DEMO_PROJECT_ID, account_id, "production", None, source, fields)


def access_value(account: Any) -> str:
    """The credential a caller uses (what Pipedream rotates), in the emulator's or the
    sidecar's account."""
    held = account.credentials or {}
    name = "oauth_access_token" if "oauth_access_token" in held else next(iter(held))
    value = held[name]
    return value.reveal() if isinstance(value, Secret) else str(value)


class Stuck(AssertionError):
    """Something the simulation waited for never ended (a deadlock in virtual time)."""


@dataclass
class Served:
    """One value a caller got: from a call or pushed to a stream."""

    sidecar: int
    account: str
    kind: str  # "call" or "push"
    version: int
    started: float
    finished: float
    rejected: int | None = None  # the version the caller said was refused


@dataclass
class SimSidecar:
    number: int
    sidecar: Sidecar
    connection: FakeConnection
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    held: dict[str, int] = field(default_factory=dict)  # account -> newest version served
    last: dict[str, str] = field(default_factory=dict)  # account -> last value a caller got
    config: dict[str, Any] = field(default_factory=dict)  # what its next reload reads


class SimFleet:
    def __init__(self, seed: int) -> None:
        self.loop = VirtualTimeLoop()
        self.clock = SimClock(self.loop)
        self.rng = random.Random(seed)
        state = demo_state(clock=self.clock.wall, seed=seed)
        state.read_budget = None
        self.pipedream = SimPipedream(state, self.loop)
        self.redis = FakeSharedStore(now=self.clock.monotonic)
        self.sidecars: dict[int, SimSidecar] = {}
        self._numbers = 0
        # account -> every access value it had, oldest first (a value's index: its version)
        self.history: dict[str, list[str]] = {a: [access_value(self._account(a))] for a in ACCOUNTS}
        self.served: list[Served] = []
        self.stream_ends: list[tuple[int, str, str]] = []  # sidecar, account, reason
        self.call_errors: defaultdict[str, int] = defaultdict(int)
        self.problems: list[str] = []  # what the fleet did that no caller could see

    def _account(self, account_id: str) -> Any:
        found = self.pipedream.state.get_account(DEMO_PROJECT_ID, account_id)
        assert found is not None
        return found

    def current(self, account_id: str) -> int:
        return len(self.history[account_id]) - 1

    def version_of(self, account_id: str, value: str) -> int:
        try:
            return self.history[account_id].index(value)
        except ValueError:
            self.problems.append(f"{account_id}: a value Pipedream never held was served")
            return -1

    # --- running the loop ---
    def run(self, coroutine: Coroutine[Any, Any, Any], limit: float = HANG) -> Any:
        """Run ``coroutine`` to its end; one that needs more than ``limit`` virtual
        seconds is stuck (other sidecars' timers would keep time moving forever)."""

        async def bounded() -> Any:
            try:
                async with asyncio.timeout(limit):
                    return await coroutine
            except TimeoutError:
                stuck = [t.get_coro() for t in asyncio.all_tasks() if not t.done()]
                raise Stuck(
                    f"still running after {limit} virtual seconds; tasks: {stuck[:8]}"
                ) from None

        return self.loop.run_until_complete(bounded())

    def advance(self, seconds: float) -> None:
        """Let the fleet live ``seconds`` of virtual time; Pipedream refreshes OAuth
        tokens on their schedule (``next_refresh_at``) on the way."""
        end = self.loop.time() + seconds
        while True:
            due = self._next_refresh()
            if due is None or due[0] >= end:
                break
            self.run(asyncio.sleep(max(due[0] - self.loop.time(), 0)))
            self.rotate(due[1])
        self.run(asyncio.sleep(max(end - self.loop.time(), 0)))

    def _next_refresh(self) -> tuple[float, str] | None:
        found = []
        for account_id in ACCOUNTS:
            refresh = self._account(account_id).next_refresh_at
            if refresh is not None:
                found.append((refresh - self.clock.wall() + self.loop.time(), account_id))
        return min(found) if found else None

    def rotate(self, account_id: str) -> None:
        """Pipedream replaces the account's access credential."""
        self.pipedream.state.rotate_access_token(DEMO_PROJECT_ID, account_id)
        self.history[account_id].append(access_value(self._account(account_id)))

    # --- sidecars ---
    def join(self) -> int:
        number = self._numbers
        self._numbers += 1
        connection = self.redis.connect()

        def connect(_: FleetConfig) -> tuple[Commands, Subscriber]:
            return connection, connection

        config: dict[str, Any] = {}
        sidecar = Sidecar(
            settings(),
            [ListenAddress("unix", path=f"/nonexistent/sim-{number}.sock")],
            clock=self.clock,
            loader=lambda: settings(**config),
            pipedream_transport=self.pipedream.transport,
            redis=connect,
            rng=random.Random(self.rng.random()),
        )
        self.sidecars[number] = SimSidecar(number, sidecar, connection, config=config)
        assert sidecar.fleet is not None

        async def start() -> None:
            assert sidecar.fleet is not None
            sidecar.fleet.start()

        self.run(start())
        return number

    def crash(self, number: int) -> None:
        """The process dies: its Redis connection drops first (locks stay until their TTL)."""
        sim = self.sidecars.pop(number)
        sim.connection.sever()
        self._stop(sim)

    def stop(self, number: int) -> None:
        self._stop(self.sidecars.pop(number))

    def _stop(self, sim: SimSidecar) -> None:
        for task in sim.tasks:
            task.cancel()

        async def stop() -> None:
            await asyncio.gather(*sim.tasks, return_exceptions=True)
            await sim.sidecar.stop(grace=0)

        self.run(stop(), limit=120.0)

    def reload(self, number: int, **config: Any) -> None:
        sim = self.sidecars[number]
        sim.config.clear()
        sim.config.update(config)
        assert self.run(sim.sidecar.reload())

    def close(self) -> None:
        for number in list(self.sidecars):
            self.stop(number)
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:

            async def settle() -> None:
                await asyncio.gather(*pending, return_exceptions=True)

            self.run(settle())
        self.loop.close()

    # --- callers ---
    def call(self, number: int, account_id: str, *, reject: bool = False) -> None:
        sim = self.sidecars[number]
        rejected = sim.last.get(account_id) if reject else None
        started = self.loop.time()

        async def call() -> None:
            try:
                result = await sim.sidecar.service.get_credentials(
                    query(account_id),
                    rejected_access_token=rejected,
                    deadline=self.loop.time() + 10.0,
                )
            except SidecarError as error:
                self.call_errors[error.reason] += 1
                return
            self._served(sim, account_id, "call", result.account, started, rejected)

        self._spawn(sim, call(), "call")

    def watch(self, number: int, account_id: str) -> None:
        sim = self.sidecars[number]
        hub = sim.sidecar.watchers

        async def stream() -> None:
            started = self.loop.time()
            try:
                watcher = await hub.watch(query(account_id), deadline=self.loop.time() + 10.0)
            except SidecarError as error:
                self.call_errors[error.reason] += 1
                return
            try:
                while True:
                    await watcher.next()
                    result = watcher.group.result
                    assert result is not None
                    self._served(sim, account_id, "push", result.account, started, None)
                    started = self.loop.time()
            except SidecarError as error:
                self.stream_ends.append((sim.number, account_id, error.reason))
            finally:
                hub.leave(watcher)

        self._spawn(sim, stream(), f"watch:{account_id}")

    def watched(self) -> set[str]:
        """Accounts some open stream watches."""
        return {
            t.get_name().split(":", 1)[1]
            for sim in self.sidecars.values()
            for t in sim.tasks
            if t.get_name().startswith("watch:")
        }

    def streams(self, number: int) -> list[asyncio.Task[Any]]:
        return [t for t in self.sidecars[number].tasks if t.get_name().startswith("watch:")]

    def _spawn(self, sim: SimSidecar, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = self.loop.create_task(coroutine, name=name)
        sim.tasks.add(task)
        task.add_done_callback(sim.tasks.discard)

    def _served(
        self,
        sim: SimSidecar,
        account_id: str,
        kind: str,
        account: Account,
        started: float,
        rejected: str | None,
    ) -> None:
        value = access_value(account)
        version = self.version_of(account_id, value)
        sim.last[account_id] = value
        self.served.append(
            Served(
                sim.number,
                account_id,
                kind,
                version,
                started,
                self.loop.time(),
                None if rejected is None else self.version_of(account_id, rejected),
            )
        )
        held = sim.held.get(account_id, -1)
        if version < held:
            self.problems.append(
                f"sidecar {sim.number} served {account_id} version {version} after holding {held}"
            )
        sim.held[account_id] = max(held, version)
