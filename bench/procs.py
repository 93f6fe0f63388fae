"""The benchmark's processes: the emulator and the sidecar, and what /proc says about them.

Every process started here is a child of the benchmark, started in its own session and
stopped by its own pid (SIGTERM, then SIGKILL after a grace period); nothing is looked up
by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.emulator_proc import BENCH_CLIENT_ID

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def all_cpus() -> str:
    return f"0-{(os.cpu_count() or 1) - 1}"


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` run on the given CPUs (``taskset -c``); None: on every CPU.

    Explicitly every CPU, because a child inherits its parent's affinity and the benchmark
    pins itself to the client CPUs.
    """
    return ["taskset", "-c", cpus or all_cpus(), *command]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, each once."""
    seen, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo.extend(_children(current))
    return seen


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


@dataclass
class Usage:
    rss_bytes: int
    fds: int
    cpu_seconds: float
    processes: int


def usage(pid: int) -> Usage:
    """RSS, open descriptors and CPU time of the Python processes in ``pid``'s tree.

    A ``taskset`` wrapper execs into its command, so the tree's Python processes are the
    sidecar (and its workers, if any).
    """
    rss = fds = 0
    cpu = 0.0
    count = 0
    for proc in process_tree(pid):
        if not _is_python(proc):
            continue
        try:
            statm = Path(f"/proc/{proc}/statm").read_text().split()
            stat = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            fds += len(os.listdir(f"/proc/{proc}/fd"))
        except OSError:
            continue
        rss += int(statm[1]) * PAGE
        # Fields 14 and 15 (utime, stime), counted after the ")" that ends comm.
        cpu += (int(stat[11]) + int(stat[12])) / CLK_TCK
        count += 1
    return Usage(rss, fds, cpu, count)


class Child:
    """A process of ours, in its own session, with its output in a log file."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self._log_handle = log.open("wb")  # this run's output only
        self.proc = subprocess.Popen(
            command,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                # Our own process group only (start_new_session made it).
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_handle.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class EmulatorProcess:
    child: Child
    url: str
    ids: list[str]
    tokens: dict[str, str] = field(repr=False)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_emulator/stats")
        return result

    def reset_stats(self) -> None:
        self.control("POST", "/_emulator/stats/reset", {})

    def stop(self) -> None:
        self.child.stop()


def start_emulator(
    tmp: Path, *, accounts: int, latency: float, env: dict[str, str], cpus: str | None
) -> EmulatorProcess:
    port_file = tmp / "emulator.port"
    accounts_file = tmp / "emulator.accounts.json"
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.emulator_proc",
        "--port-file",
        str(port_file),
        "--accounts-file",
        str(accounts_file),
        "--accounts",
        str(accounts),
        "--latency",
        str(latency),
    ]
    child = Child("emulator", pinned(command, cpus), tmp / "emulator.log", env)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if not child.alive() or time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"the emulator did not start:\n{child.tail()}")
        time.sleep(0.05)
    data = json.loads(accounts_file.read_text())
    return EmulatorProcess(child, data["url"], data["ids"], data["tokens"])


def write_config(path: Path, url: str, secret_env: str, policy: dict[str, Any]) -> Path:
    lines = [f'pipedream_url = "{url}"', "", "[policy]"]
    for key, value in policy.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += [
        "",
        "[connections.default]",
        f'client_id = "{BENCH_CLIENT_ID}"',
        f'client_secret_env = "{secret_env}"',
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def serve_supports(flag: str) -> bool:
    """Whether ``pdsidecar serve`` knows ``flag`` (for options still being added)."""
    out = subprocess.run(
        [sys.executable, "-m", "pdsidecar", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return flag in out.stdout


class SidecarProcess:
    def __init__(
        self,
        tmp: Path,
        name: str,
        config: Path,
        env: dict[str, str],
        *,
        workers: int = 1,
        cpus: str | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "pdsidecar",
            "serve",
            "--listen",
            self.target,
            "--config",
            str(config),
            "--log-level",
            "warning",
            "--grace",
            "1",
        ]
        if workers > 1:
            command += ["--workers", str(workers)]
        self.workers = workers
        self.pinned = cpus is not None
        self.child = Child(name, pinned(command, cpus), tmp / f"{name}.log", env)
        self.wait_ready()

    @property
    def pid(self) -> int:
        return self.child.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every worker answers health checks (new connections spread over workers)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive():
                raise RuntimeError(f"the sidecar exited:\n{self.child.tail()}")
            # With --workers the parent serves nothing and starts N workers.
            if self._serving() and (
                self.workers == 1 or usage(self.pid).processes >= self.workers + 1
            ):
                if self.workers > 1:
                    time.sleep(1.0)  # the last worker may still be binding its port
                return
            if time.monotonic() > deadline:
                self.child.stop()
                raise RuntimeError(f"the sidecar did not become ready:\n{self.child.tail()}")
            time.sleep(0.1)

    def _serving(self) -> bool:
        try:
            with grpc.insecure_channel(self.target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def usage(self) -> Usage:
        return usage(self.pid)

    def stop(self) -> int | None:
        return self.child.stop(grace=10.0)
