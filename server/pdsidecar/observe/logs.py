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
token-shaped string (``Bearer ...``, ``access_token=...`` and JSON
``"client_secret": "..."`` pairs, JWTs, well-known token prefixes, long random
strings mixing letters and digits or both cases) with ``[REDACTED]``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any, Final, TextIO

from pdsidecar.secret import Secret

MASK: Final = "[REDACTED]"
# Set per RPC by the observing interceptor (metrics.py); read into every record.
REQUEST_ID: ContextVar[str | None] = ContextVar("pdsidecar_request_id", default=None)

_PATTERNS: Final = (
    # "Bearer <token>" anywhere, e.g. a quoted Authorization header.
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"), r"\1" + MASK),
    # key=value, key: value and "key": "value" for secret-sounding keys.
    (
        re.compile(
            r"(?i)(\b(?:access_token|refresh_token|id_token|client_secret|api_token|api_key|"
            r"apikey|secret|password|authorization|token)\b[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\])[^\s\"',;&}]+"
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


def redact_token_shapes(text: str) -> str:
    """``text`` with every token-shaped string masked (the patterns above, no known values):
    for text from elsewhere, such as Pipedream's error messages, before a caller sees it."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Request ids in this shape are kept as they are (they look random but are not secrets).
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class Redactor(logging.Filter):
    """Removes secrets from records; see the module docstring for what counts as one."""

    def __init__(self, capacity: int = 4096) -> None:
        super().__init__()
        self._capacity = capacity
        self._known: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, *values: Secret | str | None) -> None:
        """Treat these values as secrets from now on (the oldest are forgotten past capacity)."""
        for value in values:
            text = value.reveal() if isinstance(value, Secret) else value
            if not text or len(text) < 4 or text in self._known:
                continue
            self._known[text] = None
            while len(self._known) > self._capacity:
                self._known.popitem(last=False)
            self._pattern = None

    def redact(self, text: str) -> str:
        if self._known:
            if self._pattern is None:
                # Longest first, so a secret containing another is removed whole.
                values = sorted(self._known, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in values))
            text = self._pattern.sub(MASK, text)
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


# The process's redactor: configure() installs it, the sidecar feeds it secrets.
REDACTOR: Final = Redactor()


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
