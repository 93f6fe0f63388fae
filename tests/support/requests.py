"""Small helpers for calling the real sidecar and reading its errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
from pdsidecar_emulator import DEMO_PROJECT_ID

from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb


def ref(account_id: str, **fields: Any) -> pb.AccountRef:
    return pb.AccountRef(
        project_id=fields.pop("project_id", DEMO_PROJECT_ID), account_id=account_id, **fields
    )


def get_request(account_id: str, source: str, **fields: Any) -> pb.GetCredentialsRequest:
    account_fields = {
        k: fields.pop(k)
        for k in ("connection", "project_id", "environment", "external_user_id")
        if k in fields
    }
    return pb.GetCredentialsRequest(
        account=ref(account_id, **account_fields), source=source, **fields
    )


def validate_request(account_id: str, source: str, **fields: Any) -> pb.ValidateAccountRequest:
    account_fields = {
        k: fields.pop(k)
        for k in ("connection", "project_id", "environment", "external_user_id")
        if k in fields
    }
    return pb.ValidateAccountRequest(
        account=ref(account_id, **account_fields), source=source, **fields
    )


async def error_of(call: Awaitable[Any]) -> CredentialsError:
    """The rich error a call failed with; fails the test if the call succeeded."""
    try:
        await call
    except grpc.RpcError as error:
        return CredentialsError.from_rpc_error(error)
    raise AssertionError("the call succeeded; an error was expected")
