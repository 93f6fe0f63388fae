"""The ``[fleet]`` table: where the fleet's shared tier lives and the keys that seal it.

    [fleet]                                      # [shared_cache], its former name, still works
    url = "rediss://redis.internal:6379/0"      # redis://, rediss:// (TLS) or unix:///path
    username = "pdsidecar"                       # Redis ACL user (optional)
    password_file = "/run/secrets/redis-password"
    key_files = ["/run/secrets/cache-key-2", "/run/secrets/cache-key-1"]  # first encrypts
    namespace = "pdsidecar"                      # prefix of every Redis key
    timeout_ms = 250                             # per Redis command, event-loop lag not counted
    cluster = false                              # Redis Cluster
    lock_ttl_ms = 5000                           # a dead fetch-lock holder costs at most this

Each key file holds 32 random bytes, base64 (``head -c 32 /dev/urandom | base64``).
Files are read at start and on every reload; a missing, unreadable or malformed
one is a :class:`ConfigError` (exit 2 at start, the old config kept on reload).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pdsidecar.secret import Secret
from pdsidecar.settings import ConfigError, FleetConfig

KEY_BYTES: Final = 32
_KNOWN: Final = frozenset(
    {
        "url",
        "username",
        "password_file",
        "key_files",
        "namespace",
        "timeout_ms",
        "cluster",
        "lock_ttl_ms",
    }
)
_WHERE: Final = "[fleet]"


def fleet_table(data: Mapping[str, Any]) -> FleetConfig | None:
    """The config's ``[fleet]`` table (or ``[shared_cache]``, its former name); None if absent."""
    if "fleet" in data and "shared_cache" in data:
        raise ConfigError("[fleet] and [shared_cache] are one table under two names: keep [fleet]")
    return fleet_from(data.get("fleet", data.get("shared_cache")))


def fleet_from(table: Any) -> FleetConfig | None:
    """The table's value type; None when the table is absent."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"{_WHERE} must be a table")
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise ConfigError(f"{_WHERE} has unknown keys {unknown}; known keys are {sorted(_KNOWN)}")
    url = table.get("url")
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{_WHERE} url must start with redis://, rediss:// or unix://")
    if "@" in url.split("//", 1)[1].split("/", 1)[0]:
        raise ConfigError(f"{_WHERE} url must not hold credentials: use username and password_file")
    files = table.get("key_files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{_WHERE} key_files must be a non-empty list of file paths")
    keys = tuple(_read_key(Path(f)) for f in files)
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{_WHERE} key_files holds the same key twice")
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise ConfigError(f"{_WHERE} username must be a non-empty string")
    password = None
    if "password_file" in table:
        password = Secret(_read_text(Path(str(table["password_file"])), "password_file"))
    namespace = table.get("namespace", "pdsidecar")
    if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
        raise ConfigError(f"{_WHERE} namespace must be a non-empty string without braces")
    cluster = table.get("cluster", False)
    if not isinstance(cluster, bool):
        raise ConfigError(f"{_WHERE} cluster must be true or false")
    if cluster and url.startswith("unix://"):
        raise ConfigError(f"{_WHERE} cluster = true needs a redis:// or rediss:// url")
    return FleetConfig(
        url=url,
        keys=keys,
        username=username,
        password=password,
        namespace=namespace,
        timeout=_millis(table, "timeout_ms", 250, 1, 10_000),
        cluster=cluster,
        lock_ttl=_millis(table, "lock_ttl_ms", 5000, 100, 600_000),
    )


def _millis(table: Mapping[str, Any], name: str, default: int, low: int, high: int) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{_WHERE} {name} must be a whole number from {low} to {high}")
    return value / 1000


def _read_text(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{_WHERE} cannot read {what} {str(path)!r}: {reason}") from None
    if not value:
        raise ConfigError(f"{_WHERE} {what} {str(path)!r} is empty")
    return value


def _read_key(path: Path) -> Secret:
    text = _read_text(path, "key file")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{_WHERE} key file {str(path)!r} is not base64 "
            "(make one with: head -c 32 /dev/urandom | base64)"
        ) from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(
            f"{_WHERE} key file {str(path)!r} holds {len(raw)} bytes; AES-256 needs "
            f"{KEY_BYTES} (make one with: head -c 32 /dev/urandom | base64)"
        )
    return Secret(text)
