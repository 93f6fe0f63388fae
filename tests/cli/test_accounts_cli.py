"""``pdsidecar accounts`` as a user runs it: a subprocess against a running sidecar.

The emulator and a real sidecar (TCP and a unix socket) run in a background
thread with their own event loop; every test runs ``python -m pdsidecar
accounts ...`` and reads what it printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    Account,
    Emulator,
    EmulatorState,
    demo_state,
)
from pdsidecar_emulator.models import APPS

from pdsidecar.api.status import to_grpc_status
from pdsidecar.config.listen import parse_listen
from pdsidecar.errors import SidecarError
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.logsink import SECRETS

T = TypeVar("T")

HEADER = ["ACCOUNT ID", "NAME", "APP", "EXTERNAL USER", "STATUS", "CREDENTIALS", "EXPIRES AT"]
JSON_KEYS = [
    "account_id",
    "name",
    "app_slug",
    "app_name",
    "auth_type",
    "external_id",
    "status",
    "healthy",
    "dead",
    "error",
    "credentials_available",
    "credential_fields",
    "expires_at",
    "last_refreshed_at",
    "next_refresh_at",
]
EVIL_ACCOUNT_ID = "apn_evilName1"
GENERATED = 13  # slack_v2 accounts of user-dave, so the listing spans pages


class Loop:
    """An event loop in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Served:
    loop: Loop
    state: EmulatorState
    target: str
    unix_target: str

    def list_requests(self) -> int:
        async def read() -> int:
            return self.state.requests["list"]

        return self.loop.run(read())

    def production_ids(self) -> set[str]:
        return {
            a.id
            for a in self.state.iter_accounts()
            if a.project_id == DEMO_PROJECT_ID and a.environment == "production"
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = demo_state(seed=3)
    state.add_generated_accounts(GENERATED, app="slack_v2", external_id="user-dave")
    # A name as an end user might set it, with a terminal escape in it.
    evil = Account(EVIL_ACCOUNT_ID, APPS["notion"], "user-eve", "Eve \x1b[31mred\x1b[0m\x07")
    evil.credentials = None
    state.put_account(evil)
    socket_path = tmp_path_factory.mktemp("sock") / "pdsidecar.sock"
    loop = Loop()

    async def start() -> tuple[Emulator, Sidecar]:
        emulator = Emulator(state)
        await emulator.start()
        demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
        settings = Settings(
            pipedream_url=emulator.url,
            connections={"default": demo},
            policy=Policy(backoff_initial=0.01, backoff_max=0.05),
        )
        sidecar = Sidecar(
            settings, [parse_listen("127.0.0.1:0"), parse_listen(f"unix:{socket_path}")]
        )
        await sidecar.start()
        return emulator, sidecar

    async def stop(emulator: Emulator, sidecar: Sidecar) -> None:
        await sidecar.stop(grace=0)
        await emulator.stop()

    emulator, sidecar = loop.run(start())
    try:
        yield Served(loop, state, sidecar.bound[0], f"unix:{socket_path}")
    finally:
        loop.run(stop(emulator, sidecar))
        loop.close()
        SECRETS.update(state.secret_values())


def pdsidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PDSIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "pdsidecar", "accounts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def accounts(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return pdsidecar("--target", served.target, "--project", DEMO_PROJECT_ID, *args)


def table(stdout: str) -> list[dict[str, str]]:
    """Rows of the printed table, split at the header's column starts."""
    lines = stdout.splitlines()
    header = lines[0]
    assert header.split("  ")[0] == "ACCOUNT ID"
    starts = [header.index(name) for name in HEADER]
    assert starts == sorted(starts)
    rows = []
    for line in lines[1:]:
        cells = [
            line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        ]
        rows.append(dict(zip(HEADER, cells, strict=True)))
    return rows


def assert_no_secrets(served: Served, *texts: str) -> None:
    for secret in served.state.secret_values():
        assert not any(secret in text for text in texts), "a secret value was printed"


def test_table_lists_every_account_across_pages(served: Served) -> None:
    before = served.list_requests()
    done = accounts(served, "--page-size", "5")
    assert done.returncode == 0, done.stderr

    rows = table(done.stdout)
    listed = [row["ACCOUNT ID"] for row in rows]
    expected = served.production_ids()
    assert len(listed) == len(set(listed)) and set(listed) == expected
    assert served.list_requests() - before == -(-len(expected) // 5)
    assert f"{len(expected)} accounts in project {DEMO_PROJECT_ID} (production)" in done.stderr

    by_id = {row["ACCOUNT ID"]: row for row in rows}
    assert by_id[DEMO_NOTION_ACCOUNT_ID] | {"EXPIRES AT": ""} == {
        "ACCOUNT ID": DEMO_NOTION_ACCOUNT_ID,
        "NAME": f"Notion ({DEMO_USER_ALICE})",
        "APP": "notion",
        "EXTERNAL USER": DEMO_USER_ALICE,
        "STATUS": "healthy",
        "CREDENTIALS": "yes",
        "EXPIRES AT": "",
    }
    assert by_id[DEMO_NOTION_ACCOUNT_ID]["EXPIRES AT"].endswith("Z")
    assert by_id[DEMO_SLACK_ACCOUNT_ID]["CREDENTIALS"] == "no"  # Pipedream's own OAuth
    assert by_id[DEMO_SLACK_ACCOUNT_ID]["APP"] == "slack_v2"
    assert by_id[DEMO_DEAD_ACCOUNT_ID]["STATUS"] == "dead"
    assert by_id[DEMO_UNHEALTHY_ACCOUNT_ID]["STATUS"] == "unhealthy"
    assert by_id[DEMO_CODA_ACCOUNT_ID]["EXPIRES AT"] == "-"  # an API key does not expire
    assert_no_secrets(served, done.stdout, done.stderr)


def test_table_never_prints_control_characters(served: Served) -> None:
    done = accounts(served, "--external-user-id", "user-eve")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    [row] = table(done.stdout)
    assert row["ACCOUNT ID"] == EVIL_ACCOUNT_ID
    assert row["NAME"] == "Eve ?[31mred?[0m?"


def test_json_has_stable_keys_and_no_values(served: Served) -> None:
    done = accounts(served, "--json", "--page-size", "4")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert isinstance(listed, list)
    assert {item["account_id"] for item in listed} == served.production_ids()
    assert len(listed) == len(served.production_ids())
    assert all(list(item) == JSON_KEYS for item in listed)

    by_id = {item["account_id"]: item for item in listed}
    notion = by_id[DEMO_NOTION_ACCOUNT_ID]
    held = served.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert held is not None and held.credentials
    assert notion["credentials_available"] is True
    assert notion["credential_fields"] == sorted(held.credentials)
    assert notion["status"] == "healthy" and notion["healthy"] is True
    assert notion["expires_at"].endswith("Z")
    slack = by_id[DEMO_SLACK_ACCOUNT_ID]
    assert slack["credentials_available"] is False and slack["credential_fields"] == []
    dead = by_id[DEMO_DEAD_ACCOUNT_ID]
    assert dead["dead"] is True and dead["status"] == "dead" and dead["error"]
    assert by_id[DEMO_CODA_ACCOUNT_ID]["expires_at"] is None
    assert_no_secrets(served, done.stdout, done.stderr)


def test_filters_by_source_and_external_user(served: Served) -> None:
    slack = accounts(served, "--source", "slack", "--json", "--page-size", "3")
    assert slack.returncode == 0, slack.stderr
    slack_ids = {item["account_id"] for item in json.loads(slack.stdout)}
    assert {item["app_slug"] for item in json.loads(slack.stdout)} == {"slack_v2"}
    assert len(slack_ids) == GENERATED + 1 and DEMO_SLACK_ACCOUNT_ID in slack_ids

    bob = accounts(served, "--external-user-id", DEMO_USER_BOB)
    assert bob.returncode == 0, bob.stderr
    assert {row["ACCOUNT ID"] for row in table(bob.stdout)} == {
        DEMO_CODA_ACCOUNT_ID,
        DEMO_DEAD_ACCOUNT_ID,
    }
    assert f"external user {DEMO_USER_BOB}" in bob.stderr

    none = accounts(served, "--source", "notion", "--external-user-id", "user-dave", "--json")
    assert none.returncode == 0 and json.loads(none.stdout) == []
    assert "0 accounts" in none.stderr


def test_one_page_at_a_time_with_page_tokens(served: Served) -> None:
    first = accounts(served, "--no-all", "--page-size", "2", "--json")
    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)) == 2
    token = first.stderr.split("--page-token ")[1].split()[0]

    second = accounts(served, "--no-all", "--page-size", "2", "--json", "--page-token", token)
    assert second.returncode == 0, second.stderr
    firsts = {item["account_id"] for item in json.loads(first.stdout)}
    seconds = {item["account_id"] for item in json.loads(second.stdout)}
    assert len(seconds) == 2 and firsts.isdisjoint(seconds)

    bounded = accounts(served, "--max-pages", "2", "--page-size", "3", "--json")
    assert bounded.returncode == 0, bounded.stderr
    assert len(json.loads(bounded.stdout)) == 6
    assert "stopped after 2 pages" in bounded.stderr


