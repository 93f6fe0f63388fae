"""``health`` and ``accounts`` share one set of client flags: ``--target``, ``--timeout``, TLS.

Against a TLS listener, ``accounts`` lists with ``--tls-ca`` (and a client certificate
for mutual TLS), and without it says that TLS is the likely cause. The old spellings
(``health --address``, ``$PDSIDECAR_HEALTH_ADDRESS``) still work.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from pdsidecar.cli import _parser, main
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.tls import TlsFiles
from pdsidecar.settings import Settings
from tests.support.certs import Certs
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

CLIENT_FLAGS = {"--target", "--timeout", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name"}


def flags(command: str) -> set[str]:
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[command]
    return {
        option
        for action in sub._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
    }


def test_every_client_side_subcommand_has_the_same_client_flags() -> None:
    for command in ("health", "accounts"):
        assert flags(command) >= CLIENT_FLAGS, command
        assert "--address" not in flags(command)  # the old spelling works, unlisted


async def accounts(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["accounts", "--project", DEMO_PROJECT_ID, *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_accounts_over_tls_and_a_hint_without_it(
    settings: Settings, certs: Certs, capsys: Any
) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        target = ["--target", sidecar.bound[0], "--timeout", "3"]
        code, out, _ = await accounts(capsys, *target, "--tls-ca", str(certs.ca))
        assert code == 0 and DEMO_NOTION_ACCOUNT_ID in out
        code, out, err = await accounts(capsys, *target)
        assert code == 1 and out == ""
        assert "TLS listener" in err and "--tls-ca" in err, err
        assert "is 'pdsidecar serve' running" not in err


async def test_accounts_over_mutual_tls(settings: Settings, certs: Certs, capsys: Any) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key, certs.ca)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        args = ["--target", sidecar.bound[0], "--timeout", "3", "--tls-ca", str(certs.ca)]
        mine = ["--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
        code, out, _ = await accounts(capsys, *args, *mine)
        assert code == 0 and DEMO_NOTION_ACCOUNT_ID in out
        code, _, err = await accounts(capsys, *args)
        assert code == 1 and "--tls-cert/--tls-key" in err, err
        code, _, err = await accounts(capsys, *args, "--tls-cert", str(certs.client_cert))
        assert code == 2 and "go together" in err


async def test_health_against_tls_without_tls_flags_names_tls(
    settings: Settings, certs: Certs, capsys: Any
) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        code = await asyncio.to_thread(main, ["health", "--target", sidecar.bound[0]])
        assert code == 1
        assert "--tls-ca" in capsys.readouterr().err
