"""Server reflection that every tool can use: ``grpc.reflection.v1`` and ``v1alpha``, every symbol.

grpcio-reflection falls short of what ghz, grpcurl and buf curl ask for, in two ways:

- It serves only ``grpc.reflection.v1alpha``; current tools ask for ``v1`` first (and some
  fall back, some do not).
- It answers ``file_containing_symbol`` from the descriptor pool, which knows services,
  messages and fields but not methods (``pkg.Service.Method``: what ``ghz --call`` and
  ``grpcurl describe`` ask for; grpc/grpc#34743, bojand/ghz#419) nor enum values spelled
  ``pkg.Enum.VALUE``.

So its asyncio servicer is extended here, not forked: an index of every symbol of the served
files (services, methods, messages, fields, oneofs, enums and their values, extensions, nested
ones too) answers first, the pool after. The same servicer is registered a second time as
``grpc.reflection.v1``: v1's messages are v1alpha's, field for field, so v1alpha's classes
read and write both. The v1 file itself (to describe the v1 service) is v1alpha's descriptor
under v1's names, kept in a pool of its own so the process-wide pool is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer
from grpc_reflection.v1alpha._base import _file_descriptor_response

__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "SymbolReflection", "enable_reflection"]

V1ALPHA_SERVICE_NAME: Final = reflection_pb2.DESCRIPTOR.services_by_name[
    "ServerReflection"
].full_name
V1_SERVICE_NAME: Final = "grpc.reflection.v1.ServerReflection"
_V1ALPHA: Final = "grpc.reflection.v1alpha"
_V1: Final = "grpc.reflection.v1"


def _v1_file() -> FileDescriptor:
    """v1alpha's reflection.proto renamed to v1's file, package and type names."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = _V1
    proto.ClearField("options")
    prefix = f".{_V1ALPHA}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(prefix):
                field.type_name = f".{_V1}." + field.type_name.removeprefix(prefix)
    for service in proto.service:
        for method in service.method:
            method.input_type = f".{_V1}." + method.input_type.removeprefix(prefix)
            method.output_type = f".{_V1}." + method.output_type.removeprefix(prefix)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool.FindFileByName(proto.name)


def _enum_symbols(enum: EnumDescriptor, scope: str) -> Iterator[str]:
    yield enum.full_name
    for value in enum.values:
        # Protobuf scopes enum values as siblings of their enum (pkg.VALUE); tools also
        # ask for pkg.Enum.VALUE.
        yield f"{scope}.{value.name}" if scope else value.name
        yield f"{enum.full_name}.{value.name}"


def _message_symbols(message: Descriptor) -> Iterator[str]:
    yield message.full_name
    yield from (field.full_name for field in message.fields)
    yield from (oneof.full_name for oneof in message.oneofs)
    yield from (extension.full_name for extension in message.extensions)
    for nested in message.nested_types:
        yield from _message_symbols(nested)
    for enum in message.enum_types:
        yield from _enum_symbols(enum, message.full_name)


def file_symbols(file: FileDescriptor) -> Iterator[str]:
    """Every fully qualified symbol ``file`` defines."""
    for service in file.services_by_name.values():
        yield service.full_name
        yield from (method.full_name for method in service.methods)
    for message in file.message_types_by_name.values():
        yield from _message_symbols(message)
    for enum in file.enum_types_by_name.values():
        yield from _enum_symbols(enum, file.package)
    yield from (extension.full_name for extension in file.extensions_by_name.values())


def _with_dependencies(files: Iterable[FileDescriptor]) -> dict[str, FileDescriptor]:
    found: dict[str, FileDescriptor] = {}
    pending = list(files)
    while pending:
        file = pending.pop()
        if file.name not in found:
            found[file.name] = file
            pending.extend(file.dependencies)
    return found


class SymbolReflection(ReflectionServicer):  # type: ignore[misc]  # grpc_reflection is untyped
    """grpcio-reflection's asyncio servicer, answering for every symbol of the served files."""

    def __init__(self, service_names: Sequence[str], pool: Any = None) -> None:
        names = {*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME}
        super().__init__(names, pool=pool)
        own = self._pool if pool is not None else descriptor_pool.Default()
        served = [_v1_file()]
        served += [own.FindFileContainingSymbol(n) for n in names if n != V1_SERVICE_NAME]
        self._files = _with_dependencies(served)
        self._symbols = {
            symbol: file for file in self._files.values() for symbol in file_symbols(file)
        }

    async def ServerReflectionInfo(self, request_iterator: Any, context: Any) -> Any:
        """grpcio-reflection's answers, without the echo of the request's ``host``.

        ``host`` is the one free-form field: echoed, every answer would carry it again.
        (Request size is capped before this, see :mod:`pdsidecar.api.probes`.)
        """
        async for response in super().ServerReflectionInfo(request_iterator, context):
            response.original_request.ClearField("host")
            yield response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        file = self._files.get(filename)
        if file is None:
            return super()._file_by_filename(request, filename)
        return _file_descriptor_response(file, request)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        file = self._symbols.get(fully_qualified_name)
        if file is None:
            return super()._file_containing_symbol(request, fully_qualified_name)
        return _file_descriptor_response(file, request)


def enable_reflection(service_names: Sequence[str], server: Any) -> SymbolReflection:
    """Serve reflection v1 and v1alpha for ``service_names`` (and for reflection itself) on
    ``server``, a ``grpc.aio.Server`` or anything with its registration methods."""
    servicer = SymbolReflection(service_names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
    return servicer
