"""The suite-wide secret scan sees what the sidecar logs, tracebacks included."""

from __future__ import annotations

import logging

from tests.support.logsink import LogSink, leaked_secrets


def test_sink_captures_debug_records_and_tracebacks(log_sink: LogSink) -> None:
    before = len(log_sink.lines)
    try:
        raise RuntimeError("marker-in-traceback")
    except RuntimeError:
        logging.getLogger("pdsidecar.test").debug("marker-in-message", exc_info=True)
    captured = "\n".join(log_sink.lines[before:])
    assert "marker-in-message" in captured
    assert "marker-in-traceback" in captured


def test_the_scan_finds_a_secret_in_any_line_and_ignores_short_values() -> None:
    lines = ["nothing here", "token=s3cr3t-value-1 in the middle", "tail"]
    assert leaked_secrets({"s3cr3t-value-1", "absent-secret-2", "short"}, lines) == [
        "s3cr3t-value-1"
    ]
    # Not across a line break: the two halves are on different lines.
    assert leaked_secrets({"middle\ntail"}, lines) == []
    assert leaked_secrets({"tail-and-more"}, ["x tail", "-and-more"]) == []
