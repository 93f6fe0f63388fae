"""``pdsidecar reload``: tells a running ``pdsidecar serve`` to re-read its config (SIGHUP).

For a container without a ``kill`` binary: ``kubectl exec POD -c pdsidecar --
pdsidecar reload``. It finds the serving process in ``/proc`` (the command line
``... pdsidecar serve ...``, run by this user), so it needs nothing in the image but
pdsidecar itself. With ``--workers`` it signals the supervising process, which passes
the signal on. ``--config FILE`` picks the sidecar serving that file when several run;
``--pid`` names the process outright (and is the way on systems without ``/proc``): it must
be a ``pdsidecar serve`` (of ``--config FILE`` too, when given), and the command line it
signals is printed.

Exit codes: 0 signalled, 1 no such sidecar (or several, or not allowed), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

PROG: Final = "pdsidecar reload"
PROC: Final = Path("/proc")


@dataclass(frozen=True)
class Server:
    pid: int
    ppid: int
    argv: tuple[str, ...]
    cwd: str

    @property
    def config(self) -> str | None:
        """The ``--config`` file it serves, as an absolute path."""
        for index, arg in enumerate(self.argv):
            value = None
            if arg == "--config" and index + 1 < len(self.argv):
                value = self.argv[index + 1]
            elif arg.startswith("--config="):
                value = arg.removeprefix("--config=")
            if value is not None:
                return os.path.normpath(os.path.join(self.cwd, value))
        return None

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.argv)})"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reload",
        help="make a running sidecar re-read its config and secret files (SIGHUP)",
        description=(
            "Send SIGHUP to a running 'pdsidecar serve' of this user, found by its command "
            "line in /proc: it re-reads the config file and the secret files, and logs what "
            "changed (or why the new config was refused, keeping the old one). Needs no "
            "'kill' binary, so it works in a slim image: kubectl exec POD -c pdsidecar -- "
            "pdsidecar reload."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the sidecar serving this config file, when several run (default: the only one)",
    )
    parser.add_argument(
        "--pid", type=int, help="signal this process instead of searching (default: search)"
    )
    parser.set_defaults(run=run)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None  # gone, or another user's


def is_serve(argv: tuple[str, ...]) -> bool:
    """``pdsidecar serve ...`` run as a console script or ``python -m pdsidecar``."""
    for index, arg in enumerate(argv[:-1]):
        named = (
            (index == 0 and os.path.basename(arg) == "pdsidecar")
            # A console script run by its shebang: the interpreter, then the script's path.
            or (index == 1 and "/" in arg and os.path.basename(arg) == "pdsidecar")
            or (arg == "pdsidecar" and index > 0 and argv[index - 1] == "-m")
        )
        if named and argv[index + 1] == "serve":
            return True
    return False


def read_process(entry: Path) -> Server | None:
    """The process ``/proc/PID`` describes (any command), or None when it cannot be read."""
    cmdline, stat = _read(entry / "cmdline"), _read(entry / "stat")
    if not cmdline or not stat:
        return None
    argv = tuple(part.decode(errors="replace") for part in cmdline.rstrip(b"\0").split(b"\0"))
    # stat: "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
    ppid = int(stat.rpartition(b")")[2].split()[1])
    try:
        cwd = os.readlink(entry / "cwd")
    except OSError:
        cwd = "/"
    return Server(int(entry.name), ppid, argv, cwd)


def find_servers(proc: Path = PROC, uid: int | None = None) -> list[Server]:
    """Every ``pdsidecar serve`` process of ``uid`` (default: this user), workers left out."""
    uid = os.getuid() if uid is None else uid
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        server = read_process(entry)
        if server is not None and is_serve(server.argv):
            found.append(server)
    pids = {server.pid for server in found}
    # A worker of --workers: its parent, also found, forwards the signal to it.
    return sorted((s for s in found if s.ppid not in pids), key=lambda s: s.pid)


def choose(servers: list[Server], config: Path | None) -> Server | str:
    """The one server to signal, or why there is none."""
    if config is not None:
        wanted = os.path.abspath(config)
        servers = [s for s in servers if s.config == wanted]
        if not servers:
            return f"no 'pdsidecar serve --config {wanted}' of this user is running"
    if not servers:
        return "no 'pdsidecar serve' of this user is running (or pass --pid)"
    if len(servers) > 1:
        listed = "; ".join(s.describe() for s in servers)
        return f"several sidecars run: {listed}. Pick one with --config FILE or --pid PID"
    return servers[0]


def check_pid(pid: int, config: Path | None, proc: Path = PROC) -> Server | str | None:
    """The server ``--pid`` names, or why it must not be signalled; None when /proc cannot
    tell (no /proc, or another user's process: the signal then decides)."""
    server = read_process(proc / str(pid))
    if server is None:
        return None
    if not is_serve(server.argv):
        # SIGHUP ends most other programs: do not send it to one by mistake.
        return f"pid {pid} is not a 'pdsidecar serve': {' '.join(server.argv)}"
    if config is not None and server.config != os.path.abspath(config):
        serves = f"--config {server.config}" if server.config else "no --config file"
        return f"pid {pid} serves {serves}, not --config {os.path.abspath(config)}"
    return server


async def run(args: argparse.Namespace) -> int:
    if args.pid is not None:
        checked = check_pid(args.pid, args.config)
        if isinstance(checked, str):
            print(f"{PROG}: {checked}", file=sys.stderr)
            return 1
        pid = args.pid
        where = checked.describe() if checked else f"pid {pid} (its command line is unreadable)"
    elif not PROC.is_dir():
        print(f"{PROG}: no /proc here to find the sidecar in: pass --pid", file=sys.stderr)
        return 2
    else:
        target = choose(find_servers(), args.config)
        if isinstance(target, str):
            print(f"{PROG}: {target}", file=sys.stderr)
            return 1
        pid, where = target.pid, target.describe()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"{PROG}: no process {pid}", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"{PROG}: not allowed to signal {where}", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to {where}; its log says what the reload changed", file=sys.stderr)
    return 0
