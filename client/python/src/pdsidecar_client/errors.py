"""The one exception callers catch, read from the rich gRPC status.

``CredentialsError.reason`` is the ``google.rpc.ErrorInfo`` reason from the
sidecar's error table (``ACCOUNT_NOT_FOUND``, ``RATE_LIMITED``, ...);
``retry_after`` comes from ``google.rpc.RetryInfo`` when the sidecar sent one;
``hint`` is set only when the call never reached the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "pdsidecar"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class CredentialsError(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
        violations: tuple[FieldViolation, ...] = (),
        connection_error: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" [{reason}]" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.retry_after = retry_after
        self.violations = violations
        # gRPC's last error connecting to the sidecar, when the call never reached it.
        self.connection_error = connection_error
        # Set only when the call never reached the sidecar: names the target and the likely
        # cause (the message then says the same).
        self.hint = hint

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> CredentialsError:
        """Reads a failed call from either the blocking or the asyncio API."""
        # grpc.aio's AioRpcError is not a grpc.Call, but has the same accessors.
        call: Any = error
        if not callable(getattr(call, "code", None)):
            return cls(grpc.StatusCode.UNKNOWN, str(error))
        code: grpc.StatusCode = call.code()
        message: str = call.details() or ""
        reason, retry_after = "", None
        metadata: dict[str, str] = {}
        violations: list[FieldViolation] = []
        status = rpc_status.from_call(call)
        details: list[Any] = list(status.details) if status else []
        for detail in details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == DOMAIN:
                    reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        return cls(
            code,
            message,
            reason=reason,
            metadata=metadata,
            retry_after=retry_after,
            violations=tuple(violations),
        )
