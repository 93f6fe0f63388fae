"""In-process fleets for the tier's tests: sidecars in one event loop, one real Redis."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from harness.redis import PASSWORD, USER, RedisServer
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import FleetConfig, Settings
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.sidecars import running


def new_key() -> Secret:
    return Secret(base64.b64encode(os.urandom(32)).decode())


def shared(server: RedisServer, *keys: Secret, **changes: object) -> FleetConfig:
    """A ``[fleet]`` table for ``server``: namespace ``t``, 1 s locks, default timeout."""
    config = FleetConfig(
        url=server.url,
        keys=keys or (new_key(),),
        username=USER,
        password=Secret(PASSWORD),
        namespace="t",
        lock_ttl=1.0,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def fleet(
    settings: Settings, config: FleetConfig, count: int, **options: Any
) -> AsyncIterator[list[tuple[Sidecar, pb_grpc.CredentialsServiceStub]]]:
    """``count`` started sidecars sharing ``config``, each with a stub, subscribed to events."""
    shared_settings = dataclasses.replace(settings, fleet=config)
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            sidecar = await stack.enter_async_context(
                running(shared_settings, parse_listen("127.0.0.1:0"), **options)
            )
            assert sidecar.fleet is not None
            assert await sidecar.fleet.store.subscribed(5.0)
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(sidecar.bound[0]))
            out.append((sidecar, pb_grpc.CredentialsServiceStub(channel)))
        yield out
