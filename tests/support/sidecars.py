"""Sidecars for tests: demo settings, an in-process sidecar, ``pdsidecar serve`` processes.

Everything listens on loopback or on Unix sockets in the test's temporary folder.
A sidecar process's stderr (its JSON log lines) goes into the suite-wide log
sink when it stops, so the end-of-session secret scan reads it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.runtime.workers import WORKER_ENV
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenAddress, ListenerConfig, Policy, Settings
from tests.support import exercised
from tests.support.logsink import LogSink
from tests.support.waiting import eventually

# Long enough for the API token rule (16+ characters).
API_TOKEN = "ops-test-api-token-0123456789"
# Fast retries, so tests of failures do not wait.
TEST_POLICY = Policy(backoff_initial=0.01, backoff_max=0.05)


def demo_settings(
    url: str,
    policy: Policy = TEST_POLICY,
    *,
    connections: dict[str, ConnectionConfig] | None = None,
    **changes: Any,
) -> Settings:
    """The emulator's demo connection ``default`` (plus ``connections``), at ``url``."""
    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    return Settings(
        pipedream_url=url,
        connections={"default": demo, **(connections or {})},
        policy=policy,
        **changes,
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *listeners: ListenAddress | ListenerConfig, **options: Any
) -> AsyncIterator[Sidecar]:
    """A started in-process sidecar, stopped at exit."""
    sidecar = Sidecar(settings, listeners, **options)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop(grace=0)


def write_config(
    path: Path,
    url: str,
    connections: dict[str, str],
    extra: str = "",
    *,
    client_secret: str = DEMO_CLIENT_SECRET,
) -> Path:
    """A TOML config; ``connections`` maps names to client ids, all with one client secret
    (the demo one unless given)."""
    secret = path.parent / "client-secret"
    secret.write_text(client_secret + "\n", encoding="utf-8")
    lines = [f'pipedream_url = "{url}"', "", "[policy]", "backoff_initial = 0.01"]
    lines += ["backoff_max = 0.05", ""]
    for name, client_id in connections.items():
        lines += [f"[connections.{name}]", f'client_id = "{client_id}"']
        lines += [f'client_secret_file = "{secret}"', ""]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


class ServeProcess:
    """``pdsidecar serve`` in a child process, its stderr in a file."""

    def __init__(self, args: list[str], log_file: Path, env: dict[str, str] | None = None) -> None:
        exercised.argv(args)
        exercised.env(env or {})
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pdsidecar", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**os.environ, **(env or {})},
        )

    def lines(self) -> list[str]:
        return self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()

    def records(self, after: int = 0) -> list[dict[str, Any]]:
        """The JSON log records (grpc's C core may add plain lines of its own)."""
        return [json.loads(line) for line in self.lines()[after:] if line.startswith("{")]

    async def wait_for(self, pattern: str, timeout: float = 15.0, after: int = 0) -> str:
        """The first log message (from line ``after`` on) matching ``pattern``."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines()[after:]:
                    message = json.loads(line)["message"] if line.startswith("{") else line
                    found = regex.search(message)
                    if found:
                        return message[found.start() :]
                if self.proc.poll() is not None:
                    raise AssertionError(f"sidecar exited {self.proc.returncode}: {self.lines()}")
                await asyncio.sleep(0.05)

    async def bound(self) -> list[str]:
        message = await self.wait_for(r"pdsidecar listening on ")
        return message.removeprefix("pdsidecar listening on ").split(", ")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def workers(self) -> dict[int, int]:
        """``--workers`` children alive now: worker index -> pid (read from /proc)."""
        found: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # The parent pid is the second field after the parenthesised command name.
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                if ppid != self.proc.pid:
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile, or not ours to read
            for item in environ:
                name, _, value = item.partition(b"=")
                if name == WORKER_ENV.encode() and value.isdigit():
                    found[int(value)] = int(entry.name)
        return found

    async def wait(self, timeout: float = 20.0) -> int:
        await eventually(lambda: self.proc.poll() is not None, timeout)
        return self.proc.returncode

    def close(self, sink: LogSink) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        sink.lines.extend(self.lines())
