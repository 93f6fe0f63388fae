"""Child processes of ours, and what /proc says about them.

Every process started here runs in its own session and is stopped by its own pid
(SIGTERM, then SIGKILL to its process group after a grace period); nothing is looked up
by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def all_cpus() -> str:
    return f"0-{(os.cpu_count() or 1) - 1}"


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` run on the given CPUs (``taskset -c``); None: as it is."""
    return command if cpus is None else ["taskset", "-c", cpus, *command]


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
    """A process of ours, in its own session, with its output in a log file.

    Its stderr always goes to ``log``; its stdout too, unless ``stdout_to_log`` is off
    (then it is dropped: a JSON log on stderr stays one record a line).
    """

    def __init__(
        self,
        command: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        stdout_to_log: bool = True,
    ) -> None:
        self.log = log
        self._log_handle = log.open("wb")  # this run's output only
        self.proc = subprocess.Popen(
            command,
            stdout=self._log_handle if stdout_to_log else subprocess.DEVNULL,
            stderr=self._log_handle,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM; after ``grace`` seconds SIGKILL to its process group. The exit code."""
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

    def lines(self) -> list[str]:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.lines()[-lines:])
