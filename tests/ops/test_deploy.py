"""The Dockerfile and the Kubernetes example use switches pdsidecar really has.

(``scripts/check_deploy.sh`` lints them, runs the image's install script and
validates the manifests against the Kubernetes schemas; this keeps their
command lines in step with the CLI on every test run.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pdsidecar.cli import _parser

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_json(instruction: str) -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.search(rf"^{instruction}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", text, re.M)
    assert found, f"no {instruction} in exec form"
    value: list[str] = json.loads(found.group(1))
    return value


def test_dockerfile_runs_serve_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r"^FROM .* AS build$", text, re.M), "multi-stage"
    assert dockerfile_json("HEALTHCHECK") == ["pdsidecar", "health"]
    entrypoint, command = dockerfile_json("ENTRYPOINT"), dockerfile_json("CMD")
    assert entrypoint == ["pdsidecar", "serve"]
    args = _parser().parse_args([*entrypoint[1:], *command])
    assert args.listen == ["unix:/run/pdsidecar/pdsidecar.sock"]
    assert args.socket_mode == 0o660
    assert "PDSIDECAR_TARGET=unix:/run/pdsidecar/pdsidecar.sock" in text


def test_kubernetes_sidecar_arguments_parse() -> None:
    pod = (ROOT / "deploy/kubernetes/pod.yaml").read_text(encoding="utf-8")
    args = re.findall(r"^\s+- (--[a-z-]+=\S+)$", pod, re.M)
    assert len(args) >= 5
    parsed = _parser().parse_args(["serve", *args])
    assert parsed.listen == ["unix:/run/pdsidecar/pdsidecar.sock"]
    assert parsed.health_listen == ["0.0.0.0:8081"]
    assert "restartPolicy: Always" in pod, "a native sidecar"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert re.search(rf"{probe}:\n\s+grpc:\n\s+port: 8081", pod), probe
    config = (ROOT / "deploy/kubernetes/configmap.yaml").read_text(encoding="utf-8")
    assert "client_secret_file" in config


def _container(pod: str, name: str) -> str:
    """One container's block of a manifest (up to the next item at its indent, or the end)."""
    found = re.search(rf"^( +)- name: {name}\n(.*?)(?=^\1- name: |\Z)", pod, re.M | re.S)
    assert found, name
    return found.group(2)


# The example pod and the fleet's Deployment, with the config each reads.
EXAMPLES = [
    ("deploy/kubernetes/pod.yaml", "deploy/kubernetes/configmap.yaml"),
    ("deploy/kubernetes/fleet/workers.yaml", "deploy/kubernetes/fleet/workers.yaml"),
]


@pytest.mark.parametrize("manifest", [m for m, _ in EXAMPLES])
def test_kubernetes_pod_keeps_the_worker_and_the_world_away_from_the_sidecar(
    manifest: str,
) -> None:
    pod = (ROOT / manifest).read_text(encoding="utf-8")
    sidecar, worker = _container(pod, "pdsidecar"), _container(pod, "sync-worker")
    uid = re.compile(r"runAsUser: (\d+)")
    assert uid.findall(sidecar) == ["10001"] and uid.findall(worker) == ["10002"]
    assert len(uid.findall(pod)) == 2, "no pod-wide user: each container has its own"
    assert re.search(r"^ +automountServiceAccountToken: false$", pod, re.M)
    assert re.search(r"^ +fsGroup: 10001$", pod, re.M), "the worker reaches the 0660 socket"
    mount = re.search(r"- name: pdsidecar-socket\n\s+mountPath: \S+\n\s+readOnly: true", worker)
    assert mount, "the worker cannot replace the socket"
    args = re.findall(r"^\s+- (--[a-z-]+=\S+)$", sidecar, re.M)
    parsed = _parser().parse_args(["serve", *args])
    assert parsed.metrics_listen.startswith("127.0.0.1:"), "metrics on the pod's loopback"
    assert "prometheus.io/scrape" not in pod


@pytest.mark.parametrize("manifest,config_file", EXAMPLES)
def test_kubernetes_memory_limit_fits_the_configured_cache(manifest: str, config_file: str) -> None:
    """The limit covers the benchmarks' measured costs for what the config allows."""
    from pdsidecar.runtime.sidecar import MAX_REQUEST_BYTES
    from pdsidecar.settings import Policy

    pod = (ROOT / manifest).read_text(encoding="utf-8")
    config = (ROOT / config_file).read_text(encoding="utf-8")
    entries = int(re.search(r"cache_max_entries = (\d+)", config).group(1))  # type: ignore[union-attr]
    watchers = int(re.search(r"max_watchers = (\d+)", config).group(1))  # type: ignore[union-attr]
    limit = re.search(r"limits:\n\s+memory: (\d+)Mi", _container(pod, "pdsidecar"))
    assert limit
    latest = (ROOT / "bench/results/latest.md").read_text(encoding="utf-8")
    growth = re.search(r"RSS growth for 10,?000 cached accounts[^|]*\|\s*([\d.]+) MB", latest)
    assert growth, "the benchmark's measured cost per account"
    watch = (ROOT / "bench/results/watch.md").read_text(encoding="utf-8")
    per_watcher = re.search(r"memory per idle watcher[^|]*\|\s*([\d.]+) KB", watch)
    assert per_watcher, "the watch benchmark's measured cost per watcher"
    at_rest = 75e6
    needed = at_rest + entries * float(growth.group(1)) * 1e6 / 10_000
    needed += watchers * float(per_watcher.group(1)) * 1e3
    needed += (Policy().max_concurrent_rpcs + watchers) * MAX_REQUEST_BYTES  # in flight
    assert int(limit.group(1)) * 2**20 >= needed