@pytest.mark.parametrize("project_variable", ["PDSIDECAR_PROJECT", "PDSIDECAR_PROJECT_ID"])
def test_environment_variables_and_unix_socket(served: Served, project_variable: str) -> None:
    # PDSIDECAR_PROJECT is the name every example reads; the older _ID spelling still works.
    done = pdsidecar(
        "--json",
        env={"PDSIDECAR_TARGET": served.unix_target, project_variable: DEMO_PROJECT_ID},
    )
    assert done.returncode == 0, done.stderr
    assert {item["account_id"] for item in json.loads(done.stdout)} == served.production_ids()


def test_missing_project_is_a_usage_error(served: Served) -> None:
    done = pdsidecar("--target", served.target)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("pdsidecar accounts: --project is required")
    assert "PDSIDECAR_PROJECT)" in done.stderr


def test_sidecar_errors_print_reason_and_message(served: Served) -> None:
    unknown = accounts(served, "--connection", "nope")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("pdsidecar accounts: CONNECTION_NOT_FOUND: ")
    assert "default" in unknown.stderr  # names the connections that exist

    invalid = pdsidecar("--target", served.target, "--project", "demo", "--page-size", "500")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("pdsidecar accounts: INVALID_REQUEST: ")
    assert "project_id" in invalid.stderr and "page_size" in invalid.stderr


