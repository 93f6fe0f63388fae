"""The process: the sidecar's servers and their life, listeners, TLS, readiness,
SIGHUP reload and ``--workers``."""
