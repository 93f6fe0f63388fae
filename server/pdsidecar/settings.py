"""Settings: the value types every layer is configured with.

One :class:`Settings` object is read at start (and again on reload) by
:mod:`pdsidecar.config`; policies (refresh windows, cache age, retry budget,
upstream concurrency) are values here, passed down to the layers that use
them; no module keeps its own. This module reads nothing and imports nothing
of the sidecar but :mod:`pdsidecar.secret`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pdsidecar.secret import Secret

DEFAULT_PIPEDREAM_URL: Final = "https://api.pipedream.com"
DEFAULT_CONNECTION: Final = "default"
DEFAULT_SOCKET_MODE: Final = 0o600


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Policy:
    # Pipedream token windows (botocore-style). Inside the advisory window one
    # caller refreshes while the others keep using the still-valid token; a failed
    # refresh there is logged and the old token served. Inside the mandatory
    # window every caller waits for a new token and errors surface.
    token_refresh_margin: float = 300.0
    token_mandatory_margin: float = 60.0
    # Account responses are cached at most this long, and never past the source
    # token's expires_at minus credentials_expiry_margin.
    credentials_max_age: float = 300.0
    credentials_expiry_margin: float = 300.0
    # When Pipedream is down or rate limited, cached credentials past their
    # max age are still served while the source token itself is valid.
    serve_stale_on_upstream_error: bool = True
    # PipedreamConnection HTTP.
    connect_timeout: float = 5.0
    request_timeout: float = 10.0
    max_attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    upstream_concurrency: int = 32
    default_retry_after: float = 30.0
    # Largest number of cached accounts (least recently used are evicted).
    cache_max_entries: int = 100_000
    # Bytes the GetCredentials answer memo may hold (keys, answers and per-entry overhead).
    memo_max_bytes: int = 32 * 1024 * 1024
    # ACCOUNT_NOT_FOUND is remembered per account this long: repeated lookups of an id
    # Pipedream does not know cost no request; an account connected meanwhile works
    # once it passes.
    not_found_ttl: float = 3.0
    # A new account fetch expected to wait longer than this (or than its caller's
    # deadline) for an upstream slot is refused at once: OVERLOADED with RetryInfo.
    fetch_queue_wait: float = 10.0
    # rejected_access_token refetches an account at most once per this interval
    # while the rejected value stays the same.
    rejected_token_interval: float = 10.0
    # RefreshToken(force=true) requests a new Pipedream token at most once per
    # connection per this interval; forced calls in between get the current token's
    # status (refreshed=false).
    forced_refresh_interval: float = 10.0
    # Unary calls one listener serves at once (WatchCredentials streams, up to
    # max_watchers, come on top); past it gRPC answers RESOURCE_EXHAUSTED. Requests
    # are capped at 64 KiB, so what calls in flight hold is bounded too.
    max_concurrent_rpcs: int = 1024
    # Calls and streams (HTTP/2 streams) one client connection may have open at
    # once; gRPC refuses the streams beyond it (the client sees UNAVAILABLE and may
    # retry), so one connection cannot take every slot.
    max_streams_per_connection: int = 2048
    # WatchCredentials: most streams one process holds (RESOURCE_EXHAUSTED past it),
    # and the largest random delay (seconds) added to a watched account's scheduled
    # re-read, so accounts refreshed together by Pipedream are not re-read together.
    max_watchers: int = 10_000
    watch_jitter: float = 30.0
    # Health and reflection have a pool of their own on each listener, apart from the
    # API's: at most probe_calls Health/Check calls at once, and probe_streams
    # Health/Watch and reflection streams (probe_streams_per_connection from one
    # connection); past them, RESOURCE_EXHAUSTED (OVERLOADED). API calls past
    # max_concurrent_rpcs are refused the same way, so they never take the probes' share.
    probe_calls: int = 64
    probe_streams: int = 64
    probe_streams_per_connection: int = 8
    # Server streams (WatchCredentials, Health/Watch, reflection) write one message at a
    # time; one the client has not taken within stream_stall_timeout seconds ends the
    # stream, RESOURCE_EXHAUSTED (STREAM_STALLED), sent after that message. If the client
    # has not taken even that within stream_stall_grace, the stream is cancelled (the
    # client sees CANCELLED) and its slot freed.
    stream_stall_timeout: float = 10.0
    stream_stall_grace: float = 10.0
    # Shares of Pipedream's account-read budget (upstream_read_budget reads per
    # upstream_read_window seconds per project): one caller (a connection) may spend at
    # most caller_read_share of it, one listener listener_read_share; a caller or
    # listener whose recent misses are mostly ACCOUNT_NOT_FOUND, not_found_allowance or
    # more, is slowed to one read a second. Past these: OVERLOADED with RetryInfo.
    upstream_read_budget: int = 2000
    upstream_read_window: float = 300.0
    caller_read_share: float = 0.5
    listener_read_share: float = 0.75
    not_found_allowance: int = 50


@dataclass(frozen=True)
class ConnectionConfig:
    name: str
    client_id: str
    client_secret: Secret
    scope: str = "*"
    require_external_user_id: bool = False


@dataclass(frozen=True)
class FleetConfig:
    """The ``[fleet]`` table: the fleet's shared, encrypted tier on Redis.

    ``keys`` are the decoded 32-byte AES-256 keys, the first one encrypts, all
    decrypt (rotation without a flag day). ``password`` is the Redis ACL password.
    """

    url: str
    keys: tuple[Secret, ...] = field(repr=False)
    username: str | None = None
    password: Secret | None = None
    namespace: str = "pdsidecar"
    # A Redis reply slower than this (event-loop lag not counted) is slow; three in a row,
    # or any other failure, mark Redis down (fleet/store.py; the default: docs/fleet.md).
    timeout: float = 0.25
    cluster: bool = False
    # How long a fetch lock outlives a holder that died (the holder renews it while alive).
    lock_ttl: float = 5.0


@dataclass(frozen=True)
class Settings:
    pipedream_url: str = DEFAULT_PIPEDREAM_URL
    connections: Mapping[str, ConnectionConfig] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    # From [[listeners]]; --listen flags add to these.
    listeners: tuple[ListenerConfig, ...] = ()
    # Every RPC but health and reflection must carry it, when set.
    api_token: Secret | None = None
    # None: no shared tier, every process keeps its own token and cache.
    fleet: FleetConfig | None = None


@dataclass(frozen=True)
class ListenAddress:
    # "tcp" or "unix"
    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def grpc_target(self) -> str:
        """The form grpc's add_*_port and channels take."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class ListenerConfig:
    """One listener: where, the Unix socket's file mode, and what it may serve.

    ``None`` allow-lists allow everything. Connection names are compared after
    the empty name becomes ``default``; sources as the caller spells them.
    """

    address: ListenAddress
    socket_mode: int = DEFAULT_SOCKET_MODE
    allow_connections: frozenset[str] | None = None
    allow_sources: frozenset[str] | None = None

    @property
    def restricted(self) -> bool:
        return self.allow_connections is not None or self.allow_sources is not None
