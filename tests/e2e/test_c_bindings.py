"""Every typed binding of the C header (sdk/c/arcana.h), end to end through a real server.

The probe (tests/fixtures/plugins/cprobe) serves one route per binding from
one export dispatched by `arcana_route` (its 405 and 404 are pinned in
tests/e2e/test_sdk_routers.py); it answers with the host's reply as
the body, or with the host's `{"error": ...}` itself, so each test sees what
the binding returned: the result, or the error as a value with its code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from conftest import install
from e2e.server import TEST_SECRET, ArcanaServer, mint

pytestmark = pytest.mark.toolchain
GRANTS = ["log", "auth", "auth.issue", "store", "queue", "events"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Any:
    work = tmp_path_factory.mktemp("cbindings")
    folder = work / "plugins"
    folder.mkdir()
    install(fixture_wasm["cprobe"], folder, "cprobe")
    server = ArcanaServer(folder, work, {"grants": {"*": ["log"], "cprobe": GRANTS}}).start()
    yield server
    server.stop()


def call(server: ArcanaServer, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/probe/c{path}", json=body, timeout=10, **kwargs)


def test_log_writes_the_level_message_and_fields_and_a_plain_line(server: ArcanaServer) -> None:
    assert call(server, "POST", "/log", {"message": 'quoted "text"\nand a newline'}).json() == {"logged": True}
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("plugin") == "cprobe" and line.get("logger") == "arcana.plugin"]
    [warned] = [line for line in mine if line["message"] == 'quoted "text"\nand a newline']
    assert warned["level"] == "warning" and warned["fields"] == {"probe": "c"}
    assert any(line["message"] == "cprobe: a plain line" and line["level"] == "info" for line in mine)


def test_auth_bindings_hash_verify_check_roles_and_issue_tokens(server: ArcanaServer) -> None:
    hashed = call(server, "POST", "/hash", {"password": 'p"w\\d'}).json()["hash"]
    assert hashed.startswith("$argon2id$")
    assert call(server, "POST", "/verify", {"hash": hashed, "password": 'p"w\\d'}).json() == {"valid": True}
    assert call(server, "POST", "/verify", {"hash": hashed, "password": "pwd"}).json() == {"valid": False}
    admin = {"authorization": f"Bearer {mint('a', ['admin'])}"}
    user = {"authorization": f"Bearer {mint('u', ['user'])}"}
    assert call(server, "GET", "/role/admin", headers=admin).json() == {"has_role": True}
    assert call(server, "GET", "/role/admin", headers=user).json() == {"has_role": False}
    issued = call(server, "POST", "/token", {"sub": "minted", "roles": ["reader", "x"], "ttl": 60}).json()
    claims = jwt.decode(issued["access_token"], TEST_SECRET, algorithms=["HS256"], audience="arcana")
    assert (claims["sub"], claims["roles"], issued["expires_in"]) == ("minted", ["reader", "x"], 60)
    default = call(server, "POST", "/token", {"sub": "d"}).json()  # ttl 0: the host's default, no roles
    assert default["expires_in"] == 900
    assert jwt.decode(default["access_token"], TEST_SECRET, algorithms=["HS256"], audience="arcana")["roles"] == []


def test_auth_errors_come_back_as_values_with_their_code(server: ArcanaServer) -> None:
    refused = call(server, "POST", "/token", {"sub": "m", "ttl": 7200})
    assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_FAILED"
    assert "ttl_s" in refused.json()["message"]
    no_password = call(server, "POST", "/hash", {})  # the binding sends null: the host says what is wrong
    assert no_password.status_code == 400 and no_password.json()["code"] == "VALIDATION_FAILED"


def test_document_bindings_put_get_query_delete_with_versions(server: ArcanaServer) -> None:
    made = call(server, "POST", "/docs", {"name": "a", "tags": ["t"]}).json()["doc"]
    assert made["version"] == 1 and made["name"] == "a" and made["id"]
    assert call(server, "GET", f"/docs/{made['id']}").json() == {"doc": made}
    put = call(server, "PUT", "/docs/z", {"name": "z", "tags": ["t"], "note": 'é"\\'}).json()["doc"]
    assert (put["id"], put["version"], put["note"]) == ("z", 1, 'é"\\')
    assert call(server, "PUT", "/docs/z?version=1", {"name": "z2", "tags": ["t"]}).json()["doc"]["version"] == 2
    stale = call(server, "PUT", "/docs/z?version=1", {"name": "z3"})
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    assert call(server, "PUT", "/docs/z?version=0", {"name": "again"}).status_code == 409  # 0: create only
    page = call(server, "POST", "/query", {"filter": {"tags": {"$contains": "t"}}, "sort": "name", "order": "desc"})
    assert [d["id"] for d in page.json()["items"]] == ["z", made["id"]] and page.json()["total"] == 2
    sized = call(server, "POST", "/query", {"sort": "name", "size": 1}).json()
    assert (sized["size"], sized["total"], [d["name"] for d in sized["items"]]) == (1, 2, ["a"])
    assert call(server, "POST", "/query", {}).json()["page"] == 1  # every option left to the host
    assert call(server, "DELETE", "/docs/z?version=1").status_code == 409
    assert call(server, "DELETE", "/docs/z?version=2").json() == {"deleted": True}
    assert call(server, "DELETE", "/docs/z").status_code == 404
    missing = call(server, "GET", "/docs/z")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    bad = call(server, "POST", "/query", {"filter": [1]})
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_FAILED"


def test_batch_binding_is_all_or_nothing(server: ArcanaServer) -> None:
    ops = [
        {"op": "put", "collection": "things", "id": "b1", "doc": {"n": 1}},
        {"op": "put", "collection": "things", "id": "b1", "doc": {"n": 2}},
        {"op": "delete", "collection": "things", "id": "b1", "expected_version": 2},
    ]
    results = call(server, "POST", "/batch", {"ops": ops}).json()["results"]
    assert [r.get("doc", {}).get("version") for r in results] == [1, 2, None] and results[2] == {"deleted": True}
    failed = call(server, "POST", "/batch", {"ops": [ops[0], {"op": "delete", "collection": "things", "id": "nope"}]})
    assert failed.status_code == 404 and failed.json()["message"].startswith("ops[1]: ")
    assert call(server, "GET", "/docs/b1").status_code == 404


def test_kv_bindings_set_get_incr_delete(server: ArcanaServer) -> None:
    assert call(server, "GET", "/kv/k").json() == {"found": False, "value": None}
    assert call(server, "PUT", "/kv/k?ttl=60", {"a": [1, "x"]}).json() == {}
    assert call(server, "GET", "/kv/k").json() == {"found": True, "value": {"a": [1, "x"]}}
    assert call(server, "PUT", "/kv/k", "text").json() == {}  # no ttl: kept forever
    assert call(server, "GET", "/kv/k").json() == {"found": True, "value": "text"}
    assert call(server, "POST", "/kv/n/incr").json() == {"value": 1}
    assert call(server, "POST", "/kv/n/incr?by=41").json() == {"value": 42}
    assert call(server, "POST", "/kv/n/incr?by=-50").json() == {"value": -8}
    assert call(server, "DELETE", "/kv/k").json() == {"deleted": True}
    assert call(server, "DELETE", "/kv/k").json() == {"deleted": False}
    assert call(server, "PUT", "/kv/s", "word").json() == {}
    not_int = call(server, "POST", "/kv/s/incr")
    assert not_int.status_code == 400 and not_int.json()["code"] == "VALIDATION_FAILED"


def test_queue_and_events_bindings(server: ArcanaServer) -> None:
    made = call(server, "POST", "/enqueue?key=once", {"n": 1}).json()
    assert made["created"] is True
    assert call(server, "POST", "/enqueue?key=once", {"n": 2}).json() == {"id": made["id"], "created": False}
    job = call(server, "GET", f"/jobs/{made['id']}").json()["job"]
    assert (job["id"], job["type"], job["state"], job["priority"], job["max_retries"]) == (
        made["id"],
        "probe.c",
        "queued",
        "low",
        1,
    )
    assert call(server, "GET", "/jobs/nope").status_code == 404
    assert call(server, "POST", "/emit/probe.hello", {"a": [1]}).json() == {}
    refused = call(server, "POST", "/emit/other.topic", {})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
