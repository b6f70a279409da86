"""docs/errors.md cannot drift: its table against the edges' maps and the codes a plugin may return."""

from __future__ import annotations

import re
from pathlib import Path

from arcana.edge.errors import HTTP_STATUS
from arcana.edge.grpc_errors import GRPC_STATUS, grpc_status
from arcana.envelopes import PLUGIN_CODES
from arcana.errors import ERROR_CODES, VersionConflict

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
TEXT = DOC.read_text()
# | `CODE` | 404 | `NOT_FOUND` | when |
ROWS = re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \| `([A-Z_]+)` \|", TEXT, flags=re.M)


def test_the_table_lists_every_code_once() -> None:
    codes = [code for code, _, _ in ROWS]
    assert len(codes) == len(set(codes))
    assert sorted(codes) == sorted(ERROR_CODES)


def test_each_row_has_the_http_status_and_grpc_code_of_the_edges() -> None:
    documented = {code: (int(http), grpc) for code, http, grpc in ROWS}
    real = {code.value: (HTTP_STATUS[code], GRPC_STATUS[code].name) for code in HTTP_STATUS}
    assert documented == real


def test_a_plugin_may_return_every_code_of_the_table() -> None:
    assert {code for code, _, _ in ROWS} == PLUGIN_CODES


def test_the_version_conflict_exception_is_documented() -> None:
    assert grpc_status(VersionConflict("stale")).name in TEXT
