"""The store bindings of both guest SDKs (Zig and AssemblyScript), end to end through a real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import install
from e2e.server import ArcanaServer

pytestmark = pytest.mark.toolchain
PROBES = {"zig": "storeprobe", "as": "asprobe"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Any:
    work = tmp_path_factory.mktemp("sdks")
    folder = work / "plugins"
    folder.mkdir()
    for name in PROBES.values():
        install(fixture_wasm[name], folder, name)
    config = {
        "database": {"url": f"sqlite:///{work}/store.db"},
        "grants": {"*": ["log"], "storeprobe": ["store"], "asprobe": ["store"]},
    }
    server = ArcanaServer(folder, work, config).start()
    yield server
    server.stop()


def caller(server: ArcanaServer, sdk: str) -> Callable[..., httpx.Response]:
    def call(name: str, **args: Any) -> httpx.Response:
        return httpx.post(f"{server.url}/probe/{sdk}", json={"call": name, **args}, timeout=10)

    return call


@pytest.mark.parametrize("sdk", PROBES)
def test_kv_bindings(server: ArcanaServer, sdk: str) -> None:
    call = caller(server, sdk)
    assert call("kv_get", key=f"{sdk}-k").json() == {"result": None}
    assert call("kv_set", key=f"{sdk}-k", value={"a": [1, "x"]}, ttl=60).json() == {"result": None}
    assert call("kv_get", key=f"{sdk}-k").json() == {"result": {"a": [1, "x"]}}
    assert call("kv_incr", key="n").json() == {"result": 1}
    assert call("kv_incr", key="n", by=41).json() == {"result": 42}
    assert call("kv_delete", key=f"{sdk}-k").json() == {"result": True}
    assert call("kv_delete", key=f"{sdk}-k").json() == {"result": False}
    refused = call("kv_set", key="", value=1)
    assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_FAILED"


@pytest.mark.parametrize("sdk", PROBES)
def test_document_bindings_with_errors_as_values(server: ArcanaServer, sdk: str) -> None:
    call = caller(server, sdk)
    made = call("put", collection="things", doc={"name": "a", "tags": ["t"]}).json()
    assert made["version"] == 1 and made["result"]["name"] == "a" and made["result"]["id"] == made["id"]
    assert call("get", collection="things", id=made["id"]).json() == made
    again = call("put", collection="things", id=made["id"], doc={"name": "b"}, expected_version=1).json()
    assert again["version"] == 2
    stale = call("put", collection="things", id=made["id"], doc={"name": "c"}, expected_version=1)
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    assert call("get", collection="things", id="missing").status_code == 404
    call("put", collection="things", id="z", doc={"name": "z", "tags": ["t"]})
    page = call(
        "query", collection="things", filter={"tags": {"$contains": "t"}}, sort="name", order="desc", size=5
    ).json()
    assert page == {"ids": ["z"], "total": 1, "page": 1, "size": 5}
    assert call("query", collection="things", sort="name").json()["ids"] == [made["id"], "z"]
    assert call("delete", collection="things", id="z", expected_version=9).status_code == 409
    assert call("delete", collection="things", id="z").json() == {"result": None}
    assert call("delete", collection="things", id="z").status_code == 404


@pytest.mark.parametrize("sdk", PROBES)
def test_batch_binding_is_atomic(server: ArcanaServer, sdk: str) -> None:
    call = caller(server, sdk)
    ok = call(
        "batch",
        ops=[
            {"op": "put", "collection": "b", "id": "one", "doc": {"n": 1}},
            {"op": "put", "collection": "b", "id": "one", "doc": {"n": 2}},
            {"op": "delete", "collection": "b", "id": "one", "expected_version": 2},
        ],
    )
    assert ok.json() == {"versions": [1, 2, None]}
    failed = call(
        "batch",
        ops=[
            {"op": "put", "collection": "b", "id": "two", "doc": {}},
            {"op": "delete", "collection": "b", "id": "absent"},
        ],
    )
    assert failed.status_code == 404 and failed.json()["message"].startswith("ops[1]: ")
    assert call("get", collection="b", id="two").status_code == 404


def test_two_plugins_never_see_each_others_data(server: ArcanaServer) -> None:
    zig, assemblyscript = caller(server, "zig"), caller(server, "as")
    zig("kv_set", key="shared-name", value="zig's")
    zig("put", collection="shared", id="same", doc={"owner": "zig"})
    assert assemblyscript("kv_get", key="shared-name").json() == {"result": None}
    assert assemblyscript("get", collection="shared", id="same").status_code == 404
    assemblyscript("put", collection="shared", id="same", doc={"owner": "as"})
    assert zig("get", collection="shared", id="same").json()["result"]["owner"] == "zig"
    assert zig("query", collection="shared").json()["total"] == 1
