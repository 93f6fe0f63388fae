"""The suite-wide secret scan sees what the sidecar logs, tracebacks included."""

from __future__ import annotations

import logging

from tests.support.logsink import LogSink


def test_sink_captures_debug_records_and_tracebacks(log_sink: LogSink) -> None:
    before = len(log_sink.lines)
    try:
        raise RuntimeError("marker-in-traceback")
    except RuntimeError:
        logging.getLogger("pdsidecar.test").debug("marker-in-message", exc_info=True)
    captured = "\n".join(log_sink.lines[before:])
    assert "marker-in-message" in captured
    assert "marker-in-traceback" in captured
