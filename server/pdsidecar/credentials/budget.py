"""Shares of Pipedream's read budget, per listener and per caller.

Pipedream allows a project ``Policy.upstream_read_budget`` account reads per
``Policy.upstream_read_window`` seconds and answers 429 past them, to every
caller alike. So that one caller cannot spend it for all, each account fetch a
caller starts is counted against that caller (a connection: its listener and
peer, see :mod:`pdsidecar.credentials.admission`) and against its listener:

- A caller may have spent at most ``caller_read_share`` of the budget, a
  listener ``listener_read_share``, over the window; past its share, a new
  fetch is refused with :class:`~pdsidecar.errors.Overloaded` (RetryInfo:
  when its share allows one more), while the others still get theirs.
- Misses that are mostly ACCOUNT_NOT_FOUND (random ids: the per-account
  not-found memory cannot help) slow a caller, or a listener, to one read per
  second once it has ``not_found_allowance`` of them, long before the budget is
  spent.

Counts decay exponentially with the window as time constant: under a steady
rate they equal a sliding window's, and a tally is three numbers. Callers
without a listener (the watchers' scheduled re-reads) are not limited.

The counts above are this process's. With the shared tier (a ``[fleet]``
table), every Pipedream account read is also counted fleet-wide before it is
made (:class:`FleetBudgeted`, a source decorator the runtime puts under the
fleet's; :class:`SharedReads` is what it asks of Redis, implemented in
:mod:`pdsidecar.fleet.reads`), so N sidecars together keep the one project
budget:

- A caller, fleet-wide, is its listener (named alike on every sidecar started
  from one config) and its peer's address without the port; a loopback or Unix
  peer is local to its host, so it is qualified with the host's name. It may
  have spent at most ``caller_read_share`` of the budget across the fleet; a
  listener, fleet-wide, ``listener_read_share``.
- The fleet stops short of the budget: past ``listener_read_share`` of it, a
  caller that has already read more than what is left of the budget is refused
  (the heaviest first), and at the budget every caller is.
- These counts are windows (``upstream_read_window`` in ten buckets, the last
  partly: they count a read a little longer than Pipedream does, never shorter).
  Only reads that reach Pipedream count, never answers from either cache; the
  watchers' re-reads count but are never refused. Redis unreachable or slow:
  nothing is refused for it, and the local shares still apply.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Final, Protocol

from pdsidecar.clock import Clock
from pdsidecar.credentials.source import AccountRead, AccountSource, Fetched
from pdsidecar.errors import Overloaded
from pdsidecar.settings import Policy

# A caller slowed for its not-found misses gets one read per this many seconds.
SLOWED_INTERVAL: Final = 1.0
# Tallies kept before the ones that decayed to nothing are swept.
_SWEEP_AT: Final = 4096
_SEPARATOR: Final = " "


def caller_id(listener: str, peer: str) -> str:
    """The fetch gate's name of a caller: its listener and the connection's peer."""
    return f"{listener}{_SEPARATOR}{peer}"


def listener_of(caller: str) -> str:
    """The listener part of :func:`caller_id` ("" for a caller without one).

    (gRPC peers hold no spaces; listener targets may, hence the last one.)
    """
    listener, separator, _ = caller.rpartition(_SEPARATOR)
    return listener if separator else ""


@dataclass
class _Tally:
    reads: float = 0.0
    not_found: float = 0.0
    at: float = 0.0
    next_read: float = 0.0  # while slowed


class ReadBudget:
    def __init__(self, policy: Policy, clock: Clock) -> None:
        budget = max(1, policy.upstream_read_budget)
        self._window = max(policy.upstream_read_window, 1e-3)
        self._limits = (budget * policy.caller_read_share, budget * policy.listener_read_share)
        self._allowance = policy.not_found_allowance
        self._clock = clock
        self._tallies: dict[str, _Tally] = {}
        self.refused = 0
        self.slowed = 0

    def check(self, caller: str) -> None:
        """Raises Overloaded if ``caller`` (or its listener) may not start a read now."""
        listener = listener_of(caller)
        if not listener:
            return
        now = self._clock.monotonic()
        for name, limit, who in (
            (caller, self._limits[0], "this caller"),
            (listener, self._limits[1], "this listener"),
        ):
            tally = self._tally(name, now)
            if tally.reads + 1 > limit:
                self.refused += 1
                wait = self._window * math.log((tally.reads + 1) / max(limit, 1e-9))
                raise Overloaded(
                    f"{who} has used its share of the Pipedream read budget "
                    f"(policy.{'caller' if who == 'this caller' else 'listener'}_read_share); "
                    f"retry in {wait:.1f} s",
                    retry_after=round(max(wait, 0.001), 3),
                )
            if self._slowed(tally) and now < tally.next_read:
                self.slowed += 1
                wait = tally.next_read - now
                raise Overloaded(
                    f"most of {who}'s recent reads found no account; it is slowed to one "
                    f"read a second (policy.not_found_allowance); retry in {wait:.1f} s",
                    retry_after=round(wait, 3),
                )

    def spend(self, caller: str) -> None:
        """One read started for ``caller`` (after :meth:`check` let it)."""
        self._count(caller, not_found=False)

    def not_found(self, caller: str) -> None:
        """A read by ``caller`` found no account."""
        self._count(caller, not_found=True)

    def _count(self, caller: str, *, not_found: bool) -> None:
        listener = listener_of(caller)
        if not listener:
            return
        now = self._clock.monotonic()
        for name in (caller, listener):
            tally = self._tally(name, now)
            if not_found:
                tally.not_found += 1
            else:
                tally.reads += 1
            if self._slowed(tally):
                tally.next_read = max(tally.next_read, now + SLOWED_INTERVAL)

    def _slowed(self, tally: _Tally) -> bool:
        return tally.not_found >= self._allowance and 2 * tally.not_found > tally.reads

    def _tally(self, name: str, now: float) -> _Tally:
        tally = self._tallies.get(name)
        if tally is None:
            if len(self._tallies) >= _SWEEP_AT:
                self._sweep(now)
            tally = self._tallies[name] = _Tally(at=now)
            return tally
        if now > tally.at:
            decay = math.exp(-(now - tally.at) / self._window)
            tally.reads *= decay
            tally.not_found *= decay
            tally.at = now
        return tally

    def _sweep(self, now: float) -> None:
        for name in list(self._tallies):
            tally = self._tally(name, now)
            if tally.reads < 1 and tally.not_found < 1 and tally.next_read <= now:
                del self._tallies[name]


# --- fleet-wide --------------------------------------------------------------------------

# The fleet's windows are counted in this many buckets (and the current one).
FLEET_BUCKETS: Final = 10


@dataclass(frozen=True)
class FleetAsk:
    """One Pipedream read to count fleet-wide, with the shares it must stay within.

    ``caller`` and ``listener`` empty: a read no caller asked for (a watcher's re-read),
    counted in the fleet's total but never refused.
    """

    caller: str
    listener: str
    caller_limit: float
    listener_limit: float
    budget: float
    high_water: float


@dataclass(frozen=True)
class FleetCounts:
    """The fleet's counts (before this read) and, if refused, by which rule."""

    total: float
    listener: float
    caller: float
    refused: str | None = None  # "caller", "listener", "fleet", "heavy"


class SharedReads(Protocol):
    """The fleet's pooled counts of Pipedream reads (the shared tier, on Redis)."""

    @property
    def bucket(self) -> float:
        """Seconds a window bucket spans."""
        ...

    async def take(self, ask: FleetAsk) -> FleetCounts | None:
        """Count one read unless a share refuses it (then counts nothing); None when the
        fleet cannot be asked (Redis down or slow): nothing counted, nothing refused."""
        ...


def fleet_peer(peer: str, site: str) -> str:
    """A gRPC peer as one caller across the fleet: its address without the port, and for
    a loopback or Unix peer (local to a host) the host's name ``site`` too."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0] or rest
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        return f"{site}/{kind}:{host}" if loopback else f"{kind}:{host}"
    return f"{site}/{peer}"


class FleetBudgeted:
    """An :class:`AccountSource` that counts each read fleet-wide before it is made, and
    refuses it (:class:`Overloaded`) past a fleet-wide share (see the module docstring).
    The runtime puts it right above the plain source, so only Pipedream reads count."""

    def __init__(
        self, inner: AccountSource, policy: Policy, shared: SharedReads, site: str
    ) -> None:
        self._inner = inner
        self._shared = shared
        self._site = site
        budget = float(max(1, policy.upstream_read_budget))
        self._budget = budget
        self._limits = (budget * policy.caller_read_share, budget * policy.listener_read_share)
        self.refused = 0

    async def read(self, request: AccountRead) -> Fetched:
        await self._take(request.caller)
        return await self._inner.read(request)

    async def _take(self, caller: str) -> None:
        listener = listener_of(caller)
        fleet_caller = ""
        if listener:
            peer = caller[len(listener) + len(_SEPARATOR) :]
            fleet_caller = caller_id(listener, fleet_peer(peer, self._site))
        caller_limit, listener_limit = self._limits
        ask = FleetAsk(
            fleet_caller, listener, caller_limit, listener_limit, self._budget, listener_limit
        )
        counts = await self._shared.take(ask)
        if counts is None or counts.refused is None:
            return
        self.refused += 1
        wait = round(max(self._shared.bucket, 0.001), 3)
        raise Overloaded(
            _FLEET_REFUSALS[counts.refused] + f"; retry in {wait:.1f} s", retry_after=wait
        )


_FLEET_REFUSALS: Final = {
    "caller": "this caller has used its share of the Pipedream read budget across the "
    "fleet (policy.caller_read_share)",
    "listener": "this listener has used its share of the Pipedream read budget across "
    "the fleet (policy.listener_read_share)",
    "fleet": "the fleet has used Pipedream's read budget (policy.upstream_read_budget)",
    "heavy": "the fleet is near Pipedream's read budget, and this caller has read more "
    "than what is left of it (the heaviest callers wait first)",
}
