"""Every access rule on every RPC of CredentialsService, from one table.

Rows are the rules (API token, mutual TLS, the listeners' source and connection
allow-lists, the refusal of forced refreshes on a source-restricted listener, tenant
binding); columns are the RPCs, read from the service descriptor. Each row starts one
in-process sidecar set up for its rule and calls every RPC once with what the row says
(token, certificate, connection, source, user, force); the outcomes must equal the row.
An RPC added to the proto has no column yet: the table test fails until it gets one, and
then every rule must say what it answers.

An outcome is the ErrorInfo reason of a refusal (or the status code when the call never
reached the servicer, as after a refused handshake), or a summary of the answer that shows
what a rule could leak: whether credentials came back, which users a listing names, what
ValidateAccount found.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import Message
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    DEMO_USER_CAROL,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.tls import tls_from_flags
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenerConfig, Settings
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.certs import Certs
from tests.support.sidecars import API_TOKEN, running

pytestmark = pytest.mark.anyio

SERVICE = pb.DESCRIPTOR.services_by_name["CredentialsService"]
ACCOUNTS = {"notion": DEMO_NOTION_ACCOUNT_ID, "google_drive": DEMO_GDRIVE_ACCOUNT_ID}


@dataclass(frozen=True)
class Ask:
    """What one row's calls carry."""

    connection: str = ""
    source: str = "notion"
    user: str = ""
    force: bool = False
    token: str | None = None
    # "client", "stranger" (a certificate from another CA) or None: no TLS at all.
    certificate: str | None = None

    @property
    def account(self) -> pb.AccountRef:
        account_id = ACCOUNTS.get(self.source, DEMO_NOTION_ACCOUNT_ID)
        return pb.AccountRef(
            project_id=DEMO_PROJECT_ID,
            account_id=account_id,
            connection=self.connection,
            external_user_id=self.user,
        )


# Per RPC: its request for an Ask, and the summary of an OK answer.
Request = Callable[[Ask], Message]
Summary = Callable[[Any], str]


def _users(answer: pb.ListAccountsResponse) -> str:
    return "users " + ",".join(sorted({a.external_id for a in answer.accounts}))


def _validation(answer: pb.ValidateAccountResponse) -> str:
    if answer.valid:
        return "valid"
    return "invalid " + ",".join(
        pb.Reason.Name(p.reason).removeprefix("REASON_") for p in answer.problems
    )


def _credentials(answer: pb.GetCredentialsResponse | pb.WatchCredentialsResponse) -> str:
    return "credentials" if answer.credentials.get("access_token") else "no credentials"


RPCS: dict[str, tuple[Request, Summary]] = {
    "GetCredentials": (
        lambda ask: pb.GetCredentialsRequest(account=ask.account, source=ask.source),
        _credentials,
    ),
    "ValidateAccount": (
        lambda ask: pb.ValidateAccountRequest(account=ask.account, source=ask.source),
        _validation,
    ),
    "RefreshToken": (
        lambda ask: pb.RefreshTokenRequest(connection=ask.connection, force=ask.force),
        lambda answer: "token",
    ),
    "ListAccounts": (
        lambda ask: pb.ListAccountsRequest(
            connection=ask.connection,
            project_id=DEMO_PROJECT_ID,
            source=ask.source,
            external_user_id=ask.user,
        ),
        _users,
    ),
    "WatchCredentials": (
        lambda ask: pb.WatchCredentialsRequest(account=ask.account, source=ask.source),
        _credentials,
    ),
}

# Who has a production account of each source in the emulator's demo state.
NOTION_USERS = "users " + ",".join(sorted({DEMO_USER_ALICE, DEMO_USER_BOB, DEMO_USER_CAROL}))
GDRIVE_USERS = f"users {DEMO_USER_ALICE}"
SERVED = {
    "GetCredentials": "credentials",
    "ValidateAccount": "valid",
    "RefreshToken": "token",
    "ListAccounts": NOTION_USERS,
    "WatchCredentials": "credentials",
}


def every(outcome: str) -> dict[str, str]:
    return dict.fromkeys(RPCS, outcome)


def but(outcomes: Mapping[str, str], **changes: str) -> dict[str, str]:
    return {**outcomes, **changes}


@dataclass(frozen=True)
class Row:
    rule: str
    ask: Ask
    expected: dict[str, str]
    # How the sidecar is set up for the rule.
    api_token: bool = False
    mutual_tls: bool = False
    allow_sources: frozenset[str] | None = None
    allow_connections: frozenset[str] | None = None
    extra_connections: dict[str, bool] = field(default_factory=dict)  # name -> requires a user


NOTION_ONLY = frozenset({"notion"})
DEFAULT_ONLY = frozenset({"default"})
DENIED = "PERMISSION_DENIED"

