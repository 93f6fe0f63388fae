"""What the tests hand to pdsidecar: switches, environment variables and config keys.

Names are recorded where a test really passes them in: the argv, environment and
``--config`` file of each ``pdsidecar serve`` process (``ServeProcess``), the argv and
changed environment of each in-process ``pdsidecar.cli.main`` run (the ``cli_recorder``
fixture), and mappings a test marks as handed to a loader (:func:`env`, :func:`config`).
``tests/ops/test_readme_ops.py`` reads :data:`NAMES` after the other tests ran: a switch
the README documents counts as tested only if a test ran pdsidecar with it. A pytest run
with ``PDSIDECAR_EXERCISED_FILE`` set writes its names there at the end (:func:`save_if_asked`),
for a check that had to run those tests in a process of their own.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

NAMES: set[str] = set()
SAVE_TO = "PDSIDECAR_EXERCISED_FILE"

M = TypeVar("M", bound=Mapping[str, Any])


def argv(args: Sequence[str]) -> None:
    """A command line pdsidecar ran with; a ``--config`` file's keys count too."""
    args = list(args)
    for index, arg in enumerate(args):
        if arg.startswith("--"):
            flag, _, value = arg.partition("=")
            NAMES.add(flag)
            if flag == "--config":
                path = value or (args[index + 1] if index + 1 < len(args) else "")
                config_file(Path(path))


def env(mapping: M) -> M:
    """An environment handed to pdsidecar (its names count); returned as it is."""
    NAMES.update(mapping)
    return mapping


def config(mapping: M) -> M:
    """A config mapping handed to the loader (its keys, at any depth, count)."""
    NAMES.update(_keys(mapping))
    return mapping


def config_file(path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return  # a test of a broken config: nothing to count
    config(data)


def _keys(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield str(key)
            yield from _keys(inner)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def save_if_asked() -> None:
    """Write :data:`NAMES` to the file ``$PDSIDECAR_EXERCISED_FILE`` names, if set."""
    path = os.environ.get(SAVE_TO)
    if path:
        Path(path).write_text(json.dumps(sorted(NAMES)), encoding="utf-8")
