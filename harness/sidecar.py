"""``pdsidecar serve`` processes.

:class:`ServeProcess` runs ``pdsidecar serve`` with any arguments and reads its JSON log
(stderr); :class:`SidecarProcess` is one listening on a loopback port with a config
file, started and waited for until every worker answers health checks.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.ports import free_port
from harness.processes import Child, Usage, pinned, usage
from pdsidecar.runtime.workers import WORKER_ENV


class ServeProcess(Child):
    """``pdsidecar serve ARGS`` in a child process, its stderr (JSON lines) in ``log``."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        cpus: str | None = None,
    ) -> None:
        self.args = list(args)
        command = [sys.executable, "-m", "pdsidecar", "serve", *self.args]
        super().__init__(pinned(command, cpus), log, env, stdout_to_log=False)

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

    async def wait(self, timeout: float = 20.0) -> int:
        """Until the process exits; its exit code."""
        return await asyncio.to_thread(self.proc.wait, timeout)

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

    def usage(self) -> Usage:
        return usage(self.pid)


def serving(target: str, timeout: float = 1.0) -> bool:
    """Whether the sidecar at ``target`` answers a health check with SERVING."""
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class SidecarProcess(ServeProcess):
    """A sidecar on a loopback port (free unless given) with ``config``, SERVING on return.

    With ``workers`` > 1 the parent serves nothing and starts that many workers; it is
    ready when every worker is up.
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
        workers: int = 1,
        cpus: str | None = None,
        log_level: str = "warning",
        grace: float = 1.0,
        ready_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.workers_wanted = workers
        self.cpus = cpus
        args = ["--listen", self.target, "--config", str(config)]
        args += ["--log-level", log_level, "--grace", str(grace)]
        if workers > 1:
            args += ["--workers", str(workers)]
        super().__init__(args, log, env, cpus=cpus)
        self.wait_serving(ready_timeout)

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Until every worker answers health checks (new connections spread over workers)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"the sidecar exited:\n{self.tail()}")
            if serving(self.target) and (
                self.workers_wanted == 1 or usage(self.pid).processes >= self.workers_wanted + 1
            ):
                if self.workers_wanted > 1:
                    time.sleep(1.0)  # the last worker may still be binding its port
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sidecar did not become ready:\n{self.tail()}")
            time.sleep(0.05)
