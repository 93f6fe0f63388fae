"""The Kubernetes Deployment runs the example pod's spec, with no service account token."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy/kubernetes"


def test_the_deployment_runs_the_pod_spec_without_a_service_account_token() -> None:
    pod = (FOLDER / "pod.yaml").read_text(encoding="utf-8")
    deployment = (FOLDER / "deployment.yaml").read_text(encoding="utf-8")
    assert re.search(r"^kind: Deployment$", deployment, re.M)
    template = deployment.split("\n  template:\n", 1)[1].split("\n    spec:\n", 1)[1]
    assert re.search(r"^      automountServiceAccountToken: false$", template, re.M)
    spec = "".join(line[4:] if line.strip() else line for line in template.splitlines(True))
    assert spec == pod.split("\nspec:\n", 1)[1], "deployment.yaml's pod spec differs from pod.yaml"


def test_the_kubernetes_readme_reloads_without_a_kill_binary() -> None:
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    assert "-- pdsidecar reload" in readme
    assert "kill -HUP" not in readme
    assert "deployment.yaml" in readme
