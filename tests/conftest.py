"""Suite-wide fixtures: the anyio backend, and a log sink that the secret scan reads.

Every log record emitted anywhere during the run, at DEBUG and up, with its
traceback, is kept as text. Fixtures that start an emulator register its
secrets (client secrets, issued tokens, credential values); at the end of the
session no registered secret may appear in any captured line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.logsink import SECRETS, LogSink, leaked_secrets

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
async def one_event_loop(anyio_backend: str) -> AsyncIterator[None]:
    """One asyncio loop for every test of a pytest process, as the sidecar has one.

    grpc.aio binds every loop it meets to one completion queue; a completion that
    arrives after its loop closed (a stream a test ended just before its loop did) is
    handed to the closed loop from whichever loop runs then, and raises "Event loop is
    closed" in an unrelated test. An async session fixture keeps anyio's runner (and
    its loop) from the first test to the last.
    """
    yield


@pytest.fixture(scope="session", autouse=True)
def log_sink() -> Iterator[LogSink]:
    sink = LogSink()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(sink)
    root.setLevel(logging.DEBUG)
    yield sink
    root.removeHandler(sink)
    root.setLevel(previous)
    leaked = leaked_secrets(SECRETS, sink.lines)
    assert not leaked, f"{len(leaked)} emulator secrets appeared in the logs"
