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

The counts are this process's: with ``--workers`` or a fleet, each sidecar
keeps its own shares of the budget (the shared tier does not pool them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pdsidecar.clock import Clock
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
