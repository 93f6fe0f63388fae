"""The Dockerfile and the Kubernetes example use switches pdsidecar really has.

(``scripts/check_deploy.sh`` lints them, runs the image's install script and
validates the manifests against the Kubernetes schemas; this keeps their
command lines in step with the CLI on every test run.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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
