"""Protobuf descriptors: a plugin's FileDescriptorSet -> methods and message types.

Plugins never parse protobuf; the kernel transcodes between the wire and
proto3 JSON using the descriptors the plugin ships (embedded section
`arcana.descriptors` or a sidecar `NAME.pb`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from arcana.errors import DescriptorError


@dataclass(frozen=True)
class RpcMethod:
    """One unary method, ready to transcode."""

    full_name: str  # "pkg.Service/Method"
    service: str
    input_type: type[Message]
    output_type: type[Message]

    def decode(self, data: bytes) -> dict[str, Any]:
        message = self.input_type()
        message.ParseFromString(data)
        return json_format.MessageToDict(message)

    def check(self, data: bytes) -> None:
        """Parse and drop: raises when ``data`` is not a valid request message (wire format, UTF-8 strings)."""
        self.input_type.FromString(data)

    def encode(self, value: Any) -> bytes:
        """proto3 JSON -> wire bytes; raises DescriptorError when it does not fit the type."""
        try:
            return json_format.ParseDict(value, self.output_type()).SerializeToString()
        except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
            raise DescriptorError(f"does not fit {self.output_type.DESCRIPTOR.full_name}: {exc}") from exc


@dataclass(frozen=True)
class DescriptorSet:
    files: tuple[descriptor_pb2.FileDescriptorProto, ...]
    pool: descriptor_pool.DescriptorPool

    @classmethod
    def parse(cls, data: bytes) -> DescriptorSet:
        fds = descriptor_pb2.FileDescriptorSet()
        try:
            fds.ParseFromString(data)
        except DecodeError as exc:
            raise DescriptorError(f"not a FileDescriptorSet: {exc}") from exc
        pool = descriptor_pool.DescriptorPool()
        try:
            for file in fds.file:
                pool.Add(file)
            for file in fds.file:
                pool.FindFileByName(file.name)  # resolves every reference now, not on first call
        except (TypeError, KeyError) as exc:
            raise DescriptorError(f"descriptors do not resolve: {exc}") from exc
        return cls(tuple(fds.file), pool)

    def method(self, full_name: str) -> RpcMethod:
        """Look up "pkg.Service/Method"; DescriptorError names what is missing or unsupported."""
        service_name, _, method_name = full_name.partition("/")
        try:
            service = self.pool.FindServiceByName(service_name)
        except KeyError:
            raise DescriptorError(f"service {service_name} is not in the plugin's descriptors") from None
        found: MethodDescriptor | None = service.methods_by_name.get(method_name)
        if found is None:
            raise DescriptorError(f"service {service_name} has no method {method_name}")
        if found.client_streaming or found.server_streaming:
            raise DescriptorError(f"{full_name} is a streaming method; only unary methods are served")
        return RpcMethod(
            full_name,
            service_name,
            message_factory.GetMessageClass(found.input_type),
            message_factory.GetMessageClass(found.output_type),
        )

    def services(self) -> tuple[str, ...]:
        return tuple(f"{f.package}.{s.name}" if f.package else s.name for f in self.files for s in f.service)
