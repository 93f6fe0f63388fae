"""Turns a :class:`~pdsidecar.errors.SidecarError` into a rich gRPC status.

The status carries ``google.rpc.ErrorInfo`` (domain ``pdsidecar``), plus
``google.rpc.BadRequest`` for invalid requests and ``google.rpc.RetryInfo``
where the error table says a retry makes sense.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pdsidecar.errors import DOMAIN, InvalidRequest, SidecarError

# Used when a retryable error has no better hint.
_DEFAULT_RETRY_DELAY = 1.0


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_rpc_status(error: SidecarError) -> status_pb2.Status:
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=DOMAIN, metadata=dict(error.metadata)
            )
        )
    ]
    if isinstance(error, InvalidRequest):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    if error.kind.retryable:
        delay = error.retry_after if error.retry_after is not None else _DEFAULT_RETRY_DELAY
        seconds = math.floor(delay)
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=seconds, nanos=int((delay - seconds) * 1_000_000_000)
            )
        )
        details.append(_packed(retry))
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def to_grpc_status(error: SidecarError) -> grpc.Status:
    return rpc_status.to_status(to_rpc_status(error))
