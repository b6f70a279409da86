"""The kernel's own gRPC services (``proto/arcana/**``), shipped precompiled.

``arcana/proto/kernel.pb`` is the FileDescriptorSet protoc makes of the
top-level ``proto/`` folder (``python -m arcana_sdk.protoc proto
runtime/proto/kernel.pb``); a test rebuilds it and compares the bytes. Shipping
it means a server never needs protoc (grpcio-tools) or the ``.proto`` sources
at run time, and reads it through importlib.resources wherever it is installed.
"""

from __future__ import annotations

import functools
from importlib.resources import files

from arcana.descriptors import DescriptorSet

KERNEL_DESCRIPTORS = "proto/kernel.pb"


def kernel_descriptor_bytes() -> bytes:
    """The serialized FileDescriptorSet as shipped."""
    return files("arcana").joinpath(KERNEL_DESCRIPTORS).read_bytes()


@functools.cache
def kernel_descriptors() -> DescriptorSet:
    """The kernel's services, parsed once per process (the set is immutable)."""
    return DescriptorSet.parse(kernel_descriptor_bytes())
