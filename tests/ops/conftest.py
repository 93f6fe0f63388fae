"""Fixtures for the operations tests: an emulator, sidecars in-process and as processes,
and certificates made by the test (``cryptography``).

Everything listens on loopback or on Unix sockets in the test's temporary folder.
A sidecar process's stderr (its JSON log lines) goes into the suite-wide log
sink, so the end-of-session secret scan reads it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pdsidecar.config import ConnectionConfig, Policy, Settings
from pdsidecar.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorState
from pdsidecar.emulator import demo_state as make_demo_state
from pdsidecar.listen import ListenAddress, ListenerConfig
from pdsidecar.secret import Secret
from pdsidecar.server import Sidecar
from tests.conftest import SECRETS, LogSink

# Long enough for the API token rule (16+ characters).
API_TOKEN = "ops-test-api-token-0123456789"


@pytest.fixture
def demo_state() -> EmulatorState:
    return make_demo_state(seed=11)


@pytest.fixture
async def emulator(demo_state: EmulatorState) -> AsyncIterator[Emulator]:
    async with Emulator(demo_state) as emu:
        yield emu
    SECRETS.update(demo_state.secret_values())


def demo_settings(url: str, **changes: Any) -> Settings:
    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    policy = Policy(backoff_initial=0.01, backoff_max=0.05)
    return Settings(pipedream_url=url, connections={"default": demo}, policy=policy, **changes)


@pytest.fixture
def settings(emulator: Emulator) -> Settings:
    return demo_settings(emulator.url)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *listeners: ListenAddress | ListenerConfig, **options: Any
) -> AsyncIterator[Sidecar]:
    sidecar = Sidecar(settings, listeners, **options)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop(grace=0)


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, every: float = 0.02
) -> None:
    """Wait, bounded, until ``condition()`` holds (it may be a coroutine function)."""
    async with asyncio.timeout(timeout):
        while True:
            held = condition()
            if held if isinstance(held, bool) else await held:
                return
            await asyncio.sleep(every)


# --- certificates --------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A client certificate from a CA the server does not trust.
    stranger_cert: Path
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(folder: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    ca, ca_key = _issue("pdsidecar test CA", None, ca=True)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server, server_key = _issue("localhost", (ca.subject, ca_key), sans=sans)
    client, client_key = _issue("sync-worker", (ca.subject, ca_key))
    other_ca, other_key = _issue("someone else's CA", None, ca=True)
    stranger, stranger_key = _issue("stranger", (other_ca.subject, other_key))
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    server_paths = _write(folder, "server", server, server_key)
    client_paths = _write(folder, "client", client, client_key)
    stranger_paths = _write(folder, "stranger", stranger, stranger_key)
    return Certs(ca_path, *server_paths, *client_paths, *stranger_paths)


# --- sidecar processes ----------------------------------------------------------------


def write_config(path: Path, url: str, connections: dict[str, str], extra: str = "") -> Path:
    """A TOML config; ``connections`` maps names to client ids, all with the demo secret."""
    secret = path.parent / "client-secret"
    secret.write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
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

    async def wait(self, timeout: float = 20.0) -> int:
        await until(lambda: self.proc.poll() is not None, timeout)
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


@pytest.fixture
def serve(log_sink: LogSink, tmp_path: Path) -> Iterator[Any]:
    """Starts sidecar processes; each is stopped and its log scanned at teardown."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        process = ServeProcess(list(args), tmp_path / f"sidecar-{len(started)}.log", env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close(log_sink)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short folder for Unix sockets (their paths are limited to about 100 bytes)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
