"""The fleet tier's Redis side: sealed values, locks with owners, fleet-wide events.

:class:`FleetStore` is all the sidecar says to Redis. The decorators above it
(:mod:`pdsidecar.fleet.tokens`, :mod:`pdsidecar.fleet.accounts`)
decide what to share; this module decides how, and judges Redis on Redis:

- Every command runs within ``timeout`` of *Redis time*: time the event loop
  was free to read the reply, from when the command has one of the sidecar's
  ``MAX_CONNECTIONS`` (the wait for one, behind a burst of the sidecar's own
  commands, is bounded by ``HARD_CAP`` but not judged). The timer advances in
  steps; a step that fires late (the loop was busy: CPU contention, a
  CFS-throttled pod, a burst of calls) does not count, so a reply already
  waiting in the socket is read before the command is judged slow. ``HARD_CAP``
  bounds the wait in wall time.
- A slow reply is not an outage: it raises :class:`FleetSlow` (a waiter keeps
  waiting for the lock holder's event). ``TIMEOUTS_DOWN`` slow replies in a row
  with no reply at all for ``SILENT_DOWN`` seconds (a burst queued behind the
  sidecar's own connection pool is slow, not down), or any other failure
  (refused, reset, out of memory, an ACL refusal), mark Redis down:
  :class:`FleetUnavailable`, which the decorators answer by doing what one
  process does alone. While down the store sends nothing but a probe;
  the probe (a PING every ``RETRY_AFTER`` seconds, with or without traffic) marks
  Redis up again, so ``pdsidecar_shared_cache_up`` follows Redis by itself.
  Each change of state (down, back) is logged once and counted.
- At start, :meth:`FleetStore.check` turns an authentication or ACL refusal
  (WRONGPASS, NOPERM) into a :class:`ConfigError`: a wrong password is a
  configuration error (exit 2), not an outage.
- A value that does not open (tampered, moved under another key, another key
  set) is a miss: counted, logged without its content, never returned.
- Locks are ``SET NX PX`` with a random owner value; renewal and release are
  compare-and-set Lua scripts, so a holder whose lock expired never releases the
  next holder's lock. A lock found without a TTL (set by hand or by a squatter)
  gets ``lock_ttl``: it cannot outlive that.
- Events (a value was written, with its version) go to one channel
  (:mod:`pdsidecar.fleet.events`). They are hints about Redis, never about Pipedream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pdsidecar.background import Background
from pdsidecar.clock import Clock
from pdsidecar.fleet.commands import Commands, Subscriber
from pdsidecar.fleet.events import Events, Expected, message
from pdsidecar.fleet.sealing import Keyring, Unreadable
from pdsidecar.settings import ConfigError, FleetConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

# While Redis is down, the probe tries it this often (and while up, checks it as often).
RETRY_AFTER: Final = 1.0
# Slow replies in a row that mark Redis down (one slow answer under load is not an outage);
# any other failure (refused, reset, OOM, ACL) marks it down at once.
TIMEOUTS_DOWN: Final = 3
# ... and only when no command got a reply for this long: Redis answering others is not down.
SILENT_DOWN: Final = 1.0
# The timeout's step, and how late a step may fire and still count as Redis time.
_STEP: Final = 0.025
_LATE: Final = 0.01
# However busy the loop, a command is given up after this long in wall time.
HARD_CAP: Final = 2.0
# Connections per sidecar (per node in a cluster); callers beyond wait within the timeout.
MAX_CONNECTIONS: Final = 32

_DELETE_IF: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Take the lock and read the value in one round trip (same hash tag: same slot in a cluster).
# A lock without a TTL (however it got there) gets one (PEXPIRE NX: Redis 7 / Valkey; an
# older Redis refuses the NX, and the waiter's bounded wait is what is left).
_LOCK_GET: Final = """
local taken = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if not taken then redis.pcall('pexpire', KEYS[1], ARGV[2], 'NX') end
return {taken and 1 or 0, redis.call('get', KEYS[2])}
"""
# Store the value, tell the fleet, release the lock if still ours: one round trip.
_STORE_RELEASE: Final = """
if ARGV[1] ~= '' then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
redis.call('publish', ARGV[3], ARGV[4])
if redis.call('get', KEYS[2]) == ARGV[5] then redis.call('del', KEYS[2]) end
return 1
"""
# Count one Pipedream read in the fleet's windows unless a share refuses it (fleet/reads.py).
# KEYS: counters of PER keys each (their window's buckets, the current one last): the
# fleet's total, then the listener's and the caller's (or the total alone: count only).
# ARGV: PER, budget, high water, caller limit, listener limit, bucket TTL (ms). Only GET and
# SET: the ACL in docs/fleet.md allows nothing more.
_TAKE_READ: Final = """
local per = tonumber(ARGV[1])
local n = #KEYS / per
local counts = {0, 0, 0}
for i = 0, n - 1 do
  local sum = 0
  for j = 1, per do
    local held = redis.call('get', KEYS[i * per + j])
    if held then sum = sum + tonumber(held) end
  end
  counts[i + 1] = sum
