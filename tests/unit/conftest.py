"""Unit tests run on the fakes' fixtures: a manual clock with a fixed wall time (in place of
the suite's clock, which starts at the real time) and a scripted Pipedream."""

from tests.support.pipedream_fakes import clock, fake

__all__ = ["clock", "fake"]
