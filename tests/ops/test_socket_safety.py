"""Who can reach the sidecar: socket modes, the API token, and saying so at start."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime import listeners
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConfigError, ListenerConfig, Settings
from tests.support.logsink import LogSink
from tests.support.sidecars import API_TOKEN, running

pytestmark = pytest.mark.anyio

NO_TOKEN_WARNING = "no API token is set"


def test_a_bad_socket_mode_is_a_message_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pdsidecar", "serve", "--emulator", "--socket-mode", "0999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--socket-mode" in done.stderr and "octal" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_world_accessible_socket_needs_an_api_token(
    settings: Settings, sockdir: Path
) -> None:
    for mode in (0o666, 0o606, 0o604):
        listener = ListenerConfig(parse_listen(f"unix:{sockdir}/pd.sock"), socket_mode=mode)
        with pytest.raises(ConfigError, match="every local user"):
            Sidecar(settings, [listener])


async def test_with_a_token_the_wide_mode_is_used_as_asked_without_chmod(
    settings: Settings, sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chmods: list[object] = []
    monkeypatch.setattr(listeners.os, "chmod", lambda *args: chmods.append(args))
    guarded = dataclasses.replace(settings, api_token=Secret(API_TOKEN))
    path = sockdir / "pd.sock"
    listener = ListenerConfig(parse_listen(f"unix:{path}"), socket_mode=0o666)
    async with running(guarded, listener):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    assert chmods == [], "the umask sets the mode; nothing changes it by path afterwards"


async def test_a_reload_that_drops_the_token_of_an_open_socket_is_refused(
    settings: Settings, sockdir: Path
) -> None:
    guarded = dataclasses.replace(settings, api_token=Secret(API_TOKEN))
    listener = ListenerConfig(parse_listen(f"unix:{sockdir}/pd.sock"), socket_mode=0o666)
    async with running(guarded, listener, loader=lambda: settings) as sidecar:
        assert not await sidecar.reload()
        assert sidecar.tokens.expected == f"Bearer {API_TOKEN}"


async def test_one_warning_line_when_no_api_token_guards_the_listeners(
    settings: Settings, log_sink: LogSink
) -> None:
    first = len(log_sink.lines)
    async with running(settings, parse_listen("127.0.0.1:0")) as sidecar:
        warned = [line for line in log_sink.lines[first:] if NO_TOKEN_WARNING in line]
        assert len(warned) == 1 and warned[0].startswith("WARNING")
        assert sidecar.bound[0] in warned[0]
    first = len(log_sink.lines)
    guarded = dataclasses.replace(settings, api_token=Secret(API_TOKEN))
    async with running(guarded, parse_listen("127.0.0.1:0")):
        assert not [line for line in log_sink.lines[first:] if NO_TOKEN_WARNING in line]
