"""A real ``redis-server`` for tests and benchmarks: Unix socket, ACL password, no disk.

``redis-server`` comes from Debian's package; when it is missing, :func:`redis_binary`
installs it (``apt-get update && apt-get install -y redis-server``: CI runs as root
on a fresh machine), or raises :class:`RedisMissing` (the test fixtures skip on it,
unless ``CI=true``, where they fail instead).

Each server lives in its own short temporary folder, listens only on a Unix socket
(and, for cluster nodes, a loopback port), refuses the ``default`` user and lets in
one ACL user with a password, plus an ``admin`` user for the caller's own looks. When
the servers stop, every key and value in them can be dumped into a list (the tests'
log sink, so the end-of-session secret scan also proves that no credential ever sat in
Redis in the clear).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import redis

from harness.ports import free_port_pair

USER = "pdsidecar"
PASSWORD = "redis-test-password-7f3a"
# The sidecar's user may run only what the README's ACL allows (any key, any channel here:
# tests use several namespaces); the tests look around as "admin".
SIDECAR_COMMANDS = (
    "-@all +@connection +get +set +del +eval +evalsha +pexpire +publish +subscribe "
    "+unsubscribe +ping +cluster|slots +cluster|shards +command"
)

ADMIN, ADMIN_PASSWORD = "admin", "redis-admin-password-2b9c"


class TlsFiles(Protocol):
    """The server side of a test CA (``tests.support.certs.Certs`` is one)."""

    ca: Path
    server_cert: Path
    server_key: Path


class RedisMissing(RuntimeError):
    """``redis-server`` is not on this machine and cannot be installed."""


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env, timeout=300
        )
        found = shutil.which("redis-server")
        if found:
            return found
    raise RedisMissing(
        "redis-server is not installed and cannot be installed here (apt-get install redis-server)"
    )


class RedisServer:
    """One redis-server process; ``kill`` and ``start`` again give an empty one."""

    def __init__(
        self, folder: Path, port: int = 0, cluster: bool = False, tls: TlsFiles | None = None
    ) -> None:
        self.folder = folder
        self.port = port
        self.cluster = cluster
        # With certificates: TLS only on the TCP port (the Unix socket stays for the tests).
        self.tls = tls
        self.socket = folder / "redis.sock"
        self.password_file = folder / "redis-password"
        self.password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"unix://{self.socket}" if not self.port else f"redis://127.0.0.1:{self.port}"

    def config_toml(self, key_files: list[Path], **extra: Any) -> str:
        """A ``[fleet]`` table for this server."""
        lines = [
            "[fleet]",
            f'url = "{self.url}"',
            f'username = "{USER}"',
            f'password_file = "{self.password_file}"',
            "key_files = [" + ", ".join(f'"{p}"' for p in key_files) + "]",
        ]
        for name, value in extra.items():
            text = str(value).lower() if isinstance(value, bool) else repr(value)
            lines.append(f"{name} = {text.replace(chr(39), chr(34))}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.folder / "redis.conf"
        tls = []
        if self.tls is not None:
            tls = [
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.server_cert}",
                f"tls-key-file {self.tls.server_key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients no",
            ]
        lines = [
            *tls,
            f"port {0 if self.tls is not None else self.port}",
            "bind 127.0.0.1",
            f"unixsocket {self.socket}",
            "unixsocketperm 700",
            f"dir {self.folder}",
            'save ""',
            "appendonly no",
            "user default off",
            f"user {USER} on >{PASSWORD} ~* &* {SIDECAR_COMMANDS}",
            f"user {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all",
        ]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {self.folder / 'nodes.conf'}",
                "cluster-node-timeout 2000",
                f"masteruser {ADMIN}",
                f"masterauth {ADMIN_PASSWORD}",
            ]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen([redis_binary(), str(conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def client(self) -> redis.Redis:
        """A client for the test's own looks (the admin user)."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            username=ADMIN,
            password=ADMIN_PASSWORD,
            socket_timeout=2,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def dump(self) -> list[str]:
        """Every key and value, as text, for the secret scan (empty if the server is gone)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        out = []
        with contextlib.suppress(redis.RedisError, OSError):
            client = self.client()
            for key in client.scan_iter(count=1000):
                value = client.get(key) if client.type(key) == b"string" else b""
                out.append(f"redis {key!r} {value!r}")
        return out


def create_cluster(servers: list[RedisServer]) -> None:
    """Join the nodes into one cluster (all slots, no replicas) and wait until it is ok."""
    cli = shutil.which("redis-cli") or "redis-cli"
    nodes = [f"127.0.0.1:{s.port}" for s in servers]
    auth = ["--user", ADMIN, "--pass", ADMIN_PASSWORD, "--no-auth-warning"]
    subprocess.run(
        [cli, *auth, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = [s.client().execute_command("CLUSTER", "INFO") for s in servers]
        if all(b"cluster_state:ok" in bytes(state) for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError("the cluster did not reach cluster_state:ok")


@contextlib.contextmanager
def redis_servers(
    count: int,
    *,
    cluster: bool = False,
    tls: TlsFiles | None = None,
    dump_to: list[str] | None = None,
) -> Iterator[list[RedisServer]]:
    """``count`` started servers, killed at exit; their keys and values go to ``dump_to``."""
    redis_binary()
    folder = Path(tempfile.mkdtemp(prefix="pd-redis-", dir="/tmp"))
    servers = []
    try:
        for index in range(count):
            sub = folder / str(index)
            sub.mkdir()
            port = free_port_pair(10000) if cluster or tls is not None else 0
            server = RedisServer(sub, port=port, cluster=cluster, tls=tls)
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            if dump_to is not None:
                dump_to.extend(server.dump())
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


def make_key_file(folder: Path, name: str) -> Path:
    import base64

    path = folder / name
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="utf-8")
    return path
