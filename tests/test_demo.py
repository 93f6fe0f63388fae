"""The README's first command: `pdsidecar serve --emulator` answers the call it prints."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.ports import free_port
from tests.support.certs import Certs
from tests.support.ci import missing
from tests.support.sidecars import API_TOKEN


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    if not Path(found).exists():
        missing("grpcurl is not installed (scripts/bootstrap.sh installs it)")
    return found


def test_demo_prints_a_grpcurl_call_that_returns_the_notion_token() -> None:
    grpcurl = _grpcurl()
    target = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-m", "pdsidecar", "serve", "--emulator", "--listen", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if line.strip().startswith("grpcurl "):
                break
            assert line, "the sidecar exited before printing how to call it"
        command = shlex.split(line.strip())
        command[0] = grpcurl
        answer = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        credentials = json.loads(answer.stdout)["credentials"]
        assert credentials["access_token"].startswith("ntn_demo_")
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0


class Banner:
    """``pdsidecar serve --emulator ARGS`` and what it printed once it listened."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "pdsidecar", "serve", "--emulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.server.stdout is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.server.stdout.readline()
            assert line, f"the sidecar exited before printing how to call it: {self.lines}"
            self.lines.append(line.rstrip("\n"))
            if "print(response.credentials" in line:
                break

    def grpcurl(self) -> str:
        return next(line.strip() for line in self.lines if line.strip().startswith("grpcurl "))

    def python(self) -> str:
        start = next(i for i, line in enumerate(self.lines) if "from pdsidecar_client" in line)
        if "import os" in self.lines[start - 1]:
            start -= 1
        return "\n".join(line.removeprefix("  ") for line in self.lines[start:])

    def close(self) -> None:
        self.server.terminate()
        assert self.server.wait(timeout=20) == 0


def run_printed(banner: Banner, replace: dict[str, str], env: dict[str, str]) -> None:
    """Runs the banner's grpcurl line (in a shell, as a reader pastes it) and its Python."""
    command = banner.grpcurl().replace("grpcurl ", shlex.quote(_grpcurl()) + " ", 1)
    code = banner.python()
    for placeholder, value in replace.items():
        command, code = command.replace(placeholder, value), code.replace(placeholder, value)
    environment = {**os.environ, **env}
    answer = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=30, env=environment
    )
    assert answer.returncode == 0, (command, answer.stderr)
    credentials = json.loads(answer.stdout)["credentials"]
    assert credentials["access_token"].startswith("ntn_demo_")
    printed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=environment
    )
    assert printed.returncode == 0, (code, printed.stderr)
    assert printed.stdout.strip() == credentials["access_token"]


def test_the_banner_over_tls_names_the_ca_and_its_calls_work(certs: Certs) -> None:
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    banner = Banner("--listen", "0.0.0.0:0", *tls)
    try:
        assert "-plaintext" not in banner.grpcurl()
        assert "0.0.0.0" not in "\n".join(banner.lines)  # dialled on loopback
        assert f"-cacert {certs.ca}" in banner.grpcurl(), "the real CA, not a placeholder"
        run_printed(banner, {}, {})
    finally:
        banner.close()


def test_the_banner_with_mutual_tls_and_an_api_token(certs: Certs) -> None:
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    tls += ["--tls-client-ca", str(certs.ca)]
    env = {"PDSIDECAR_API_TOKEN": API_TOKEN}
    banner = Banner("--listen", f"127.0.0.1:{free_port()}", *tls, env=env)
    try:
        assert API_TOKEN not in "\n".join(banner.lines)
        assert f"-cert {certs.client_cert} -key {certs.client_key}" in banner.grpcurl()
        run_printed(banner, {}, env)
    finally:
        banner.close()


def test_the_banner_on_a_unix_socket_shows_the_emulators_counts_and_a_rotation(
    sockdir: Path,
) -> None:
    if shutil.which("curl") is None:
        missing("curl is not installed")
    banner = Banner("--listen", f"unix:{sockdir}/pd.sock")
    try:
        assert " -unix " in banner.grpcurl()
        curls = [line.split("#")[0].strip() for line in banner.lines if "curl -s" in line]
        stats, rotate = (shlex.split(c) for c in curls)
        before = json.loads(subprocess.check_output(stats, timeout=30))
        rotated = json.loads(subprocess.check_output(rotate, timeout=30))["access_token"]
        run_printed(banner, {}, {})  # the next call reads the rotated token
        after = json.loads(subprocess.check_output(stats, timeout=30))
        assert after["requests"]["account"] == before["requests"]["account"] + 1
        assert rotated.startswith("ntn_demo_")
    finally:
        banner.close()


def test_dev_certs_writes_the_files_the_tls_guide_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pdsidecar.cli import main

    assert main(["dev-certs", str(tmp_path / "certs")]) == 0
    names = {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"}
    assert {p.name for p in (tmp_path / "certs").iterdir()} == names
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert (tmp_path / "certs" / key).stat().st_mode & 0o777 == 0o600
    assert "--tls-client-ca" in capsys.readouterr().err
