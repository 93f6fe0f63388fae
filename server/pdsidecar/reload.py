"""Config reload on SIGHUP, without dropping calls in flight.

The config is read again (secrets from their files and variables too). Then:

- connections added get a new upstream; connections whose settings changed
  (client id, secret, scope, ...) get a new one too, with a new Pipedream
  token; unchanged connections keep theirs, token and counters included;
  removed connections are dropped. The new set is swapped into the
  credential service in one assignment: a call in flight finishes on the
  upstream it started with. Cached accounts of changed and removed
  connections are forgotten. New tokens are requested in the background.
- the API token is replaced (a new ``api_token_file`` content takes effect
  for the next call);
- ``[[listeners]]`` allow-lists are replaced when the listener addresses are
  unchanged.

``pipedream_url``, ``[policy]`` and listener addresses are bound to the
running process: a change is logged and ignored until a restart. A config
that does not load leaves everything as it was, logged, and counted in
``pdsidecar_config_reloads_total{result="failed"}``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pdsidecar.config import ConfigError, Settings
from pdsidecar.upstream import Upstream

if TYPE_CHECKING:
    from pdsidecar.server import Sidecar

log = logging.getLogger(__name__)


@dataclass
class Plan:
    settings: Settings
    upstreams: dict[str, Upstream]
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def plan(old: Settings, new: Settings, current: Mapping[str, Upstream], sidecar: Sidecar) -> Plan:
    """What a reload from ``old`` to ``new`` changes; nothing is applied here."""
    ignored = []
    if new.pipedream_url != old.pipedream_url:
        ignored.append("pipedream_url")
    if new.policy != old.policy:
        ignored.append("[policy]")
    if [x.address for x in new.listeners] != [x.address for x in old.listeners]:
        ignored.append("[[listeners]] addresses")
        new = dataclasses.replace(new, listeners=old.listeners)
    new = dataclasses.replace(new, pipedream_url=old.pipedream_url, policy=old.policy)
    result = Plan(new, {}, ignored=ignored)
    client = next(iter(current.values())).client
    for name, connection in new.connections.items():
        existing = current.get(name)
        if existing is not None and existing.connection == connection:
            result.upstreams[name] = existing
            continue
        (result.changed if existing is not None else result.added).append(name)
        result.upstreams[name] = Upstream.create(connection, client, new.policy, sidecar.clock)
    result.removed = sorted(set(current) - set(new.connections))
    return result


async def reload(sidecar: Sidecar) -> bool:
    """Re-read the config and apply it; False (and nothing changed) if it does not load."""
    if sidecar.loader is None:
        log.info("reload: no config file to read again (settings came from flags)")
        return False
    try:
        new = sidecar.loader()
    except ConfigError as error:
        sidecar.upstream_stats.reloads["failed"] = (
            sidecar.upstream_stats.reloads.get("failed", 0) + 1
        )
        log.error("reload failed, keeping the running config: %s", error)
        return False
    change = plan(sidecar.settings, new, sidecar.upstreams, sidecar)
    sidecar.apply(change.settings, change.upstreams)
    sidecar.readiness.prime(change.added + change.changed)
    sidecar.upstream_stats.reloads["ok"] = sidecar.upstream_stats.reloads.get("ok", 0) + 1
    log.info(
        "reloaded config: connections added %s, changed %s, removed %s",
        change.added or "none",
        change.changed or "none",
        change.removed or "none",
    )
    if change.ignored:
        log.warning("reload: %s changed; restart to apply", ", ".join(change.ignored))
    return True
