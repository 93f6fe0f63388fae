"""The Kubernetes fleet example: its pdsidecar config loads, and Redis is TLS and ACL only."""

from __future__ import annotations

import base64
import os
import re
import tomllib
from pathlib import Path

from pdsidecar.cli import _parser
from pdsidecar.config.load import settings_from_mapping

FLEET = Path(__file__).resolve().parents[2] / "deploy/kubernetes/fleet"


def kinds(name: str) -> list[str]:
    text = (FLEET / name).read_text(encoding="utf-8")
    return re.findall(r"^kind: (\w+)$", text, re.M)


def embedded_toml(text: str) -> str:
    """The ``pdsidecar.toml: |`` block of a ConfigMap, unindented (no YAML parser needed)."""
    block = text.split("pdsidecar.toml: |\n", 1)[1].split("\n---", 1)[0]
    lines = block.splitlines()
    indent = len(lines[0]) - len(lines[0].lstrip())
    return "\n".join(line[indent:] for line in lines) + "\n"


def test_the_fleet_config_loads_with_its_fleet_table(tmp_path: Path) -> None:
    assert "ConfigMap" in kinds("workers.yaml")
    text = embedded_toml((FLEET / "workers.yaml").read_text(encoding="utf-8"))
    # The secrets' mount point, redirected to files made here.
    for name in ("client-secret", "redis-password"):
        (tmp_path / name).write_text("value\n", encoding="utf-8")
    (tmp_path / "cache-key-1").write_text(base64.b64encode(os.urandom(32)).decode())
    text = text.replace("/var/run/secrets/pdsidecar/", f"{tmp_path}/")
    settings = settings_from_mapping(tomllib.loads(text), {})
    shared = settings.fleet
    assert shared is not None and shared.url.startswith("rediss://")
    assert shared.username == "pdsidecar" and shared.password is not None


def test_the_fleet_sidecar_arguments_parse_and_redis_is_tls_with_acl() -> None:
    workers = (FLEET / "workers.yaml").read_text(encoding="utf-8")
    args = re.findall(r"^\s+- (--[a-z-]+=\S+)$", workers, re.M)
    parsed = _parser().parse_args(["serve", *args])
    assert parsed.listen == ["unix:/run/pdsidecar/pdsidecar.sock"]
    assert kinds("redis.yaml") == ["Secret", "Deployment", "Service"]
    redis = (FLEET / "redis.yaml").read_text(encoding="utf-8")
    assert re.search(r'- --port\n\s+- "0"', redis), "no plaintext port"
    assert "--tls-port" in redis and "--aclfile" in redis
    assert "user default off" in redis
