"""Loading :class:`~pdsidecar.settings.Settings` from a TOML file or the environment.

A config file is TOML::

    pipedream_url = "https://api.pipedream.com"

    [policy]
    token_refresh_margin = 300      # refresh the Pipedream token this early (advisory window)
    token_mandatory_margin = 60     # inside this, callers wait for the refresh
    credentials_max_age = 300       # cache an account's credentials at most this long

    [connections.default]
    client_id = "..."
    client_secret_env = "PIPEDREAM_CLIENT_SECRET"   # or client_secret_file = "/run/secrets/pd"

    # Optional: callers must send "authorization: Bearer <token>" (see pdsidecar.api.access).
    api_token_file = "/run/secrets/pdsidecar-api-token"

    # Optional: listeners besides --listen, each with its own allow-lists.
    [[listeners]]
    address = "unix:/run/pdsidecar/pd.sock"
    socket_mode = "0660"
    allow_connections = ["default"]
    allow_sources = ["notion", "slack"]

Without a file, PIPEDREAM_CLIENT_ID and PIPEDREAM_CLIENT_SECRET define the
connection ``default`` and PDSIDECAR_PIPEDREAM_URL overrides the API URL.
The optional ``[fleet]`` table (see :mod:`pdsidecar.config.fleet`) lets a
fleet share Pipedream tokens and accounts through Redis.
PDSIDECAR_API_TOKEN sets the sidecar's API token (the bearer token callers send),
with or without a file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Final

from pdsidecar.config.fleet import fleet_table
from pdsidecar.config.listen import listeners_from_toml
from pdsidecar.secret import Secret
from pdsidecar.settings import (
    DEFAULT_CONNECTION,
    DEFAULT_PIPEDREAM_URL,
    ConfigError,
    ConnectionConfig,
    Policy,
    Settings,
)

API_TOKEN_ENV: Final = "PDSIDECAR_API_TOKEN"
# Shorter shared tokens are refused: they could be guessed.
MIN_API_TOKEN_LENGTH: Final = 16


def _policy_from(table: Mapping[str, Any]) -> Policy:
    known = {f.name: f.type for f in fields(Policy)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"[policy] has unknown keys {unknown}; known keys are {sorted(known)}")
    values: dict[str, Any] = {}
    defaults = Policy()
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"[policy] {key} must be a {expected.__name__}, got {value!r}")
        values[key] = value
    policy = replace(defaults, **values)
    if policy.token_mandatory_margin > policy.token_refresh_margin:
        raise ConfigError("[policy] token_mandatory_margin must not exceed token_refresh_margin")
    if policy.upstream_concurrency < 1 or policy.max_attempts < 1:
        raise ConfigError("[policy] upstream_concurrency and max_attempts must be at least 1")
    if policy.max_watchers < 0 or policy.watch_jitter < 0:
        raise ConfigError("[policy] max_watchers and watch_jitter must not be negative")
    if policy.stream_stall_timeout <= 0 or policy.stream_stall_grace < 0:
        raise ConfigError(
            "[policy] stream_stall_timeout must be positive and stream_stall_grace not negative"
        )
    return policy


def _read_secret(name: str, table: Mapping[str, Any], env: Mapping[str, str]) -> Secret:
    where = f"[connections.{name}]"
    if "client_secret" in table:
        raise ConfigError(
            f"{where}: put the secret in client_secret_env or client_secret_file, "
            "not in the config file"
        )
    if "client_secret_file" in table:
        path = Path(str(table["client_secret_file"]))
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read client_secret_file {str(path)!r}: {exc.strerror}"
            ) from None
        if not value:
            raise ConfigError(f"{where}: client_secret_file {str(path)!r} is empty")
        return Secret(value)
    if "client_secret_env" in table:
        var = str(table["client_secret_env"])
        value = env.get(var, "")
        if not value:
            raise ConfigError(f"{where}: environment variable {var} is not set or empty")
        return Secret(value)
    raise ConfigError(f"{where}: set client_secret_env or client_secret_file")


def _connection_from(name: str, table: Any, env: Mapping[str, str]) -> ConnectionConfig:
    where = f"[connections.{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    allowed = {
        "client_id",
        "client_secret",
        "client_secret_env",
        "client_secret_file",
        "scope",
        "require_external_user_id",
    }
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known keys are {sorted(allowed)}")
    client_id = table.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise ConfigError(f"{where}: client_id is required")
    require_user = table.get("require_external_user_id", False)
    if not isinstance(require_user, bool):
        raise ConfigError(f"{where}: require_external_user_id must be true or false")
    return ConnectionConfig(
        name=name,
        client_id=client_id,
        client_secret=_read_secret(name, table, env),
        scope=str(table.get("scope", "*")),
        require_external_user_id=require_user,
    )


def read_api_token(data: Mapping[str, Any], env: Mapping[str, str]) -> Secret | None:
    """The shared API token from ``api_token_file`` or PDSIDECAR_API_TOKEN; None if neither."""
    from_env = env.get(API_TOKEN_ENV, "")
    path = data.get("api_token_file")
    if path is not None and from_env:
        raise ConfigError(f"set api_token_file or {API_TOKEN_ENV}, not both")
    if path is not None:
        try:
            value = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read api_token_file {str(path)!r}: {exc.strerror}") from None
        where = f"api_token_file {str(path)!r}"
    elif from_env:
        value, where = from_env.strip(), API_TOKEN_ENV
    else:
        return None
    if len(value) < MIN_API_TOKEN_LENGTH:
        raise ConfigError(
            f"{where}: the API token must be at least {MIN_API_TOKEN_LENGTH} characters"
        )
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ConfigError(f"{where}: the API token must be printable ASCII without spaces")
    return Secret(value)


def settings_from_mapping(data: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    known = {
        "pipedream_url",
        "policy",
        "connections",
        "listeners",
        "api_token_file",
        "fleet",
        "shared_cache",  # the table's name before it was [fleet]; still accepted
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown top-level keys {unknown}; known keys are {sorted(known)}")
    url = str(data.get("pipedream_url") or env.get("PDSIDECAR_PIPEDREAM_URL") or "")
    url = url or DEFAULT_PIPEDREAM_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"pipedream_url must be an http(s) URL, got {url!r}")
    policy_table = data.get("policy", {})
    if not isinstance(policy_table, Mapping):
        raise ConfigError("[policy] must be a table")
    connections_table = data.get("connections", {})
    if not isinstance(connections_table, Mapping) or not connections_table:
        raise ConfigError("the config defines no [connections.NAME] table")
    connections = {
        name: _connection_from(name, table, env) for name, table in connections_table.items()
    }
    return Settings(
        pipedream_url=url.rstrip("/"),
        connections=connections,
        policy=_policy_from(policy_table),
        listeners=listeners_from_toml(data.get("listeners", [])),
        api_token=read_api_token(data, env),
        fleet=fleet_table(data),
    )


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from a TOML file, or from the environment when ``path`` is None."""
    env = os.environ if env is None else env
    if path is None:
        client_id = env.get("PIPEDREAM_CLIENT_ID", "")
        if not client_id or not env.get("PIPEDREAM_CLIENT_SECRET"):
            raise ConfigError(
                "no --config given and PIPEDREAM_CLIENT_ID / PIPEDREAM_CLIENT_SECRET are not "
                "both set; pass --config FILE, set both variables, or use --emulator"
            )
        data: dict[str, Any] = {
            "connections": {
                DEFAULT_CONNECTION: {
                    "client_id": client_id,
                    "client_secret_env": "PIPEDREAM_CLIENT_SECRET",
                }
            }
        }
        return settings_from_mapping(data, env)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return settings_from_mapping(data, env)
