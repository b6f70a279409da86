"""The kernel's gRPC services ship precompiled: the shipped set is exactly what protoc makes of proto/."""

from __future__ import annotations

from pathlib import Path

from arcana.kernel_protos import kernel_descriptor_bytes, kernel_descriptors
from arcana_sdk.protoc import compile_proto_dir, proto_files

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m arcana_sdk.protoc proto runtime/proto/kernel.pb"


def test_shipped_descriptor_set_is_protoc_output_of_the_proto_folder() -> None:
    assert proto_files(ROOT / "proto"), "the kernel's .proto sources moved?"
    rebuilt = compile_proto_dir(ROOT / "proto")
    assert rebuilt == kernel_descriptor_bytes(), f"runtime/proto/kernel.pb is stale: run `{REGENERATE}`"


def test_every_kernel_method_the_grpc_edge_serves_is_in_the_shipped_set() -> None:
    protos = kernel_descriptors()
    assert set(protos.services()) == {"arcana.admin.v1.AdminService", "arcana.auth.v1.AuthService"}
    for name in (
        "arcana.admin.v1.AdminService/ListPlugins",
        "arcana.admin.v1.AdminService/GetQueueStats",
        "arcana.admin.v1.AdminService/GetJob",
        "arcana.admin.v1.AdminService/ListDeadJobs",
        "arcana.admin.v1.AdminService/ReplayDeadJobs",
        "arcana.admin.v1.AdminService/PurgeDeadJobs",
        "arcana.auth.v1.AuthService/Login",
        "arcana.auth.v1.AuthService/Refresh",
        "arcana.auth.v1.AuthService/Logout",
    ):
        assert protos.method(name).full_name == name
