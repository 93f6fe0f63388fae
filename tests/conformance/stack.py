"""What the drivers run against: the emulator and four sidecars, as processes.

``plain`` (loopback TCP and a Unix socket), ``tls``, ``secure`` (client certificates
required on TCP, an API token on TCP and on its Unix socket) and ``restart`` (killed
and started again while drivers hold credentials from it). Each is ``pdsidecar serve``
with a config pointing at the emulator (tests/support/sidecars.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdsidecar_emulator import DEMO_CLIENT_ID

from tests.support import exercised
from tests.support.certs import Certs
from tests.support.logsink import LogSink
from tests.support.sidecars import API_TOKEN, ServeProcess, write_config
from tests.support.waiting import free_port

SIDECARS = ("plain", "tls", "secure", "restart")
START_TIMEOUT = 60.0  # four sidecars starting at once on a busy 2-core machine


def _until(ready: Callable[[], bool], alive: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT:g} s")


def _listening(process: ServeProcess, after: int) -> bool:
    return any("pdsidecar listening on" in line for line in process.lines()[after:])


# ``pdsidecar serve`` with its imports done, waiting for a line on stdin to start: a
# restart's gap is then the sidecar's own start, not Python importing on a busy machine.
_STANDBY = (
    "import sys; import pdsidecar.cli, pdsidecar.commands.serve, pdsidecar.runtime.sidecar; "
    "sys.stdin.readline(); sys.exit(pdsidecar.cli.main(sys.argv[1:]))"
)


class StandbyServe(ServeProcess):
    def __init__(self, args: list[str], log_file: Path, env: dict[str, str]) -> None:
        exercised.argv(args)
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _STANDBY, "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**os.environ, **env},
        )

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()


@dataclass
class Sidecar:
    name: str
    target: str
    args: list[str]
    env: dict[str, str]
    logs: Path
    process: ServeProcess | None = None
    standbys: list[StandbyServe] = field(default_factory=list)  # the next ones, for restart()
    starts: int = 0

    def _log(self) -> Path:
        self.starts += 1
        return self.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.process = ServeProcess(self.args, self._log(), self.env)

    def prepare_restart(self) -> None:
        self.standbys.append(StandbyServe(self.args, self._log(), self.env))

    def wait_ready(self) -> None:
        process = self.process
        assert process is not None
        _until(
            lambda: _listening(process, 0),
            lambda: process.proc.poll() is None,
            f"the {self.name} sidecar ({process.log_file})",
        )


@dataclass
class Stack:
    emulator_url: str
    sidecars: dict[str, Sidecar]
    certs: Certs
    sockets: Path
    down_target: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")  # nothing there
    list_ids: list[str] = field(default_factory=list)
    _emulator: subprocess.Popen[bytes] | None = None
    _stopped: list[ServeProcess] = field(default_factory=list)

    def target(self, name: str) -> str:
        return self.sidecars[name].target

    def unix_target(self, name: str) -> str:
        return f"unix:{self.sockets}/{name}.sock"

    def control(self, method: str, path: str, body: object | None = None) -> Any:
        """The emulator's /_emulator/ control routes (JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}", data=data, method=method
        )
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def restart(self, name: str, meanwhile: Callable[[], None]) -> None:
        """SIGKILL the sidecar (no goodbye to its streams), do ``meanwhile``, start it
        again, and wait until it listens."""
        sidecar = self.sidecars[name]
        assert sidecar.process is not None and sidecar.standbys
        sidecar.process.proc.send_signal(signal.SIGKILL)
        sidecar.process.proc.wait()
        self._stopped.append(sidecar.process)
        meanwhile()
        standby = sidecar.standbys.pop(0)
        standby.go()
        sidecar.process = standby
        sidecar.prepare_restart()  # another imports meanwhile, for a later restart
        sidecar.wait_ready()

    def close(self, sink: LogSink) -> None:
        for sidecar in self.sidecars.values():
            if sidecar.process is not None:
                sidecar.process.close(sink)
        standbys = [standby for s in self.sidecars.values() for standby in s.standbys]
        for process in [*self._stopped, *standbys]:
            process.close(sink)
        if self._emulator is not None:
            self._emulator.terminate()
            try:
                self._emulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._emulator.kill()
                self._emulator.wait()


def _emulator_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=1):
            return True
    except OSError:
        return False


def start_stack(
    folder: Path, sockets: Path, certs: Certs, names: tuple[str, ...] = SIDECARS
) -> Stack:
    """The emulator, then the sidecars ``names`` started together; returns once all listen."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "emulator.log").open("wb")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pdsidecar", "emulator", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    config = write_config(folder / "sidecar.toml", url, {"default": DEMO_CLIENT_ID})
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    # mTLS on TCP; its Unix socket (plaintext: TLS is for TCP) still wants the API token.
    secure = [*tls, "--tls-client-ca", str(certs.ca), "--listen", f"unix:{sockets}/secure.sock"]
    plans: dict[str, tuple[list[str], dict[str, str]]] = {
        "plain": (["--listen", f"unix:{sockets}/plain.sock"], {}),
        "tls": (tls, {}),
        "secure": (secure, {"PDSIDECAR_API_TOKEN": API_TOKEN}),
        "restart": ([], {}),
    }
    sidecars: dict[str, Sidecar] = {}
    for name in names:
        extra, env = plans[name]
        target = f"127.0.0.1:{free_port()}"
        args = ["--config", str(config), "--listen", target, "--grace", "0", *extra]
        sidecars[name] = Sidecar(name, target, args, env, folder)
    stack = Stack(url, sidecars, certs, sockets, _emulator=emulator)
    try:
        _until(lambda: _emulator_up(url), lambda: emulator.poll() is None, "the emulator")
        for sidecar in sidecars.values():
            sidecar.start()
        if "restart" in sidecars:  # two warm: restarts may come a few seconds apart
            sidecars["restart"].prepare_restart()
            sidecars["restart"].prepare_restart()
        for sidecar in sidecars.values():
            sidecar.wait_ready()
    except BaseException:
        stack.close(LogSink())
        raise
    return stack
