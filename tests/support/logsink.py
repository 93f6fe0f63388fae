"""The suite-wide log sink and the secrets that must never appear in it.

Every log record emitted anywhere during the run, at DEBUG and up, with its
traceback, is kept as text (a sidecar process's stderr is added when it stops).
Fixtures that start an emulator register its secrets (client secrets, issued
tokens, credential values) in :data:`SECRETS`; at the end of the session no
registered secret may appear in any captured line.
"""

from __future__ import annotations

import logging

import ahocorasick


class LogSink(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


SECRETS: set[str] = set()


def leaked_secrets(secrets: set[str], lines: list[str]) -> list[str]:
    """The secrets (8+ characters, or holding a line break) that appear within any line.

    One pass of an Aho-Corasick automaton over the lines joined by NUL, which no secret
    holds, so a match never spans two lines: the cost is the text's length, not the text's
    length times the number of secrets (thousands by the end of the suite).
    """
    wanted = {s for s in secrets if (len(s) >= 8 or "\n" in s) and "\0" not in s}
    if not wanted or not lines:
        return []
    automaton = ahocorasick.Automaton()
    for secret in wanted:
        automaton.add_word(secret, secret)
    automaton.make_automaton()
    return sorted({secret for _, secret in automaton.iter("\0".join(lines))})
