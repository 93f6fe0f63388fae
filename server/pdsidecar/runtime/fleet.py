"""The fleet tier in one sidecar process: wiring, reload and metrics.

A :class:`Fleet` exists only with a ``[fleet]`` table. It owns the
:class:`~pdsidecar.fleet.store.FleetStore` (the Redis clients, the probe, the
event subscription) and the two decorators: :class:`~pdsidecar.fleet.tokens.FleetTokens`
around the plain token source, :class:`~pdsidecar.fleet.accounts.FleetAccounts`
around the plain account source. The cache and the token providers read through
:class:`Sources` holders built with them; starting, reloading or dropping a fleet
swaps what the holders hold. Nothing is assigned onto the cache, the broker or a
provider. Without the table nothing here runs and the sidecar behaves as one
process alone.

Readiness does not depend on Redis: a sidecar whose Redis is down serves on its
own token and cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pdsidecar.clock import Clock
from pdsidecar.credentials.budget import FleetBudgeted
from pdsidecar.credentials.cache import AccountCache
from pdsidecar.credentials.source import AccountSource, PipedreamAccounts, SourceHolder
from pdsidecar.fleet.accounts import FleetAccounts
from pdsidecar.fleet.commands import Commands, Subscriber
from pdsidecar.fleet.reads import FleetReads
from pdsidecar.fleet.store import FleetStore
from pdsidecar.fleet.tokens import FleetTokens
from pdsidecar.pipedream.tokens import PipedreamTokens, TokenSource, TokenSourceHolder
from pdsidecar.settings import FleetConfig, Settings

log = logging.getLogger(__name__)

# Opens the Redis clients for a config (tests give in-memory ones); None: redis-py's.
Connect = Callable[[FleetConfig], tuple[Commands, Subscriber]]


@dataclass
class Sources:
    """What the cache and the token providers read through; a fleet is swapped in here."""

    plain_accounts: AccountSource
    plain_tokens: TokenSource = field(default_factory=PipedreamTokens)
    accounts: SourceHolder = field(init=False)
    tokens: TokenSourceHolder = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = SourceHolder(self.plain_accounts)
        self.tokens = TokenSourceHolder(self.plain_tokens)

    @classmethod
    def plain(cls, settings: Settings, clock: Clock) -> Sources:
        return cls(PipedreamAccounts(settings.policy, clock))

    def use(self, fleet: Fleet | None) -> None:
        self.accounts.swap(fleet.accounts if fleet is not None else self.plain_accounts)
        self.tokens.swap(fleet.tokens if fleet is not None else self.plain_tokens)


class Fleet:
    def __init__(
        self,
        config: FleetConfig,
        settings: Settings,
        clock: Clock,
        cache: AccountCache,
        sources: Sources,
        store: FleetStore | None = None,
    ) -> None:
        self.config = config
        self.store = store if store is not None else FleetStore(config, clock)
        url = settings.pipedream_url
        self.tokens = FleetTokens(self.store, sources.plain_tokens, url, clock)
        # Every Pipedream read is counted fleet-wide first (credentials/budget.py).
        policy = settings.policy
        self.reads = FleetReads(self.store, clock, policy.upstream_read_window)
        budgeted = FleetBudgeted(sources.plain_accounts, policy, self.reads, socket.gethostname())
        self.accounts = FleetAccounts(self.store, budgeted, cache, policy, clock, url)

    @classmethod
    def create(
        cls,
        settings: Settings,
        clock: Clock,
        cache: AccountCache,
        sources: Sources,
        connect: Connect | None = None,
    ) -> Fleet | None:
        config = settings.fleet
        if config is None:
            return None
        store = None
        if connect is not None:
            client, subscriber = connect(config)
            store = FleetStore(config, clock, client=client, subscriber=subscriber)
        return cls(config, settings, clock, cache, sources, store)

    async def check(self) -> None:
        """At start: a Redis that refuses this sidecar's password or ACL is a ConfigError."""
        await self.store.check()

    def start(self) -> None:
        self.store.start()
        self.accounts.start()
        log.info(
            "shared cache: %s, namespace %s, %d key(s)",
            _where(self.config.url),
            self.config.namespace,
            len(self.config.keys),
        )

    async def aclose(self) -> None:
        await self.accounts.aclose()
        await self.store.aclose()


