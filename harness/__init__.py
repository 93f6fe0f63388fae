"""The process harness the tests and the benchmarks share.

Free loopback ports, config files, a real ``redis-server``, ``pdsidecar serve`` processes,
the emulator in its own process, and the load that checks every answer. Test-only glue
(fixtures, the log sink, what a test exercised) stays in ``tests/support``; benchmark
scenarios stay in ``bench``; both import from here, never from each other.
"""
