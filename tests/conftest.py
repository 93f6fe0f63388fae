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


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


class LogSink(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


SECRETS: set[str] = set()


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
    leaked = sorted({s for s in SECRETS if len(s) >= 8 for line in sink.lines if s in line})
    assert not leaked, f"{len(leaked)} emulator secrets appeared in the logs"
