"""Who may call: the bearer token and the listeners' allow-lists, through real sockets."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from pdsidecar.config.listen import parse_listen
from pdsidecar.config.load import settings_from_mapping
from pdsidecar.secret import Secret
from pdsidecar.settings import ConfigError, ListenerConfig, Settings
from pdsidecar_client import AsyncCredentialsClient, CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support import exercised
from tests.support.requests import error_of, get_request
from tests.support.sidecars import API_TOKEN, running

pytestmark = pytest.mark.anyio

TCP = parse_listen("127.0.0.1:0")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_token_required_accepted_and_rejected(settings: Settings) -> None:
    token_settings = Settings(**{**vars(settings), "api_token": Secret(API_TOKEN)})
    async with (
        running(token_settings, TCP) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        for metadata in (
            (),
            bearer("wrong-token-of-the-same-length!"),
            (("authorization", API_TOKEN),),
        ):
            error = await error_of(stub.GetCredentials(request, metadata=metadata))
            assert (error.code, error.reason) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "UNAUTHENTICATED",
            )
        error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest()))
        assert error.reason == "UNAUTHENTICATED"
        answer = await stub.GetCredentials(request, metadata=bearer(API_TOKEN))
        assert answer.credentials["access_token"]
        # The Python client sends the token the same way.
        async with AsyncCredentialsClient(sidecar.bound[0], api_token=API_TOKEN) as client:
            got = await client.get_credentials(
                DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, source="notion"
            )
            assert got.credentials == answer.credentials


async def test_health_check_needs_no_token_but_watch_and_reflection_do(
    settings: Settings,
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    token_settings = Settings(**{**vars(settings), "api_token": Secret(API_TOKEN)})
    bearer = (("authorization", f"Bearer {API_TOKEN}"),)
    async with (
        running(token_settings, TCP) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        for metadata in ((), bearer):
            watch = health.Watch(health_pb2.HealthCheckRequest(), metadata=metadata)
            listing = reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                metadata=metadata,
            )
            if not metadata:
                for stream in (watch, listing):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stream.read()
                    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                continue
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            reply = await listing.read()
            names = {s.name for s in reply.list_services_response.service}
            assert "pdsidecar.v1.CredentialsService" in names
            watch.cancel()
            listing.cancel()


def test_api_token_from_file_env_and_length_rule(tmp_path: Path) -> None:
    base = {"connections": {"default": {"client_id": DEMO_CLIENT_ID, "client_secret_env": "S"}}}
    env = {"S": "secret-value"}
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN + "\n")
    with_file = exercised.config({**base, "api_token_file": str(token_file)})
    from_file = settings_from_mapping(with_file, env)
    assert from_file.api_token == Secret(API_TOKEN)
    from_env = settings_from_mapping(base, {**env, "PDSIDECAR_API_TOKEN": API_TOKEN})
    assert from_env.api_token == Secret(API_TOKEN)
    assert settings_from_mapping(base, env).api_token is None
    with pytest.raises(ConfigError, match="at least 16"):
        settings_from_mapping(base, {**env, "PDSIDECAR_API_TOKEN": "short"})
    with pytest.raises(ConfigError, match="printable ASCII"):
        settings_from_mapping(base, {**env, "PDSIDECAR_API_TOKEN": "token with spaces inside"})
    with pytest.raises(ConfigError, match="not both"):
        settings_from_mapping(
            {**base, "api_token_file": str(token_file)}, {**env, "PDSIDECAR_API_TOKEN": API_TOKEN}
        )


async def test_allow_lists_per_listener(settings: Settings, sockdir: Path) -> None:
    """One open listener and one restricted to connection 'default' and source 'notion'."""
    narrow = ListenerConfig(
        parse_listen(f"unix:{sockdir}/narrow.sock"),
        allow_connections=frozenset({"default"}),
        allow_sources=frozenset({"notion"}),
    )
    async with (
        running(settings, TCP, narrow) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as wide_channel,
        grpc.aio.insecure_channel(sidecar.bound[1]) as narrow_channel,
    ):
        wide = pb_grpc.CredentialsServiceStub(wide_channel)
        only = pb_grpc.CredentialsServiceStub(narrow_channel)
        notion = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        assert (await only.GetCredentials(notion)).credentials  # allowed
        slack = get_request(DEMO_NOTION_ACCOUNT_ID, "slack")
        error = await error_of(only.GetCredentials(slack))
        assert (error.code, error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
        assert error.metadata == {"source": "slack"}
        other = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="other")
        error = await error_of(only.GetCredentials(other))
        assert (error.reason, error.metadata) == ("PERMISSION_DENIED", {"connection": "other"})
        error = await error_of(only.RefreshToken(pb.RefreshTokenRequest(connection="other")))
        assert error.reason == "PERMISSION_DENIED"
        assert (await only.RefreshToken(pb.RefreshTokenRequest())).connection == "default"
        # ValidateAccount is checked too; ListAccounts must name an allowed source.
        validate = pb.ValidateAccountRequest(account=notion.account, source="slack")
        assert (await error_of(only.ValidateAccount(validate))).reason == "PERMISSION_DENIED"
        listing = pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID)
        assert (await error_of(only.ListAccounts(listing))).reason == "PERMISSION_DENIED"
        listing.source = "notion"
        assert (await only.ListAccounts(listing)).accounts
        # The open listener is not restricted: the request fails on its merits instead.
        error = await error_of(wide.GetCredentials(other))
        assert error.reason == "CONNECTION_NOT_FOUND"


async def test_listener_tables_from_the_config(settings: Settings, sockdir: Path) -> None:
    data = {
        "pipedream_url": settings.pipedream_url,
        "connections": {"default": {"client_id": DEMO_CLIENT_ID, "client_secret_env": "S"}},
        "listeners": [
            {
                "address": f"unix:{sockdir}/cfg.sock",
                "socket_mode": "0660",
                "allow_connections": ["default"],
                "allow_sources": ["notion"],
            }
        ],
    }
    from pdsidecar_emulator import DEMO_CLIENT_SECRET

    loaded = settings_from_mapping(exercised.config(data), {"S": DEMO_CLIENT_SECRET})
    (listener,) = loaded.listeners
    assert listener.socket_mode == 0o660 and listener.allow_sources == {"notion"}
    async with (
        running(loaded) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "slack")))
        assert error.reason == "PERMISSION_DENIED"
    for bad, message in (
        ({"address": "unix:/x.sock", "socket_mode": "0640x"}, "octal"),
        ({"address": "unix:/x.sock", "socket_mode": "0460"}, "owner read and write"),
        ({"address": "unix:/x.sock", "allow_sources": "notion"}, "list of names"),
        ({"socket_mode": "0600"}, "address is required"),
        ({"address": "unix:/x.sock", "port": 1}, "unknown keys"),
    ):
        with pytest.raises(ConfigError, match=message):
            settings_from_mapping({**data, "listeners": [bad]}, {"S": "x"})


async def test_wrong_token_is_refused_by_the_client_error_type(settings: Settings) -> None:
    token_settings = Settings(**{**vars(settings), "api_token": Secret(API_TOKEN)})
    async with (
        running(token_settings, TCP) as sidecar,
        AsyncCredentialsClient(sidecar.bound[0], api_token="nope" * 5) as client,
    ):
        with pytest.raises(CredentialsError) as caught:
            await client.refresh_token()
    assert caught.value.reason == "UNAUTHENTICATED"