TABLE = [
    Row("token: none sent", Ask(), every("UNAUTHENTICATED"), api_token=True),
    Row(
        "token: a wrong one",
        Ask(token="x" * len(API_TOKEN)),
        every("UNAUTHENTICATED"),
        api_token=True,
    ),
    Row("token: the right one", Ask(token=API_TOKEN), SERVED, api_token=True),
    Row(
        "mTLS: no client certificate",
        Ask(certificate="none"),
        every("UNAVAILABLE"),
        mutual_tls=True,
    ),
    Row(
        "mTLS: another CA's certificate",
        Ask(certificate="stranger"),
        every("UNAVAILABLE"),
        mutual_tls=True,
    ),
    Row("mTLS: the CA's client certificate", Ask(certificate="client"), SERVED, mutual_tls=True),
    Row("sources: an allowed one", Ask(source="notion"), SERVED, allow_sources=NOTION_ONLY),
    Row(
        "sources: another one",
        Ask(source="google_drive"),
        but(every(DENIED), RefreshToken="token"),  # names no source
        allow_sources=NOTION_ONLY,
    ),
    Row(
        "sources: none named",
        Ask(source=""),
        but(every(DENIED), RefreshToken="token"),  # a listing without one lists every app
        allow_sources=NOTION_ONLY,
    ),
    Row(
        "sources: forced refresh",
        Ask(force=True),
        but(SERVED, RefreshToken=DENIED),  # the others have no force
        allow_sources=NOTION_ONLY,
    ),
    Row("sources: forced refresh on an open listener", Ask(force=True), SERVED),
    Row(
        "connections: another one",
        Ask(connection="other"),
        every(DENIED),
        allow_connections=DEFAULT_ONLY,
        extra_connections={"other": False},
    ),
    Row(
        "connections: the allowed one",
        Ask(connection="default"),
        SERVED,
        allow_connections=DEFAULT_ONLY,
        extra_connections={"other": False},
    ),
    Row(
        "tenant: another user's account",
        Ask(user=DEMO_USER_BOB),
        but(
            every("ACCOUNT_USER_MISMATCH"),
            ValidateAccount="invalid ACCOUNT_USER_MISMATCH",
            ListAccounts=f"users {DEMO_USER_BOB}",  # only the caller's own
            RefreshToken="token",  # names no account
        ),
    ),
    Row(
        "tenant: the owner",
        Ask(user=DEMO_USER_ALICE, connection="strict"),
        but(SERVED, ListAccounts=f"users {DEMO_USER_ALICE}"),
        extra_connections={"strict": True},
    ),
    Row(
        "tenant: no user where the connection requires one",
        Ask(connection="strict"),
        but(every("INVALID_REQUEST"), RefreshToken="token"),
        extra_connections={"strict": True},
    ),
]


def test_the_table_has_a_column_for_every_rpc_of_the_service() -> None:
    methods = {method.name for method in SERVICE.methods}
    assert set(RPCS) == methods, "a new RPC needs its column in RPCS (and in every row)"
    for row in TABLE:
        assert set(row.expected) == methods, row.rule


def _message_class(descriptor: Any) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


async def _outcome(channel: grpc.aio.Channel, name: str, ask: Ask) -> str:
    method = SERVICE.methods_by_name[name]
    request, summary = RPCS[name]
    path = f"/{SERVICE.full_name}/{name}"
    response = _message_class(method.output_type)
    metadata = (("authorization", f"Bearer {ask.token}"),) if ask.token else ()
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )(request(ask), metadata=metadata, timeout=10)
            first = await stream.read()
            stream.cancel()
            return summary(first)
        call = channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        return summary(await call(request(ask), metadata=metadata, timeout=10))
    except grpc.aio.AioRpcError as error:
        rich = CredentialsError.from_rpc_error(error)
        return rich.reason or rich.code.name


@contextlib.asynccontextmanager
async def _sidecar_for(row: Row, settings: Settings, certs: Certs) -> AsyncIterator[str]:
    connections = dict(settings.connections)
    for name, strict in row.extra_connections.items():
        connections[name] = ConnectionConfig(
            name, DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), require_external_user_id=strict
        )
    setup = dataclasses.replace(
        settings,
        connections=connections,
        api_token=Secret(API_TOKEN) if row.api_token else None,
    )
    listener = ListenerConfig(
        parse_listen("127.0.0.1:0"),
        allow_connections=row.allow_connections,
        allow_sources=row.allow_sources,
    )
    tls = tls_from_flags(certs.server_cert, certs.server_key, certs.ca) if row.mutual_tls else None
    async with running(setup, listener, tls=tls) as sidecar:
        yield sidecar.bound[0]


def _channel(target: str, ask: Ask, certs: Certs) -> grpc.aio.Channel:
    if ask.certificate is None:
        return grpc.aio.insecure_channel(target)
    pairs = {
        "client": (certs.client_cert, certs.client_key),
        "stranger": (certs.stranger_cert, certs.stranger_key),
    }
    cert, key = pairs.get(ask.certificate, (None, None))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.aio.secure_channel(target, credentials)


@pytest.mark.parametrize("row", TABLE, ids=[row.rule for row in TABLE])
async def test_every_rpc_answers_as_the_table_says(
    row: Row, settings: Settings, certs: Certs
) -> None:
    async with (
        _sidecar_for(row, settings, certs) as target,
        _channel(target, row.ask, certs) as channel,
    ):
        outcomes = {name: await _outcome(channel, name, row.ask) for name in RPCS}
    assert outcomes == row.expected