def test_unreachable_sidecar_is_reported(tmp_path: Path) -> None:
    target = f"unix:{tmp_path / 'nobody.sock'}"
    done = pdsidecar("--target", target, "--project", DEMO_PROJECT_ID, "--timeout", "0.5")
    assert done.returncode == 1 and done.stdout == ""
    # UNAVAILABLE once gRPC's three quick attempts are spent (~0.3 s); on a busy machine
    # the 0.5 s deadline may come first.
    assert done.stderr.startswith(
        ("pdsidecar accounts: UNAVAILABLE: ", "pdsidecar accounts: DEADLINE_EXCEEDED: ")
    )
    assert target in done.stderr and "PDSIDECAR_TARGET" in done.stderr


class Recorder(pb_grpc.CredentialsServiceServicer):
    """A stand-in sidecar that records the metadata of ListAccounts calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    async def ListAccounts(
        self,
        request: pb.ListAccountsRequest,
        context: grpc.aio.ServicerContext[pb.ListAccountsRequest, pb.ListAccountsResponse],
    ) -> pb.ListAccountsResponse:
        metadata = {str(k): str(v) for k, v in context.invocation_metadata() or ()}
        self.calls.append(metadata)
        if metadata.get("authorization") == "Bearer wrong":
            status = to_grpc_status(SidecarError("missing or wrong", reason="UNAUTHENTICATED"))
            await context.abort(status.code, status.details, status.trailing_metadata)
        return pb.ListAccountsResponse(
            accounts=[pb.AccountInfo(account_id="apn_rec1", app_slug="notion", healthy=True)]
        )


def test_api_token_is_sent_as_bearer(served: Served) -> None:
    recorder = Recorder()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        pb_grpc.add_CredentialsServiceServicer_to_server(recorder, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = served.loop.run(start())
    try:
        target = f"127.0.0.1:{port}"
        flag = pdsidecar("--target", target, "--project", "proj_x", "--api-token", "tok-flag")
        env = pdsidecar(
            "--target", target, "--project", "proj_x", env={"PDSIDECAR_API_TOKEN": "tok-env"}
        )
        none = pdsidecar("--target", target, "--project", "proj_x")
        wrong = pdsidecar(
            "--target", target, "--project", "proj_x", env={"PDSIDECAR_API_TOKEN": "wrong"}
        )
    finally:
        served.loop.run(server.stop(0))
    for done in (flag, env, none):
        assert done.returncode == 0, done.stderr
        assert table(done.stdout)[0]["ACCOUNT ID"] == "apn_rec1"
    assert [call.get("authorization") for call in recorder.calls] == [
        "Bearer tok-flag",
        "Bearer tok-env",
        None,
        "Bearer wrong",
    ]
    assert "tok-flag" not in flag.stdout + flag.stderr
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.startswith("pdsidecar accounts: UNAUTHENTICATED: missing or wrong")
    assert "PDSIDECAR_API_TOKEN" in wrong.stderr
