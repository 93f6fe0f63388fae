"""The shared tier in one sidecar process: wiring, reload and metrics.

A :class:`Fleet` exists only with a ``[shared_cache]`` table. It owns the
:class:`~pdsidecar.shared.store.SharedStore` (the Redis clients and the event
subscription), gives each connection's token provider a
:class:`~pdsidecar.pipedream.shared_tokens.SharedTokens` and the credential broker a
:class:`~pdsidecar.credentials.shared_accounts.SharedAccounts`. Without the table
nothing here runs and the sidecar behaves as one process alone.

Readiness does not depend on Redis: a sidecar whose Redis is down serves on its
own token and cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pdsidecar.clock import Clock
from pdsidecar.credentials.broker import CredentialBroker
from pdsidecar.credentials.shared_accounts import SharedAccounts
from pdsidecar.pipedream.connection import PipedreamConnection
from pdsidecar.pipedream.shared_tokens import SharedTokens
from pdsidecar.settings import Settings, SharedCacheConfig
from pdsidecar.shared.commands import Commands, Subscriber
from pdsidecar.shared.store import SharedStore

log = logging.getLogger(__name__)


# Opens the Redis clients for a config (tests give in-memory ones); None: redis-py's.
Connect = Callable[[SharedCacheConfig], tuple[Commands, Subscriber]]


class Fleet:
    def __init__(
        self,
        config: SharedCacheConfig,
        settings: Settings,
        clock: Clock,
        connect: Connect | None = None,
    ) -> None:
        self.config = config
        client, subscriber = connect(config) if connect is not None else (None, None)
        self.store = SharedStore(config, clock, client=client, subscriber=subscriber)
        self._settings, self._clock = settings, clock
        self.tokens: dict[str, SharedTokens] = {}
        self.accounts: SharedAccounts | None = None

    @classmethod
    def create(
        cls, settings: Settings, clock: Clock, connect: Connect | None = None
    ) -> Fleet | None:
        config = settings.shared_cache
        return None if config is None else cls(config, settings, clock, connect)

    def attach(self, connection: PipedreamConnection) -> None:
        source = SharedTokens(
            self.store, connection.connection, self._settings.pipedream_url, self._clock
        )
        connection.tokens.shared = source
        self.tokens[connection.connection.name] = source

    def attach_broker(self, broker: CredentialBroker) -> None:
        self.accounts = SharedAccounts(
            self.store,
            broker.cache,
            self._settings.policy,
            self._clock,
            self._settings.pipedream_url,
        )
        broker.shared = self.accounts

    def start(self) -> None:
        self.store.start()
        log.info(
            "shared cache: %s, namespace %s, %d key(s)",
            _where(self.config.url),
            self.config.namespace,
            len(self.config.keys),
        )

    async def aclose(self) -> None:
        await self.store.aclose()


def refit(
    old: Fleet | None,
    settings: Settings,
    clock: Clock,
    connections: Mapping[str, PipedreamConnection],
    broker: CredentialBroker,
    connect: Connect | None = None,
) -> Fleet | None:
    """After a reload: the fleet for ``settings``, wired in; the old one closes by itself.

    An unchanged ``[shared_cache]`` keeps the old fleet (new connections get attached);
    a changed one (new keys, another Redis) replaces it; none turns sharing off.
    """
    if old is not None and old.config == settings.shared_cache:
        for name, connection in connections.items():
            if connection.tokens.shared is None or name not in old.tokens:
                old.attach(connection)
        return old
    fleet = Fleet.create(settings, clock, connect)
    if fleet is None:
        for connection in connections.values():
            connection.tokens.shared = None
        broker.shared = None
    else:
        for connection in connections.values():
            fleet.attach(connection)
        fleet.attach_broker(broker)
        fleet.start()
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
        accounts = fleet.accounts.stats if fleet.accounts is not None else None
        if accounts is not None:
            for name, value, doc in (
                ("shared_hits", accounts.shared_hits, "Local misses answered from Redis."),
                ("fetched", accounts.fetched, "Pipedream reads made for the fleet."),
                ("waited", accounts.waited, "Local misses that waited for another sidecar."),
                ("refetches", accounts.refetches, "Rejected-token refetches for the fleet."),
                ("rate_limited", accounts.rate_limited, "Misses answered from a recorded 429."),
                ("fallbacks", accounts.fallbacks, "Reads that went local as Redis failed."),
                ("invalidated", accounts.invalidated, "Local entries dropped on fleet events."),
            ):
                yield CounterMetricFamily(f"pdsidecar_shared_accounts_{name}", doc, value=value)
        fetched = CounterMetricFamily(
            "pdsidecar_shared_tokens",
            "Pipedream tokens by connection: fetched by this sidecar or adopted from the fleet.",
            labels=("connection", "source"),
        )
        for name, source in sorted(fleet.tokens.items()):
            fetched.add_metric((name, "fetched"), source.fetched)
            fetched.add_metric((name, "adopted"), source.adopted)
        yield fetched
