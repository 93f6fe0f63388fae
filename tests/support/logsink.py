"""The suite-wide log sink and the secrets that must never appear in it.

Every log record emitted anywhere during the run, at DEBUG and up, with its
traceback, is kept as text (a sidecar process's stderr is added when it stops).
Fixtures that start an emulator register its secrets (client secrets, issued
tokens, credential values) in :data:`SECRETS`; at the end of the session no
registered secret may appear in any captured line.
"""

from __future__ import annotations

import logging


class LogSink(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


SECRETS: set[str] = set()


def leaked_secrets(secrets: set[str], lines: list[str]) -> list[str]:
    """The secrets (8+ characters) that appear in any line.

    One search per secret over the joined text, which stops at the first hit: a secret
    without a newline cannot match across two lines, so this is the per-line answer.
    """
    text = "\n".join(lines)
    found = {s for s in secrets if len(s) >= 8 and "\n" not in s and s in text}
    found |= {s for s in secrets if "\n" in s and any(s in line for line in lines)}
    return sorted(found)
