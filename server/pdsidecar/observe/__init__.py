"""Observability every layer may use and that knows none of them: logs with
redaction, counters, Prometheus, tracing, and the wrapping of gRPC handlers."""