def refit(
    old: Fleet | None,
    settings: Settings,
    clock: Clock,
    cache: AccountCache,
    sources: Sources,
    connect: Connect | None = None,
) -> Fleet | None:
    """After a reload: the fleet for ``settings``, swapped in; the old one closes by itself.

    An unchanged ``[fleet]`` keeps the old fleet; a changed one (new keys, another
    Redis) replaces it; none turns sharing off.
    """
    if old is not None and old.config == settings.fleet:
        return old
    fleet = Fleet.create(settings, clock, cache, sources, connect)
    if fleet is not None:
        fleet.start()
    sources.use(fleet)
    if old is not None:
        # Calls in flight on the old store finish (or fall back) before it closes.
        task = asyncio.get_running_loop().create_task(_close_later(old))
        _retired[task] = old
        task.add_done_callback(lambda done: _retired.pop(done, None))
    return fleet


_retired: dict[asyncio.Task[None], Fleet] = {}


async def _close_later(fleet: Fleet) -> None:
    await asyncio.sleep(2 * fleet.config.lock_ttl)
    await fleet.aclose()


async def close_retired() -> None:
    """Close, now, the fleets that reloads replaced and that still wait to close (shutdown)."""
    retired = list(_retired.items())
    _retired.clear()
    for task, fleet in retired:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fleet.aclose()


def _where(url: str) -> str:
    # The URL holds no credentials (the config refuses them); show scheme and place.
    return url.split("?", 1)[0]


class FleetCollector(Collector):
    """The shared tier's counters, read at scrape time (no metric when there is no tier)."""

    def __init__(self, fleet: Callable[[], Fleet | None]) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        fleet = self._fleet()
        if fleet is None:
            return
        stats = fleet.store.stats
        yield GaugeMetricFamily(
            "pdsidecar_shared_cache_up",
            "1 while Redis answers; 0 while each sidecar goes on alone.",
            value=1 if stats.up else 0,
        )
        for name, value, doc in (
            ("reads", stats.reads, "Values looked up in Redis."),
            ("hits", stats.hits, "Lookups that found a value that opened."),
            ("misses", stats.misses, "Lookups that found nothing usable."),
            ("writes", stats.writes, "Values stored in Redis."),
            ("unreadable", stats.unreadable, "Values that did not decrypt (not served)."),
            ("errors", stats.errors, "Redis commands that failed or timed out."),
            ("skipped", stats.skipped, "Redis commands not sent while Redis was down."),
            ("outages", stats.outages, "Times Redis went from answering to failing."),
            ("events", fleet.store.events.received, "Fleet events received."),
        ):
            yield CounterMetricFamily(f"pdsidecar_shared_cache_{name}", doc, value=value)
        accounts = fleet.accounts.stats
        for name, value, doc in (
            ("shared_hits", accounts.shared_hits, "Local misses answered from Redis."),
            ("fetched", accounts.fetched, "Pipedream reads made for the fleet."),
            ("waited", accounts.waited, "Local misses that waited for another sidecar."),
            ("refetches", accounts.refetches, "Rejected-token refetches for the fleet."),
            ("rate_limited", accounts.rate_limited, "Misses answered from a recorded 429."),
            ("fallbacks", accounts.fallbacks, "Reads made alone: Redis down or wait over."),
            ("looks", accounts.looks, "Redis reads made because an event named news."),
            ("taken", accounts.taken, "Newer entries taken from Redis on fleet events."),
            ("ignored", accounts.ignored, "Entries refused: older than one held."),
        ):
            yield CounterMetricFamily(f"pdsidecar_shared_accounts_{name}", doc, value=value)
        reads = fleet.reads.stats
        for name, value, doc in (
            ("counted", reads.counted, "Pipedream reads counted in the fleet's shares."),
            ("refused", reads.refused, "Pipedream reads a fleet-wide share refused."),
            ("unasked", reads.unasked, "Pipedream reads made without the fleet: Redis down."),
        ):
            yield CounterMetricFamily(f"pdsidecar_shared_reads_{name}", doc, value=value)
        fetched = CounterMetricFamily(
            "pdsidecar_shared_tokens",
            "Pipedream tokens by connection: fetched by this sidecar or adopted from the fleet.",
            labels=("connection", "source"),
        )
        for name, source in sorted(fleet.tokens.connections.items()):
            fetched.add_metric((name, "fetched"), source.fetched)
            fetched.add_metric((name, "adopted"), source.adopted)
        yield fetched
