"""Prometheus metrics of WatchCredentials, read from the watch hub's counters at scrape time.

- ``pdsidecar_watchers``: streams open now; ``pdsidecar_watched_accounts``: accounts they watch
- ``pdsidecar_watch_started_total``, ``pdsidecar_watch_refused_total`` (over max_watchers)
- ``pdsidecar_watch_rereads_total``: scheduled re-reads of watched accounts
- ``pdsidecar_watch_messages_total``: values pushed after a stream's first
- ``pdsidecar_streams_stalled_total``: server streams (watches, health, reflection) ended
  because their client took no message in time; ``pdsidecar_streams_cancelled_total``: of
  those, the ones cancelled because it did not take the end either
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class WatchCounters(Protocol):
    watchers: int
    started: int
    refused: int
    rereads: int
    messages: int


class WatchCollector(Collector):
    def __init__(self, read: Callable[[], tuple[WatchCounters, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        stats, accounts = self._read()
        yield GaugeMetricFamily(
            "pdsidecar_watchers", "Open WatchCredentials streams.", stats.watchers
        )
        yield GaugeMetricFamily(
            "pdsidecar_watched_accounts", "Accounts the open streams watch.", accounts
        )
        for name, value, doc in (
            ("started", stats.started, "WatchCredentials streams admitted."),
            ("refused", stats.refused, "Streams refused past max_watchers."),
            ("rereads", stats.rereads, "Scheduled re-reads of watched accounts."),
            ("messages", stats.messages, "Values pushed to streams after their first."),
        ):
            yield CounterMetricFamily(f"pdsidecar_watch_{name}", doc, value)


class StreamCounters(Protocol):
    stalled: int
    cancelled: int


class StreamCollector(Collector):
    def __init__(self, read: Callable[[], StreamCounters]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        yield CounterMetricFamily(
            "pdsidecar_streams_stalled",
            "Server streams ended because their client took no message in time.",
            stats.stalled,
        )
        yield CounterMetricFamily(
            "pdsidecar_streams_cancelled",
            "Stalled streams cancelled because their client did not take the end either.",
            stats.cancelled,
        )
