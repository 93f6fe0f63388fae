"""Text from Pipedream, made safe before it reaches a caller, a log or a protobuf message.

Pipedream's JSON may hold strings that are not valid Unicode (a lone surrogate such as
``"\\ud800"`` is valid JSON): protobuf refuses to encode them, which would turn a whole answer
into INTERNAL. Free text (an account's ``error``, its name, Pipedream's error messages) may also
quote a token or a secret the sidecar holds. So every string read from Pipedream goes through
:func:`unicode_text`, and free text that callers read through :func:`caller_text` as well.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pdsidecar.observe.logs import REDACTOR

_SURROGATES: Final = re.compile("[\ud800-\udfff]")
MAX_TEXT: Final = 300


def unicode_text(value: str) -> str:
    """``value`` with lone surrogates replaced by U+FFFD, so it always encodes as UTF-8."""
    return _SURROGATES.sub("\ufffd", value)


def json_text(value: Any) -> str:
    """A credential value as text: strings as they are, anything else as compact JSON (not a
    Python repr: ``true``, ``{"a":1}``), valid Unicode either way."""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return unicode_text(value)


def caller_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Free text from Pipedream for a caller: a string (anything else gives ""), valid
    Unicode, every secret the process knows and every token-shaped string masked (as in a
    log line), at most ``limit`` characters (with an ellipsis).
    Control characters stay: protobuf carries them, and what prints text escapes them."""
    if not isinstance(value, str):
        return ""
    # Redacted before it is cut, so no cut leaves a token fragment too short to match.
    text = REDACTOR.redact(unicode_text(value))
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text
