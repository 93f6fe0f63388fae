"""The [fleet] table (formerly [shared_cache]): what it accepts, and what it refuses."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from pdsidecar.config.load import settings_from_mapping
from pdsidecar.settings import ConfigError

ENV = {"SECRET": "s3cret-value"}


def config(**shared: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "connections": {"default": {"client_id": "c", "client_secret_env": "SECRET"}}
    }
    if shared:
        data["fleet"] = shared
    return data


def key_file(tmp_path: Path, name: str = "k", size: int = 32) -> str:
    path = tmp_path / name
    path.write_text(base64.b64encode(os.urandom(size)).decode() + "\n", encoding="utf-8")
    return str(path)


def test_without_the_table_there_is_no_shared_tier() -> None:
    assert settings_from_mapping(config(), ENV).fleet is None


def test_a_full_table(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("redis-pass\n", encoding="utf-8")
    keys = [key_file(tmp_path, "new"), key_file(tmp_path, "old")]
    shared = settings_from_mapping(
        config(
            url="rediss://redis.internal:6380/0",
            username="pdsidecar",
            password_file=str(password),
            key_files=keys,
            namespace="prod",
            timeout_ms=20,
            cluster=True,
            lock_ttl_ms=3000,
        ),
        ENV,
    ).fleet
    assert shared is not None
    assert (shared.url, shared.username, shared.namespace) == (
        "rediss://redis.internal:6380/0",
        "pdsidecar",
        "prod",
    )
    assert shared.password is not None and shared.password.reveal() == "redis-pass"
    assert len(shared.keys) == 2 and shared.cluster
    assert (shared.timeout, shared.lock_ttl) == (0.02, 3.0)
    assert "redis-pass" not in repr(shared)


def test_defaults(tmp_path: Path) -> None:
    shared = settings_from_mapping(
        config(url="unix:///run/redis.sock", key_files=[key_file(tmp_path)]), ENV
    ).fleet
    assert shared is not None
    assert (shared.timeout, shared.namespace, shared.cluster) == (0.25, "pdsidecar", False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://redis"}, "url must start with"),
        ({"url": "redis://user:pw@redis"}, "must not hold credentials"),
        ({"key_files": []}, "key_files must be a non-empty list"),
        ({"key_files": ["/nonexistent/key"]}, "cannot read key file"),
        ({"timeout_ms": 0}, "timeout_ms must be a whole number"),
        ({"cluster": "yes"}, "cluster must be true or false"),
        ({"namespace": "a{b}"}, "namespace must be"),
        ({"colour": "blue"}, "unknown keys"),
    ],
)
def test_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    table = {"url": "redis://127.0.0.1:6379", "key_files": [key_file(tmp_path)], **change}
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(config(**table), ENV)


def test_a_key_that_is_not_32_bytes_of_base64_is_refused(tmp_path: Path) -> None:
    short = key_file(tmp_path, "short", 16)
    with pytest.raises(ConfigError, match="holds 16 bytes; AES-256 needs 32"):
        settings_from_mapping(config(url="redis://r", key_files=[short]), ENV)
    garbage = tmp_path / "garbage"
    garbage.write_text("not base64 at all!\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not base64") as error:
        settings_from_mapping(config(url="redis://r", key_files=[str(garbage)]), ENV)
    assert "not base64 at all" not in str(error.value), "the key's content is not quoted"
    same = key_file(tmp_path, "same")
    with pytest.raises(ConfigError, match="the same key twice"):
        settings_from_mapping(config(url="redis://r", key_files=[same, same]), ENV)


def test_the_former_table_name_still_loads_and_both_names_at_once_are_refused(
    tmp_path: Path,
) -> None:
    table = {"url": "redis://127.0.0.1:6379/0", "key_files": [key_file(tmp_path)]}
    data = config()
    data["shared_cache"] = table
    former = settings_from_mapping(data, ENV).fleet
    assert former is not None and former.url == table["url"]
    data["fleet"] = table
    with pytest.raises(ConfigError, match=r"\[fleet\] and \[shared_cache\]"):
        settings_from_mapping(data, ENV)
