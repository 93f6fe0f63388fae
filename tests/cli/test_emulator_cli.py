"""``pdsidecar emulator`` prints a ``pdsidecar serve`` line that works as pasted."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

from pdsidecar_emulator import DEMO_CLIENT_SECRET, DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from harness.ports import free_port
from pdsidecar_client import CredentialsClient


def read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"exited early: {lines}"
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {lines}")


def test_the_printed_serve_line_starts_a_sidecar_on_the_emulator() -> None:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pdsidecar", "emulator", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    sidecar = None
    try:
        lines = read_until(emulator, " pdsidecar serve")
        text = "\n".join(lines)
        assert DEMO_CLIENT_SECRET in text  # the value, not a Python name
        assert "pdsidecar_emulator." not in text
        line = lines[-1].strip()
        assert line.endswith(" pdsidecar serve")
        target = f"127.0.0.1:{free_port()}"
        # As pasted, with the command spelled for this interpreter and a free port.
        python = f"{shlex.quote(sys.executable)} -m pdsidecar serve --listen {target}"
        command = line.removesuffix("pdsidecar serve") + python
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEDREAM_")}
        sidecar = subprocess.Popen(
            ["bash", "-c", command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # bash and the sidecar, stopped together below
        )
        with CredentialsClient(target, timeout=20) as client:
            answer = client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        assert answer.credentials["access_token"].startswith("ntn_demo_")
    finally:
        if sidecar is not None:
            os.killpg(sidecar.pid, signal.SIGTERM)
            sidecar.wait(timeout=20)
        emulator.terminate()
        emulator.wait(timeout=20)


def test_the_old_host_and_port_flags_still_work() -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pdsidecar", "emulator", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}" in read_until(emulator, "Pipedream API on")[-1]
    finally:
        emulator.terminate()
        emulator.wait(timeout=20)
