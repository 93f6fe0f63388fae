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
- ``[[listeners]]`` allow-lists are replaced when the listener addresses are
  unchanged.
- ``[shared_cache]`` (key files re-read): a change replaces the fleet's tier
  (see :func:`pdsidecar.runtime.fleet.refit`); removing the table turns sharing off.

``pipedream_url``, ``[policy]`` and listener addresses are bound to the
running process: a change is logged and ignored until a restart. A config
that does not load leaves everything as it was, logged, and counted in
``pdsidecar_config_reloads_total{result="failed"}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pdsidecar.settings import Settings


@dataclass
class Plan:
    """What a reload changes: the settings to run with and the connections to rebuild."""

    settings: Settings
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # What changed but only a restart applies, said the way the config names it.
    ignored: list[str] = field(default_factory=list)


def plan(old: Settings, new: Settings) -> Plan:
    """What a reload from ``old`` to ``new`` changes; a pure function, nothing is applied."""
    ignored = []
    if new.pipedream_url != old.pipedream_url:
        ignored.append("pipedream_url")
    if new.policy != old.policy:
        ignored.append("[policy]")
    if [x.address for x in new.listeners] != [x.address for x in old.listeners]:
        ignored.append("[[listeners]] addresses")
        new = dataclasses.replace(new, listeners=old.listeners)
    new = dataclasses.replace(new, pipedream_url=old.pipedream_url, policy=old.policy)
    result = Plan(new, ignored=ignored)
    for name, connection in new.connections.items():
        existing = old.connections.get(name)
        if existing is None:
            result.added.append(name)
        elif existing != connection:
            result.changed.append(name)
    result.removed = sorted(set(old.connections) - set(new.connections))
    return result
