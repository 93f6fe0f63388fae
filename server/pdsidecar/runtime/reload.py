"""Config reload on SIGHUP, without dropping calls in flight.

:func:`plan` says what a new config changes, as a pure function of the old and
the new settings; :meth:`pdsidecar.runtime.sidecar.Sidecar.reload` reads the
config again (secrets from their files and variables too) and applies the plan:

- connections added get a new Pipedream connection; connections whose settings changed
  (client id, secret, scope, ...) get a new one too, with a new Pipedream
  token; unchanged connections keep theirs, token and counters included;
  removed connections are dropped. The new set is swapped into the
  credential service in one assignment: a call in flight finishes on the
  connection it started with. Cached accounts of changed and removed
  connections are forgotten. New tokens are requested in the background.
- the API token is replaced (a new ``api_token_file`` content takes effect
  for the next call);
- ``[[listeners]]`` allow-lists are replaced on every listener whose address
  is in both configs, whatever else changed;
- connections replaced or removed have their fetches in flight detached: the
  callers waiting get their answer, the cache never keeps it (see
  :meth:`~pdsidecar.credentials.cache.AccountCache.drop_connection`).
- ``[fleet]`` (key files re-read): a change replaces the fleet's tier
  (see :func:`pdsidecar.runtime.fleet.refit`); removing the table turns sharing off.

``pipedream_url``, ``[policy]``, listeners added or removed and a listener's
``socket_mode`` are bound to the running process: each such change is named
in the plan (and the log) and waits for a restart; a removed listener keeps
serving with its old allow-lists until then. A config that does not load
leaves everything as it was, logged, and counted in
``pdsidecar_config_reloads_total{result="failed"}``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from pdsidecar.settings import ListenAddress, ListenerConfig, Settings


@dataclass
class Plan:
    """What a reload changes: the settings to run with and the connections to rebuild."""

    settings: Settings
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # What changed but only a restart applies, said the way the config names it.
    ignored: list[str] = field(default_factory=list)
    # Listeners whose allow-lists the reload replaces.
    allow_lists: list[str] = field(default_factory=list)


def plan(old: Settings, new: Settings) -> Plan:
    """What a reload from ``old`` to ``new`` changes; a pure function, nothing is applied."""
    ignored = []
    if new.pipedream_url != old.pipedream_url:
        ignored.append("pipedream_url")
    if new.policy != old.policy:
        ignored.append("[policy]")
    listeners, allow_lists = _listeners(old.listeners, new.listeners, ignored)
    new = dataclasses.replace(
        new, pipedream_url=old.pipedream_url, policy=old.policy, listeners=listeners
    )
    result = Plan(new, ignored=ignored, allow_lists=allow_lists)
    for name, connection in new.connections.items():
        existing = old.connections.get(name)
        if existing is None:
            result.added.append(name)
        elif existing != connection:
            result.changed.append(name)
    result.removed = sorted(set(old.connections) - set(new.connections))
    return result


def _listeners(
    old: tuple[ListenerConfig, ...], new: tuple[ListenerConfig, ...], ignored: list[str]
) -> tuple[tuple[ListenerConfig, ...], list[str]]:
    """The running listeners with the allow-lists the new config gives them, and which
    changed; what needs a restart goes into ``ignored``."""
    # Listeners on one address (port 0) are matched in order: the first with the first.
    incoming: dict[ListenAddress, list[ListenerConfig]] = {}
    for x in new:
        incoming.setdefault(x.address, []).append(x)
    running = Counter(x.address for x in old)
    seen: Counter[ListenAddress] = Counter()
    kept, changed = [], []
    for listener in old:
        name = f"[[listeners]] {listener.address.grpc_target}"
        place = seen[listener.address]
        seen[listener.address] += 1
        candidates = incoming.get(listener.address, [])
        wanted = candidates[place] if place < len(candidates) else None
        if wanted is None:
            ignored.append(f"{name} removed (it serves with its old allow-lists until then)")
            kept.append(listener)
            continue
        if wanted.socket_mode != listener.socket_mode:
            ignored.append(f"{name} socket_mode")
        updated = dataclasses.replace(
            listener,
            allow_connections=wanted.allow_connections,
            allow_sources=wanted.allow_sources,
        )
        if updated != listener:
            changed.append(listener.address.grpc_target)
        kept.append(updated)
    ignored.extend(
        f"[[listeners]] {address.grpc_target} added"
        for address, listeners in incoming.items()
        for _ in range(len(listeners) - running[address])
    )
    return tuple(kept), changed
