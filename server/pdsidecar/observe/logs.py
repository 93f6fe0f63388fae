"""Logging: JSON lines, a request id on every record, and a redaction filter.

``configure(level, fmt)`` sets up the root logger for the CLI: one handler on
stderr with :class:`JsonFormatter` (or plain text), a :class:`RequestIdFilter`
and the process's :data:`REDACTOR`. httpx and httpcore are held at WARNING:
at INFO they log every request's full URL.

A JSON line looks like::

    {"time": "2026-11-25T17:03:04.123Z", "level": "info", "logger": "pdsidecar.tokens",
     "message": "connection default: new Pipedream token, valid for 3600 s", "request_id": "..."}

with ``grpc_method``, ``grpc_code``, ``duration_ms`` and ``peer`` on the per-RPC
debug lines, and ``exception`` when there is a traceback.

:class:`Redactor` runs on the handler, before any formatting, over the message
with its arguments, the traceback text and the request id. It replaces every
known secret value (connection client secrets, the sidecar's API token, each Pipedream
token the sidecar received: the sidecar registers them) and every
token-shaped string (``Bearer ...`` and ``Basic ...``, ``access_token=...``,
``client_secret%3D...``, ``x-api-key: ...`` and JSON ``"client_secret": "..."``
pairs, escaped or not, passwords in ``scheme://user:password@host``, JWTs,
well-known token prefixes, long random strings mixing letters and digits or
both cases) with ``[REDACTED]``.

Its cost per line does not grow with the number of tokens it knows. Configured
secrets (client secrets, the API token) are few and change only on reload: one
compiled pattern finds them anywhere, and they are never forgotten. Pipedream
tokens arrive all the time: they sit in a set, and each token-shaped run of the
line is looked up in it; a token is forgotten an hour after it expired, or,
past ``capacity`` tokens, oldest first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, Final, TextIO

from pdsidecar.secret import Secret

MASK: Final = "[REDACTED]"
# Set per RPC by the observing interceptor (metrics.py); read into every record.
REQUEST_ID: ContextVar[str | None] = ContextVar("pdsidecar_request_id", default=None)

_PATTERNS: Final = (
    # "Bearer <token>" and "Basic <credentials>" anywhere, e.g. a quoted Authorization header.
    (re.compile(r"(?i)(\b(?:bearer|basic)\s+)(?!\[REDACTED\])[^\s\"',;\\]+"), r"\1" + MASK),
    # The password of scheme://user:password@host.
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # key=value, key: value, key%3Dvalue and "key": "value" (JSON escaped or not)
    # for secret-sounding keys.
    (
        re.compile(
            r"(?i)(\b(?:access_token|refresh_token|id_token|client_secret|api_token|"
            r"(?:x-)?api[-_]?key|apikey|secret|password|passwd|authorization|token)\b"
            r"(?:\\?[\"'])?\s*(?:[:=]|%3[ad])\s*(?:\\?[\"'])?)"
            r"(?!\[REDACTED\])[^\s\"',;&}\\]+"
        ),
        r"\1" + MASK,
    ),
    # JWTs.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # Well-known token prefixes (Google, Slack, Notion, GitHub, Pipedream-style, the emulator).
    (
        re.compile(r"\b(?:ya29\.|xox[abposr]-|secret_|ntn_|ghp_|gho_|sk-|pd_|emu_)[\w.\-]{8,}"),
        MASK,
    ),
    # Long random-looking runs: 20+ characters mixing letters and digits, or 24+ mixing cases.
    (re.compile(r"(?<![\w.\-/])(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[\w\-]{20,}"), MASK),
    (re.compile(r"(?<![\w.\-/])(?=[\w\-]*[a-z])(?=[\w\-]*[A-Z])[\w\-]{24,}"), MASK),
)


# Request ids in this shape are kept as they are (they look random but are not secrets).
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# Token-shaped runs looked up in the set of known tokens: the wide form keeps JWT dots
# and base64 slashes, the narrow one finds a token inside a path or after a dot.
_RUNS: Final = (re.compile(r"[\w\-.~+/]{8,}"), re.compile(r"[\w\-]{8,}"))
_RUN_CHARS: Final = re.compile(r"[\w\-.~+/]{8,}")
# How long a Pipedream token is kept past its expiry (it may still be logged in an error).
TOKEN_AFTERLIFE: Final = 3600.0


class Redactor(logging.Filter):
    """Removes secrets from records; see the module docstring for what counts as one."""

    def __init__(self, capacity: int = 4096) -> None:
        super().__init__()
        self._capacity = capacity
        self._known: dict[str, None] = {}  # configured secrets: never forgotten
        self._pattern: re.Pattern[str] | None = None
        # Pipedream tokens -> monotonic time after which they may be forgotten.
        self._tokens: OrderedDict[str, float] = OrderedDict()

    def remember(self, *values: Secret | str | None) -> None:
        """Treat these values as secrets for as long as the process runs."""
        for text in _texts(values):
            if text not in self._known:
                self._known[text] = None
                self._pattern = None

    def remember_token(self, value: Secret | str, lifetime: float) -> None:
        """A Pipedream token living ``lifetime`` more seconds: masked until an hour past that."""
        for text in _texts((value,)):
            if not _RUN_CHARS.fullmatch(text):
                self.remember(text)  # not token-shaped: the set lookup would miss it
                continue
            now = time.monotonic()
            tokens = self._tokens
            tokens.pop(text, None)
            tokens[text] = now + lifetime + TOKEN_AFTERLIFE
            while tokens and (len(tokens) > self._capacity or next(iter(tokens.values())) < now):
                tokens.popitem(last=False)

    @property
    def known_tokens(self) -> int:
        return len(self._tokens)

    def redact(self, text: str) -> str:
        if self._known:
            if self._pattern is None:
                # Longest first, so a secret containing another is removed whole.
                values = sorted(self._known, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in values))
            text = self._pattern.sub(MASK, text)
        tokens = self._tokens
        if tokens:
            for runs in _RUNS:
                text = runs.sub(lambda m: MASK if m.group() in tokens else m.group(), text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        request_id = getattr(record, "request_id", None)
        if request_id and not _UUID.fullmatch(request_id):
            record.request_id = self.redact(request_id)
        return True


def _texts(values: Iterable[Secret | str | None]) -> Iterable[str]:
    for value in values:
        text = value.reveal() if isinstance(value, Secret) else value
        if text and len(text) >= 4:
            yield text


# The process's redactor: configure() installs it, the sidecar feeds it secrets.
REDACTOR: Final = Redactor()


class RoutineCallEnds(logging.Filter):
    """gRPC's ERROR for an answer that came too late, turned into a DEBUG line.

    When a call's deadline passes (or its client cancels) just as the servicer
    answers, grpc's core refuses the answer and grpc logs "ExecuteBatchError
    raised in core" with a traceback at ERROR. A caller's deadline is routine:
    the line is kept, without traceback, at DEBUG (shown only when DEBUG is on).
    Installed on grpc's logger by :func:`install_grpc_filter`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("ExecuteBatchError raised in core"):
            return True
        method = message.rpartition("[")[2].rstrip("]")
        record.msg, record.args = f"{method}: the call ended before its answer was sent", None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("pdsidecar.rpc").isEnabledFor(logging.DEBUG)


GRPC_LOGGER: Final = "grpc._cython.cygrpc"


def install_grpc_filter() -> None:
    """Put :class:`RoutineCallEnds` on grpc's logger, once."""
    logger = logging.getLogger(GRPC_LOGGER)
    if not any(isinstance(f, RoutineCallEnds) for f in logger.filters):
        logger.addFilter(RoutineCallEnds())


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


# Extra attributes (logger.debug(..., extra={...})) that JSON lines carry.
_FIELDS: Final = ("request_id", "grpc_method", "grpc_code", "duration_ms", "peer", "connection")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS: Final = ("httpx", "httpcore", "hpack", "aiohttp.access", "grpc._cython.cygrpc")


def configure(
    level: str = "info",
    fmt: str = "json",
    *,
    stream: TextIO | None = None,
    force: bool = False,
) -> logging.Handler | None:
    """Root logging for the CLI; the handler it installed, or None.

    Like ``logging.basicConfig``, it leaves a root logger that already has
    handlers alone (an embedding program's, or a test runner's) unless ``force``.
    """
    root = logging.getLogger()
    if root.handlers and not force:
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(REDACTOR)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
