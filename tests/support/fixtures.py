"""The suite's pytest fixtures, registered by ``tests/conftest.py`` as a plugin.

A real emulator and a real sidecar on loopback per test; sidecar processes;
certificates; a short folder for Unix sockets. Tests that need another policy
override the ``policy`` fixture in their module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import Emulator, EmulatorState
from pdsidecar_emulator import demo_state as make_demo_state

import harness.redis
from harness.redis import RedisMissing, RedisServer, redis_binary
from pdsidecar.clock import ManualClock
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Policy, Settings
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support import exercised
from tests.support.certs import Certs, make_certs
from tests.support.ci import missing
from tests.support.logsink import SECRETS, LogSink
from tests.support.sidecars import TEST_POLICY, ServeProcess, demo_settings


@pytest.fixture(scope="session", autouse=True)
def cli_recorder() -> Iterator[None]:
    """Records the argv (and changed environment) of every in-process ``pdsidecar.cli.main``
    run into :mod:`tests.support.exercised`; main looks ``_parser`` up at each call."""
    import pdsidecar.cli as cli

    original, baseline = cli._parser, dict(os.environ)

    def recording_parser() -> argparse.ArgumentParser:
        parser = original()
        parse = parser.parse_args

        def parse_args(args: Any = None, namespace: Any = None) -> Any:
            exercised.argv(sys.argv[1:] if args is None else args)
            exercised.env({k: v for k, v in os.environ.items() if baseline.get(k) != v})
            return parse(args, namespace)

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser

    cli._parser = recording_parser
    yield
    cli._parser = original


@pytest.fixture
def log_lines(log_sink: LogSink) -> Callable[[], list[str]]:
    """The log lines captured since this test began: the sink holds the whole session's,
    so an assertion on it alone could pass on another test's lines."""
    start = len(log_sink.lines)
    return lambda: log_sink.lines[start:]


# Tests done in this process, and tests deselected in this session (-k, -m): a check of
# what the others did must know.
RAN: set[str] = set()
DESELECTED: list[pytest.Item] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        RAN.add(report.nodeid)


def pytest_deselected(items: list[pytest.Item]) -> None:
    DESELECTED.extend(items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    exercised.save_if_asked()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: runs after every other test (reads what they did)")


TESTS = Path(__file__).resolve().parents[1]
OPS = TESTS / "ops"


def _one_process_files() -> frozenset[str]:
    """Test files whose module-scoped fixture (the conformance run, a Redis, a sidecar)
    must be set up once, not once per worker."""
    return frozenset(
        path.relative_to(TESTS.parent).as_posix()
        for path in TESTS.rglob("test_*.py")
        if 'scope="module"' in path.read_text(encoding="utf-8")
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (scripts/test.sh: -n 2), tests spread over the workers one by
    one, except units that must share a process:

    - tests/ops: its README check reads what the folder's other tests ran in its
      process (it is ordered last; the unit goes first, as the longest);
    - a file with a module-scoped fixture.

    (xdist's own ``--dist loadgroup`` renames node ids, which pytest 9 ignores.)
    """
    from xdist.scheduler import LoadScopeScheduling

    files = _one_process_files()

    class Units(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.partition("::")[0]
            if path.startswith("tests/ops/"):
                return "tests/ops"
            return path if path in files else nodeid

    return Units(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `last` tests run after the others (of their unit, under xdist); tests/ops first.
    items.sort(  # stable
        key=lambda item: (
            item.get_closest_marker("last") is not None,
            OPS not in Path(item.path).parents,
        )
    )


@pytest.fixture
def demo_state() -> EmulatorState:
    return make_demo_state(seed=7)


@pytest.fixture
async def emulator(demo_state: EmulatorState) -> AsyncIterator[Emulator]:
    async with Emulator(demo_state) as emu:
        yield emu
    # Revoked tokens and rotated values included: none may reach a log line.
    SECRETS.update(demo_state.secret_values())


@pytest.fixture
def policy() -> Policy:
    """Overridden by tests that need another policy."""
    return TEST_POLICY


@pytest.fixture
def settings(emulator: Emulator, policy: Policy) -> Settings:
    return demo_settings(emulator.url, policy)


@pytest.fixture
async def sidecar(settings: Settings) -> AsyncIterator[Sidecar]:
    sidecar = Sidecar(settings, [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    yield sidecar
    await sidecar.stop(grace=0)


@pytest.fixture
async def channel(sidecar: Sidecar) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.CredentialsServiceStub:
    return pb_grpc.CredentialsServiceStub(channel)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def timed_stub(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[pb_grpc.CredentialsServiceStub]:
    """A stub to a sidecar whose clock the test moves."""
    sidecar = Sidecar(settings, [parse_listen("127.0.0.1:0")], clock=clock)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            yield pb_grpc.CredentialsServiceStub(channel)
    finally:
        await sidecar.stop(grace=0)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


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


RedisServers = Callable[..., contextlib.AbstractContextManager[list[RedisServer]]]


@pytest.fixture
def redis_servers(log_sink: LogSink) -> RedisServers:
    """Starts real redis-servers (``harness.redis.redis_servers``): skipped where
    redis-server cannot be had (failed under CI=true); their keys and values go into the
    log sink when they stop, for the secret scan."""

    @contextlib.contextmanager
    def start(count: int, **options: Any) -> Iterator[list[RedisServer]]:
        try:
            redis_binary()
        except RedisMissing as error:
            missing(str(error))
        with harness.redis.redis_servers(count, dump_to=log_sink.lines, **options) as servers:
            yield servers

    return start


@pytest.fixture
def redis_server(redis_servers: RedisServers) -> Iterator[RedisServer]:
    """A real redis-server on a Unix socket with an ACL password (see harness/redis.py)."""
    with redis_servers(1) as servers:
        yield servers[0]
