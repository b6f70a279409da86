"""Both transports map every error code, from one table each (KServe's ladders drifted; ours cannot)."""

from __future__ import annotations

import grpc

from arcana.edge.errors import HTTP_STATUS
from arcana.edge.grpc_errors import GRPC_STATUS, grpc_status
from arcana.errors import ArcanaError, Conflict, ErrorCode, VersionConflict


def test_every_code_has_an_http_status_and_a_grpc_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert set(GRPC_STATUS) == set(ErrorCode)


def test_the_architecture_table_holds() -> None:
    expected = {
        "VALIDATION_FAILED": (400, "INVALID_ARGUMENT"),
        "UNAUTHORIZED": (401, "UNAUTHENTICATED"),
        "FORBIDDEN": (403, "PERMISSION_DENIED"),
        "NOT_FOUND": (404, "NOT_FOUND"),
        "CONFLICT": (409, "ALREADY_EXISTS"),
        "PAYLOAD_TOO_LARGE": (413, "RESOURCE_EXHAUSTED"),
        "RATE_LIMITED": (429, "RESOURCE_EXHAUSTED"),
        "PLUGIN_TIMEOUT": (504, "DEADLINE_EXCEEDED"),
        "SERVICE_UNAVAILABLE": (503, "UNAVAILABLE"),
        "PLUGIN_FAILED": (500, "INTERNAL"),
        "INTERNAL": (500, "INTERNAL"),
    }
    for code, (http, rpc) in expected.items():
        assert HTTP_STATUS[ErrorCode(code)] == http and GRPC_STATUS[ErrorCode(code)].name == rpc


def test_version_conflicts_are_aborted_on_grpc() -> None:
    assert grpc_status(VersionConflict("stale")) == grpc.StatusCode.ABORTED
    assert grpc_status(Conflict("exists")) == grpc.StatusCode.ALREADY_EXISTS
    assert grpc_status(ArcanaError("x", code=ErrorCode.NOT_FOUND)) == grpc.StatusCode.NOT_FOUND