end
local total, listener, caller = counts[1], counts[2], counts[3]
local budget, high = tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = 0
if n == 3 then
  if caller + 1 > tonumber(ARGV[4]) then refused = 1
  elseif listener + 1 > tonumber(ARGV[5]) then refused = 2
  elseif total + 1 > budget then refused = 3
  elseif total + 1 > high and caller >= budget - total then refused = 4 end
end
if refused == 0 then
  for i = 0, n - 1 do
    local key = KEYS[i * per + per]
    local held = tonumber(redis.call('get', key) or '0')
    redis.call('set', key, held + 1, 'PX', ARGV[6])
  end
end
return {refused, total, listener, caller}
"""
_RENEW_IF: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class FleetUnavailable(Exception):
    """Redis is down or refused; go on without it (already logged, counted)."""


class FleetSlow(FleetUnavailable):
    """One reply did not come in time; Redis is not (yet) marked down."""


@dataclass(frozen=True)
class Slot:
    """One account's or token's place in Redis: a hash tag per key of the keyring."""

    namespace: str
    tags: tuple[str, ...]

    @property
    def tag(self) -> str:
        return self.tags[0]

    def name(self, suffix: str, index: int = 0) -> bytes:
        return f"{self.namespace}:{{{self.tags[index]}}}:{suffix}".encode()


@dataclass(frozen=True)
class Read:
    """A value read and opened: its plaintext, and the stored bytes under ``name``."""

    data: bytes
    blob: bytes
    name: bytes


@dataclass
class Lease:
    """A held lock; ``released`` once a store-and-release let it go."""

    slot: Slot
    owner: str
    released: bool = False


@dataclass
class FleetStats:
    reads: int = 0
    hits: int = 0
    misses: int = 0
    writes: int = 0
    unreadable: int = 0  # values that did not open: tampered, moved, unknown key
    errors: int = 0  # Redis commands that failed or timed out
    skipped: int = 0  # commands not sent while Redis was marked down
    outages: int = 0  # changes of state to "down"
    up: bool = True


class FleetStore:
    def __init__(
        self,
        config: FleetConfig,
        clock: Clock,
        *,
        client: Commands | None = None,
        subscriber: Subscriber | None = None,
    ) -> None:
        self.config = config
        self.keyring = Keyring(config.keys)
        self._clock = clock
        self._redis: Commands = client if client is not None else _client(config)
        self.events = Events(
            subscriber if subscriber is not None else _pubsub_client(config),
            f"{config.namespace}:events",
        )
        self._down_until = float("-inf")
        self._timeouts = 0
        self._last_reply = clock.monotonic()
        # One per pooled connection: a command's timeout starts once it has one.
        self._connections = asyncio.Semaphore(MAX_CONNECTIONS)
        # The probe and the event subscription, cancelled at close.
        self._background = Background("fleet store")
        self.stats = FleetStats()

    def slot(self, *parts: str) -> Slot:
        return Slot(self.config.namespace, self.keyring.tags(*parts))

    @property
    def available(self) -> bool:
        return self._clock.monotonic() >= self._down_until

    # --- values -------------------------------------------------------------------------
    async def get(self, slot: Slot, suffix: str) -> Read | None:
        """The opened value, looked up under each key's name; None if absent or unreadable."""
        self.stats.reads += 1
        for index in range(len(slot.tags)):
            name = slot.name(suffix, index)
            blob = await self._run(lambda name=name: self._redis.get(name))  # type: ignore[misc]
            read = self._open(name, blob)
            if read is not None:
                self.stats.hits += 1
                return read
        self.stats.misses += 1
        return None

    def _open(self, name: bytes, blob: Any) -> Read | None:
        if blob is None:
            return None
        try:
            data = self.keyring.open(name, bytes(blob))
        except Unreadable:
            self.stats.unreadable += 1
            log.warning(
                "shared cache: a value under %s does not decrypt (tampered, moved, or "
                "sealed with a key this sidecar lacks); treated as a miss",
                name.decode(),
            )
            return None
        return Read(data, bytes(blob), name)

    async def put(self, slot: Slot, suffix: str, data: bytes, ttl: float) -> Read:
        """Seal and store ``data`` under the writing key's name for ``ttl`` seconds."""
        name = slot.name(suffix)
        blob = self.keyring.seal(name, data)
        millis = max(int(ttl * 1000), 1)
        await self._run(lambda: self._redis.set(name, blob, px=millis))
        self.stats.writes += 1
        return Read(data, blob, name)

    async def delete_if(self, read: Read) -> bool:
        """Delete the value ``read`` came from, only if it still holds those bytes."""
        deleted = await self._run(lambda: self._redis.eval(_DELETE_IF, 1, read.name, read.blob))
        return bool(deleted)

    async def delete(self, slot: Slot, suffix: str) -> None:
        names = [slot.name(suffix, i) for i in range(len(slot.tags))]
        for name in names:
            await self._run(lambda name=name: self._redis.delete(name))  # type: ignore[misc]

    # --- locks --------------------------------------------------------------------------
    async def lock_get(self, slot: Slot, suffix: str) -> tuple[Lease | None, Read | None]:
        """Take the slot's lock if free, and read the value (writing key's name), at once."""
        owner = secrets.token_hex(12)
        millis = int(self.config.lock_ttl * 1000)
        lock, name = slot.name("l"), slot.name(suffix)
        taken, blob = await self._run(
            lambda: self._redis.eval(_LOCK_GET, 2, lock, name, owner, millis)
        )
        self.stats.reads += 1
        read = self._open(name, blob)
        if read is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return (Lease(slot, owner) if taken else None), read

    async def store_release(
        self, lease: Lease, suffix: str, data: bytes | None, ttl: float, version: int
    ) -> None:
        """Store ``data`` (None: nothing) for ``ttl`` s, tell the fleet, release the lock."""
        slot = lease.slot
        name = slot.name(suffix)
        blob = self.keyring.seal(name, data) if data is not None and ttl > 0 else b""
        text = message(slot.tag, version)
        millis = max(int(ttl * 1000), 1)
        lock = slot.name("l")

        def store() -> Awaitable[Any]:
            return self._redis.eval(
                _STORE_RELEASE, 2, name, lock, blob, millis, self.events.channel, text, lease.owner
            )

        try:
            await self._run(store)
        except FleetSlow:
            # A late reply may or may not have been applied; the lock still ours says it
            # was not. Then once more: a lost store costs the fleet a second Pipedream read
            # (the next waiter takes the free lock and finds nothing).
            if not await self.renew(slot, lease.owner):
                raise
            await self._run(store)
        if blob:
            self.stats.writes += 1
        lease.released = True

    async def renew(self, slot: Slot, owner: str, ttl: float | None = None) -> bool:
        millis = int((ttl or self.config.lock_ttl) * 1000)
        name = slot.name("l")
        renewed = await self._run(lambda: self._redis.eval(_RENEW_IF, 1, name, owner, millis))
        return bool(renewed)

    async def unlock(self, slot: Slot, owner: str) -> None:
        """Release the lock if this owner still holds it; Redis trouble is not raised."""
        name = slot.name("l")
        with contextlib.suppress(FleetUnavailable):
            await self._run(lambda: self._redis.eval(_DELETE_IF, 1, name, owner))

    @contextlib.asynccontextmanager
    async def holding(self, lease: Lease) -> Any:
        """Keep the lock alive while the body runs (a fetch may outlast the TTL), then free it."""
        ttl = self.config.lock_ttl
        slot, owner = lease.slot, lease.owner
        over = False

        async def keep() -> None:
            # Also told by a flag: a cancel that lands as a renewal's timeout expires can
            # be taken for that timeout (asyncio.timeout, Python 3.11), and this loop would
            # renew the lock forever while its holder waits for it to end.
            while not over:
                await asyncio.sleep(ttl / 3)
                if over:
                    return
                try:
                    if not await self.renew(slot, owner):
                        if not lease.released:  # expired: another sidecar may read too
                            log.debug("shared cache: lock %s expired while held", slot.tag[:8])
                        return
                except FleetUnavailable as error:
                    log.debug("shared cache: lock %s not renewed (%r)", slot.tag[:8], error)

        task = asyncio.get_running_loop().create_task(keep())
        try:
            yield
        finally:
            over = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not lease.released:
                await self.unlock(slot, owner)

    # --- counted reads -----------------------------------------------------------------
    async def take_read(
        self, counters: list[list[bytes]], limits: tuple[float, float, float, float], ttl: float
    ) -> tuple[int, int, int, int]:
        """Run the read-counting script (see ``_TAKE_READ``) over ``counters`` (each its
        window's bucket names, the current one last); ``limits``: budget, high water,
        caller limit, listener limit. Returns (refused rule or 0, total, listener, caller)."""
        per = len(counters[0])
        keys = [name for counter in counters for name in counter]
        millis = max(int(ttl * 1000), 1)
        reply = await self._run(
            lambda: self._redis.eval(_TAKE_READ, len(keys), *keys, per, *limits, millis)
        )
        refused, total, listener, caller = (int(x) for x in reply)
        return refused, total, listener, caller

    # --- events -------------------------------------------------------------------------
    async def publish(self, slot: Slot, version: int) -> None:
        """Tell the fleet that ``slot`` changed (a hint: receivers look at Redis)."""
        text = message(slot.tag, version)
        with contextlib.suppress(FleetUnavailable):
            await self._run(lambda: self._redis.publish(self.events.channel, text))

    def expect(self, slot: Slot) -> contextlib.AbstractContextManager[Expected]:
        """Events about ``slot`` from now on (see :meth:`Events.expect`)."""
        return self.events.expect(slot.tag)

    @property
    def hearing(self) -> bool:
        """Whether fleet events are heard (the subscription is up)."""
        return self.events.up

    # --- life -----------------------------------------------------------------------------
    async def check(self) -> None:
        """At start: an authentication or ACL refusal is a ConfigError (exit 2); an
        unreachable Redis is only an outage (logged; the probe tries again)."""
        try:
            await self._run(self._redis.ping)
            # The commands the tier needs, on a name in its namespace (NOPERM otherwise).
            probe = self.slot("probe").name("l")
            await self._run(lambda: self._redis.eval(_DELETE_IF, 1, probe, "-"))
        except FleetUnavailable as error:
            refusal = error.__cause__
            if refusal is not None and (
                isinstance(refusal, (AuthenticationError, NoPermissionError)) or _refused(refusal)
            ):
                raise ConfigError(
                    f"[fleet] Redis refused this sidecar: {_describe(refusal)} (check "
                    "username, password_file and the user's ACL)"
                ) from None

    def start(self) -> None:
        if not self._background.running:
            self._background.start_soon(self.events.run)
            self._background.start_soon(self._probing)

    async def subscribed(self, timeout: float) -> bool:
        """Whether the event subscription is up (waits up to ``timeout``; for tests)."""
        return await self.events.subscribed(timeout)

    async def aclose(self) -> None:
        await self._background.aclose()
        await self.events.aclose()
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    async def _probing(self) -> None:
        """A PING every RETRY_AFTER, traffic or not: marks Redis down and up by itself."""
        while True:
            await asyncio.sleep(RETRY_AFTER)
            with contextlib.suppress(FleetUnavailable):
                await self._run(self._redis.ping, probe=True)

    # --- every command goes through here -----------------------------------------------
    async def _run(self, command: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        if not probe and not self.available:
            self.stats.skipped += 1
            raise FleetUnavailable
        try:
            # Time queued behind this sidecar's other commands is its own congestion (a
            # burst of misses), not Redis being slow: it is bounded, but not judged.
            async with asyncio.timeout(HARD_CAP):
                await self._connections.acquire()
            try:
                result = await _within(self.config.timeout, command)
            finally:
                self._connections.release()
        except (RedisError, OSError, TimeoutError) as error:
            self._failed(error)
            if self.stats.up and _slow(error):
                raise FleetSlow from error
            raise FleetUnavailable from error
        self._timeouts = 0
        self._last_reply = self._clock.monotonic()
        self._down_until = float("-inf")
        if not self.stats.up:
            self.stats.up = True
            log.warning("shared cache: Redis answers again; sharing resumes")
        return result

    def _failed(self, error: BaseException) -> None:
        self.stats.errors += 1
        if _slow(error):
            self._timeouts += 1
            silent = self._clock.monotonic() - self._last_reply
            if self._timeouts < TIMEOUTS_DOWN or silent < SILENT_DOWN:
                return
        self._down_until = self._clock.monotonic() + RETRY_AFTER
        if self.stats.up:
            self.stats.up = False
            self.stats.outages += 1
            log.warning(
                "shared cache: Redis failed (%s); each sidecar goes on alone (own token, own "
                "cache) and tries Redis again every %.0f s",
                _describe(error),
                RETRY_AFTER,
            )


async def _within(budget: float, command: Callable[[], Awaitable[T]]) -> T:
    """``command`` within ``budget`` seconds of time the event loop was free.

    The timer advances in steps of ``_STEP``; a step that fires more than ``_LATE``
    after it was due means the loop was busy (the reply may be waiting unread), so it
    does not count. ``HARD_CAP`` bounds the whole wait in loop time.
    """
    loop = asyncio.get_running_loop()
    step = min(budget, _STEP)
    start = loop.time()
    hard = start + max(HARD_CAP, budget)
    counted = 0.0
    handle: asyncio.TimerHandle | None = None
    async with asyncio.timeout(None) as scope:

        def tick(due: float) -> None:
            nonlocal counted, handle
            now = loop.time()
            if now - due <= _LATE:
                counted += step
            if counted >= budget - 1e-9 or now >= hard:
                scope.reschedule(now)
                return
            handle = loop.call_at(now + step, tick, now + step)

        handle = loop.call_at(start + step, tick, start + step)
        try:
            return await command()
        finally:
            handle.cancel()


def _refused(error: BaseException | None) -> bool:
    """An authentication or ACL refusal, as Redis words it."""
    text = str(error or "")
    return isinstance(error, (ResponseError, RedisConnectionError)) and any(
        word in text for word in ("WRONGPASS", "NOPERM", "NOAUTH", "invalid username-password")
    )


def _slow(error: BaseException) -> bool:
    """Too slow rather than broken: a timeout, or no pooled connection free in time."""
    if isinstance(error, (TimeoutError, RedisTimeoutError)):
        return True
    return isinstance(error, RedisConnectionError) and "No connection available" in str(error)


def _describe(error: BaseException) -> str:
    if _slow(error):
        return "timeout"
    # Redis error texts name the command's problem (OOM, NOPERM, connection refused), not
    # the values sent; still, only the first line and never more than that.
    text = str(error).splitlines()[0][:120] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _options(config: FleetConfig) -> dict[str, Any]:
    return {
        "username": config.username,
        "password": config.password.reveal() if config.password is not None else None,
        # The store's own timer judges each command (Redis time only, see _within);
        # the client's timeouts only end what that timer cannot (a connection hung).
        "socket_timeout": max(HARD_CAP, config.timeout),
        "socket_connect_timeout": max(HARD_CAP, config.timeout),
    }


def _client(config: FleetConfig) -> Any:
    if config.cluster:
        return RedisCluster.from_url(
            config.url, max_connections=MAX_CONNECTIONS, **_options(config)
        )
    # A bounded pool: a burst of misses must not open a connection each (Redis has a
    # client limit, and a fleet shares it).
    pool = aioredis.BlockingConnectionPool.from_url(
        config.url,
        max_connections=MAX_CONNECTIONS,
        timeout=max(HARD_CAP, config.timeout),
        **_options(config),
    )
    return aioredis.Redis(connection_pool=pool)


def _pubsub_client(config: FleetConfig) -> Any:
    # A plain connection even in cluster mode: PUBLISH reaches every node of a cluster.
    # No read timeout: the subscription waits for events as long as it takes.
    options = {**_options(config), "socket_timeout": None, "socket_connect_timeout": 2.0}
    return aioredis.Redis.from_url(config.url, **options)
