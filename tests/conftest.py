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

from tests.support.logsink import SECRETS, LogSink

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
    # One search per secret over all the text (a secret never holds a newline, so it cannot
    # match across two lines): seconds faster than a search per secret per line.
    text = "\n".join(sink.lines)
    leaked = sorted(s for s in SECRETS if len(s) >= 8 and "\n" not in s and s in text)
    leaked += sorted(s for s in SECRETS if "\n" in s and any(s in line for line in sink.lines))
    assert not leaked, f"{len(leaked)} emulator secrets appeared in the logs"
