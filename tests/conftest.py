"""Suite-wide fixtures: the anyio backend, and a log sink that the secret scan reads.

Every log record emitted anywhere during the run, at DEBUG and up, with its
traceback, is kept as text. Fixtures that start an emulator register its
secrets (client secrets, issued tokens, credential values); at the end of the
session no registered secret may appear in any captured line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.support.logsink import SECRETS, LogSink, leaked_secrets

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


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
