"""The operating guide's ``docker run`` is complete: the config it mounts loads, and reads a client
secret from a file the same command mounts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pdsidecar.config.load import load_settings

ROOT = Path(__file__).resolve().parents[2]


def docker_section() -> str:
    text = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    found = re.search(r"^## Docker\n(.*?)(?=^## )", text, re.S | re.M)
    assert found, "docs/operating.md lost its Docker section"
    return found.group(1)


def test_the_docker_run_mounts_a_config_that_loads_and_its_secret(tmp_path: Path) -> None:
    section = docker_section()
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    assert toml and shell
    words = shlex.split(shell.group(1).replace("\\\n", " "), comments=True)
    mounts = [words[i + 1] for i, word in enumerate(words) if word == "-v"]
    targets = {mount.split(":")[1]: mount.split(":")[0] for mount in mounts}
    assert "/etc/pdsidecar/pdsidecar.toml" in targets, "the image reads this path"
    secret_path = re.search(r'client_secret_file = "([^"]+)"', toml.group(1))
    assert secret_path and secret_path.group(1) in targets, "the secret file is not mounted"
    # The config as the container sees it, with the mounted secret in place.
    secret = tmp_path / "pipedream-secret"
    secret.write_text("a-client-secret\n", encoding="utf-8")
    config = tmp_path / "pdsidecar.toml"
    config.write_text(toml.group(1).replace(secret_path.group(1), str(secret)), encoding="utf-8")
    settings = load_settings(config, env={})
    assert settings.connections["default"].client_secret.reveal() == "a-client-secret"
