"""What CI must have: under ``CI=true`` a missing test dependency fails the run instead
of skipping the tests that need it (CI installs everything: ``scripts/bootstrap.sh``)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    """A test dependency is not there: skip, or fail under CI=true (CI installs it)."""
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true .ci/run must install it", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str) -> ModuleType:
    """Import ``module``, or skip the calling test module without it (fail under CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(reason)
