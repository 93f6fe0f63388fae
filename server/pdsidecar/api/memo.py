"""Serialized GetCredentials answers, reused while the cache entry behind them is current.

The hot path of a cached account is one dictionary lookup by the request's
bytes: no message is parsed or built. Two rules keep that lookup from being a
memory sink for hostile callers:

- **Keyed on what the answer depends on.** An answer is kept only under the
  request's canonical encoding: the bytes a parsed request serializes back to
  (deterministically), with no unknown fields, no repeated scalars, nothing
  but the meaningful fields. Any other encoding of the same request is
  answered the slow way and never stored, so varying unknown-field bytes (or
  field order, or duplicates) cannot add entries. Keys longer than
  ``MAX_KEY_BYTES`` are not kept either (a real request is a few hundred bytes).
- **Bounded by bytes.** Every entry is charged its key, its answer and a fixed
  overhead; past ``max_bytes`` (``Policy.memo_max_bytes``) the oldest entries
  go first (a dict keeps insertion order).

An entry is served while its ``still_current`` check holds (the account cache
entry it came from is still the fresh one) and dropped when the check fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from google.protobuf.message import Message

# What one entry costs besides its key and answer: the dict slot, the tuple,
# two bytes objects' headers and the bound check (measured, rounded up).
ENTRY_OVERHEAD: Final = 256
# A GetCredentials request with every id at its length cap is well under this.
MAX_KEY_BYTES: Final = 4096


def canonical(request: bytes, parsed: Message) -> bool:
    """Whether ``request`` is the canonical encoding of ``parsed`` (see the module doc).

    Drops ``parsed``'s unknown fields (nothing reads them) so they do not count.
    """
    if len(request) > MAX_KEY_BYTES:
        return False
    parsed.DiscardUnknownFields()
    return parsed.SerializeToString(deterministic=True) == request


class ResponseMemo:
    """Serialized answers by canonical request bytes, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self.bytes = 0
        self._entries: dict[bytes, tuple[bytes, Callable[[], bool]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, request: bytes) -> bytes | None:
        found = self._entries.get(request)
        if found is None:
            return None
        response, still_current = found
        if still_current():
            return response
        self._drop(request)
        return None

    def put(self, request: bytes, response: bytes, still_current: Callable[[], bool]) -> None:
        """Keep ``response`` for ``request``, which the caller checked with :func:`canonical`."""
        cost = _cost(request, response)
        if cost > self.max_bytes:
            return
        self._drop(request)
        entries = self._entries
        entries[request] = (response, still_current)
        self.bytes += cost
        while self.bytes > self.max_bytes:
            self._drop(next(iter(entries)))

    def _drop(self, request: bytes) -> None:
        found = self._entries.pop(request, None)
        if found is not None:
            self.bytes -= _cost(request, found[0])


def _cost(request: bytes, response: bytes) -> int:
    return len(request) + len(response) + ENTRY_OVERHEAD
