"""Reflection over real gRPC, in both versions, for every kind of symbol tools ask for.

ghz asks for ``pkg.Service.Method``, grpcurl for methods, messages and fields, some tools
for enum values as ``pkg.Enum.VALUE``; grpcio-reflection alone answers NOT_FOUND to the
first and the last. The binaries themselves are driven in tests/peers.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as rpb

from pdsidecar.runtime.sidecar import Sidecar

pytestmark = pytest.mark.anyio

VERSIONS = ("grpc.reflection.v1", "grpc.reflection.v1alpha")
CONTRACT = "pdsidecar/v1/credentials.proto"


async def ask(
    sidecar: Sidecar, version: str, *requests: rpb.ServerReflectionRequest
) -> list[rpb.ServerReflectionResponse]:
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        # v1's messages are v1alpha's field for field, so v1alpha's classes speak both.
        call = channel.stream_stream(
            f"/{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString,
        )
        return [answer async for answer in call(iter(requests))]


def files(answer: rpb.ServerReflectionResponse) -> list[str]:
    assert answer.WhichOneof("message_response") == "file_descriptor_response", answer
    names = []
    for raw in answer.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        names.append(proto.name)
    return names


@pytest.mark.parametrize("version", VERSIONS)
async def test_lists_both_reflection_versions(sidecar: Sidecar, version: str) -> None:
    [answer] = await ask(sidecar, version, rpb.ServerReflectionRequest(list_services=""))
    assert {s.name for s in answer.list_services_response.service} == {
        "pdsidecar.v1.CredentialsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("pdsidecar.v1.CredentialsService", CONTRACT),
        ("pdsidecar.v1.CredentialsService.GetCredentials", CONTRACT),
        ("pdsidecar.v1.CredentialsService.ListAccounts", CONTRACT),
        ("pdsidecar.v1.GetCredentialsRequest", CONTRACT),
        ("pdsidecar.v1.GetCredentialsRequest.source", CONTRACT),
        ("pdsidecar.v1.GetCredentialsResponse.CredentialsEntry", CONTRACT),
        ("pdsidecar.v1.Reason", CONTRACT),
        ("pdsidecar.v1.REASON_RATE_LIMITED", CONTRACT),
        ("pdsidecar.v1.Reason.REASON_RATE_LIMITED", CONTRACT),
        ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),  # grpcio's file name
        ("grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto"),
        (
            "grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
            "grpc/reflection/v1/reflection.proto",
        ),
        ("grpc.reflection.v1alpha.ServerReflection", "grpc_reflection/v1alpha/reflection.proto"),
    ],
)
async def test_file_containing_symbol(
    sidecar: Sidecar, version: str, symbol: str, file: str
) -> None:
    [answer] = await ask(
        sidecar, version, rpb.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    names = files(answer)
    assert names[0] == file
    if file == CONTRACT:  # with its imports, so a tool can build the descriptors
        assert "google/protobuf/timestamp.proto" in names


async def test_the_v1_file_describes_v1(sidecar: Sidecar) -> None:
    [answer] = await ask(
        sidecar,
        "grpc.reflection.v1",
        rpb.ServerReflectionRequest(file_by_filename="grpc/reflection/v1/reflection.proto"),
    )
    [raw] = answer.file_descriptor_response.file_descriptor_proto
    proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert proto.package == "grpc.reflection.v1"
    [method] = proto.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


@pytest.mark.parametrize("version", VERSIONS)
async def test_unknown_symbols_are_not_found(sidecar: Sidecar, version: str) -> None:
    answers = await ask(
        sidecar,
        version,
        rpb.ServerReflectionRequest(file_containing_symbol="pdsidecar.v1.CredentialsService.Nope"),
        rpb.ServerReflectionRequest(file_by_filename="no/such.proto"),
    )
    codes = [a.error_response.error_code for a in answers]
    assert codes == [grpc.StatusCode.NOT_FOUND.value[0]] * 2
