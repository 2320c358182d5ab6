"""Server reflection (grpc.reflection.v1alpha) that serves the contract with its comments, so engineers
read the API's documentation from the server itself:
`grpcurl describe emoney.payments.v1.PaymentsService.CreateTransfer`.

grpcio-reflection's servicer answers from the descriptors compiled into the generated modules, which
carry no source info (grpcurl showed signatures without a word of the contract), and it cannot find a
method by name (upb's FindFileContainingSymbol knows no methods: `describe Service.Method` failed).
This one looks symbols up in the same compiled-in descriptors, methods included, and answers each file
with its copy from generated/emoney.binpb, which `make proto` writes with `--include_source_info`: the
comments of every service, method, message and field ride along. Files that set does not hold
(grpc.health.v1, the reflection service itself) are sent without comments. Both come from the same
.proto files (`make proto-check` keeps generated/ current), so nothing but the comments differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterable, AsyncIterator, Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.reflection import SERVICE_NAME

DESCRIPTOR_SET_PATH = Path(__file__).resolve().parent.parent / "generated" / "emoney.binpb"


class DocumentedReflection(reflection_pb2_grpc.ServerReflectionServicer):
    def __init__(self, service_names: Iterable[str], descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self._service_names = sorted(service_names)
        self._documented = {file.name: file.SerializeToString() for file in descriptor_set.file}
        self._pool = descriptor_pool.Default()

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for request in request_iterator:
            yield self._answer(request)

    def _answer(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                services = [reflection_pb2.ServiceResponse(name=name) for name in self._service_names]
                return reflection_pb2.ServerReflectionResponse(
                    original_request=request, list_services_response=reflection_pb2.ListServiceResponse(service=services)
                )
            if kind == "file_by_filename":
                return self._files(request, self._pool.FindFileByName(request.file_by_filename))
            if kind == "file_containing_symbol":
                return self._files(request, self._file_containing_symbol(request.file_containing_symbol))
            if kind == "file_containing_extension":
                wanted = request.file_containing_extension
                extended = self._pool.FindMessageTypeByName(wanted.containing_type)
                return self._files(request, self._pool.FindExtensionByNumber(extended, wanted.extension_number).file)
            if kind == "all_extension_numbers_of_type":
                extended = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(extension.number for extension in self._pool.FindAllExtensions(extended))
                return reflection_pb2.ServerReflectionResponse(
                    original_request=request,
                    all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                        base_type_name=extended.full_name, extension_number=numbers
                    ),
                )
        except KeyError:
            return _error(request, grpc.StatusCode.NOT_FOUND)
        return _error(request, grpc.StatusCode.INVALID_ARGUMENT)

    def _file_containing_symbol(self, symbol: str) -> FileDescriptor:
        """The file defining a package member, a nested one or a method (`pkg.Service.Method`); KeyError if none."""
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method_name = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)
            if method_name not in service.methods_by_name:
                raise
            return service.file

    def _files(self, request: reflection_pb2.ServerReflectionRequest, file: FileDescriptor) -> reflection_pb2.ServerReflectionResponse:
        """`file` and every file it imports, directly or not, each with its comments when the contract's
        descriptor set holds it."""
        serialized, pending, seen = [], [file], set()
        while pending:
            current = pending.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            serialized.append(self._serialized(current))
            pending.extend(current.dependencies)
        return reflection_pb2.ServerReflectionResponse(
            original_request=request,
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(file_descriptor_proto=serialized),
        )

    def _serialized(self, file: FileDescriptor) -> bytes:
        documented = self._documented.get(file.name)
        if documented is not None:
            return documented
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        return proto.SerializeToString()


def _error(request: reflection_pb2.ServerReflectionRequest, code: grpc.StatusCode) -> reflection_pb2.ServerReflectionResponse:
    return reflection_pb2.ServerReflectionResponse(
        original_request=request,
        error_response=reflection_pb2.ErrorResponse(error_code=code.value[0], error_message=code.value[1]),
    )


def enable_documented_reflection(
    service_names: Iterable[str], server: grpc.aio.Server, descriptor_set_path: Path = DESCRIPTOR_SET_PATH
) -> None:
    """Reflection for `service_names` (and itself) on `server`, answering with the documented descriptors."""
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path.read_bytes())
    servicer = DocumentedReflection((*service_names, SERVICE_NAME), descriptor_set)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
