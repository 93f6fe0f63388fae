"""Admission control for account fetches: fair per caller, refused early when hopeless.

An account fetch holds one of ``slots`` (``Policy.upstream_concurrency``)
while it talks to Pipedream. Fetches that cannot get one at once wait in their
*caller's* queue, and free slots go round-robin over the callers with a queue,
so one caller with a thousand cold accounts delays another caller's single
fetch by one round, not by a thousand fetches.

A caller is the gRPC connection a call came on (its listener and peer
address). gRPC names every peer of a Unix socket alike (``unix:``) and tells
a handler nothing more (no SO_PEERCRED, no connection id), so on a Unix socket
all callers of that socket share one queue: give callers you do not trust a
listener of their own.

Before a fetch is queued, the caller's share of Pipedream's read budget is
checked (:class:`~pdsidecar.credentials.budget.ReadBudget`); a fetch that
starts is counted against it.

A new fetch whose expected start lies beyond the caller's deadline (or beyond
``Policy.fetch_queue_wait`` without one) is refused at once with
:class:`~pdsidecar.errors.Overloaded` (RESOURCE_EXHAUSTED with RetryInfo),
instead of waiting only to miss its deadline. The expected start is the number
of rounds ahead of it (its queue's length, times the callers queueing, over
the slots) times the recent fetch duration (an exponential average).

A queued fetch that every waiting caller has given up on is withdrawn by the
account cache before it reaches Pipedream (:meth:`FetchGate.withdraw`), so
cancelled callers leave behind at most the fetches already talking to
Pipedream.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from pdsidecar.clock import Clock
from pdsidecar.credentials.budget import ReadBudget
from pdsidecar.errors import Overloaded

# The first fetches' expected duration, before any was measured.
INITIAL_DURATION: Final = 0.2
# Weight of the newest fetch in the average duration.
_SMOOTHING: Final = 0.2


@dataclass(eq=False)
class Ticket:
    caller: str
    granted: asyncio.Future[None] = field(repr=False)
    started: bool = False
    started_at: float = 0.0


class FetchGate:
    def __init__(
        self, slots: int, max_wait: float, clock: Clock, budget: ReadBudget | None = None
    ) -> None:
        self._budget = budget
        self._slots = max(1, slots)
        self._max_wait = max_wait
        self._clock = clock
        self._busy = 0
        # Callers with waiting tickets, in round-robin order.
        self._queues: OrderedDict[str, deque[Ticket]] = OrderedDict()
        self.duration = INITIAL_DURATION
        self.refused = 0

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def admit(self, caller: str, deadline: float | None) -> Ticket:
        """A ticket for one fetch by ``caller``, started or queued; Overloaded if hopeless."""
        if self._budget is not None:
            self._budget.check(caller)
        ticket = Ticket(caller, asyncio.get_running_loop().create_future())
        if self._busy < self._slots and not self._queues:
            self._start(ticket)
            return ticket
        queue = self._queues.get(caller)
        ahead = len(queue) if queue is not None else 0
        callers = len(self._queues) + (queue is None)
        expected = math.ceil((ahead + 1) * callers / self._slots) * self.duration
        budget = self._max_wait
        if deadline is not None:
            budget = min(budget, deadline - self._clock.monotonic())
        if expected > budget:
            self.refused += 1
            raise Overloaded(
                "too many Pipedream fetches are waiting for this caller; "
                f"retry in {expected:.1f} s",
                retry_after=round(expected, 3),
            )
        if queue is None:
            queue = self._queues[caller] = deque()
        queue.append(ticket)
        return ticket

    async def wait(self, ticket: Ticket) -> None:
        """Until ``ticket`` holds a slot. Cancelled: the ticket gives up its place or slot."""
        if ticket.started:
            return
        try:
            await ticket.granted
        except asyncio.CancelledError:
            if ticket.started:
                self.release(ticket)
            else:
                self.withdraw(ticket)
            raise

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a ticket that has not started out of its queue; False if it had started."""
        if ticket.started:
            return False
        queue = self._queues.get(ticket.caller)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._queues[ticket.caller]
        if not ticket.granted.done():
            ticket.granted.cancel()
        return True

    def release(self, ticket: Ticket) -> None:
        """The fetch is over: its slot goes to the next caller in turn."""
        if not ticket.started:
            self.withdraw(ticket)
            return
        ticket.started = False  # released once
        self._busy -= 1
        took = self._clock.monotonic() - ticket.started_at
        self.duration += _SMOOTHING * (max(took, 0.0) - self.duration)
        while self._busy < self._slots and self._queues:
            caller, queue = self._queues.popitem(last=False)
            following = queue.popleft()
            if queue:
                self._queues[caller] = queue  # back of the round
            self._start(following)

    def not_found(self, ticket: Ticket) -> None:
        """The ticket's fetch found no account (counted against its caller's budget)."""
        if self._budget is not None:
            self._budget.not_found(ticket.caller)

    def _start(self, ticket: Ticket) -> None:
        if self._budget is not None:
            self._budget.spend(ticket.caller)
        self._busy += 1
        ticket.started = True
        ticket.started_at = self._clock.monotonic()
        if not ticket.granted.done():
            ticket.granted.set_result(None)
