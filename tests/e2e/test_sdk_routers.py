"""The router of each guest SDK (Zig, AssemblyScript, C), end to end through a real server.

Each probe (tests/fixtures/plugins/zrouter, asrouter, crouter) exports one
handler, `api`, named by five `[[route]]`s; its router serves three of them
and leaves out a method (DELETE on the items template) and a template
(`/stray`) the manifest declares, so the kernel routes those calls to the
plugin and the SDK's router must answer them in the error model. asrouter
also carries the AssemblyScript auth bindings no other probe calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from conftest import install
from e2e.server import TEST_SECRET, ArcanaServer, mint

pytestmark = pytest.mark.toolchain
PROBES = {"zig": "zrouter", "as": "asrouter", "c": "crouter"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Any:
    work = tmp_path_factory.mktemp("routers")
    folder = work / "plugins"
    folder.mkdir()
    for name in PROBES.values():
        install(fixture_wasm[name], folder, name)
    config = {"grants": {"*": ["log"], "asrouter": ["auth", "auth.issue"]}}
    server = ArcanaServer(folder, work, config).start()
    yield server
    server.stop()


def items(server: ArcanaServer, sdk: str) -> str:
    return f"{server.url}/probe/router/{sdk}/items"


@pytest.mark.parametrize("sdk", PROBES)
def test_the_router_calls_the_handler_of_the_method_and_route_template(server: ArcanaServer, sdk: str) -> None:
    template = f"/probe/router/{sdk}/items/{{id}}"
    got = httpx.get(f"{items(server, sdk)}/a%22b%C3%A9")
    assert got.status_code == 200
    assert got.json() == {"handler": "get", "method": "GET", "route": template, "id": 'a"bé'}
    put = httpx.put(f"{items(server, sdk)}/x", json={"any": "body"})
    assert put.json() == {"handler": "put", "method": "PUT", "route": template, "id": "x"}
    made = httpx.post(items(server, sdk), json={})
    assert made.status_code == 201
    assert made.json() == {"handler": "create", "method": "POST", "route": f"/probe/router/{sdk}/items", "id": None}


@pytest.mark.parametrize("sdk", PROBES)
def test_a_method_the_router_lacks_on_a_known_template_is_405_naming_the_allowed_ones(
    server: ArcanaServer, sdk: str
) -> None:
    refused = httpx.delete(f"{items(server, sdk)}/x")
    assert refused.status_code == 405
    assert refused.json()["code"] == "METHOD_NOT_ALLOWED"
    assert refused.json()["message"] == f"DELETE is not allowed on /probe/router/{sdk}/items/{{id}} (allowed: GET, PUT)"


@pytest.mark.parametrize("sdk", PROBES)
def test_a_template_the_router_lacks_is_404(server: ArcanaServer, sdk: str) -> None:
    missing = httpx.get(f"{server.url}/probe/router/{sdk}/stray")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    assert missing.json()["message"] == f"GET /probe/router/{sdk}/stray: no handler in this plugin's router"


def test_assemblyscript_issue_token_mints_a_token_with_the_roles_and_ttl_asked(server: ArcanaServer) -> None:
    issued = httpx.post(f"{server.url}/probe/router/as/token", json={"sub": "minted", "roles": ["reader"], "ttl": 60})
    assert issued.status_code == 200
    claims = jwt.decode(issued.json()["token"], TEST_SECRET, algorithms=["HS256"], audience="arcana")
    assert (claims["sub"], claims["roles"], claims["exp"] - claims["iat"]) == ("minted", ["reader"], 60)
    too_long = httpx.post(f"{server.url}/probe/router/as/token", json={"sub": "m", "roles": [], "ttl": 7200})
    assert too_long.status_code == 400 and too_long.json()["code"] == "VALIDATION_FAILED"
    assert "ttl_s" in too_long.json()["message"]


def test_assemblyscript_verify_password_tells_the_right_password_from_a_wrong_one(server: ArcanaServer) -> None:
    checked = httpx.post(f"{server.url}/probe/router/as/verify", json={"password": "correct horse", "wrong": "horse"})
    assert checked.json() == {"valid": True, "wrong_valid": False}


def test_assemblyscript_check_role_answers_for_the_callers_roles(server: ArcanaServer) -> None:
    url = f"{server.url}/probe/router/as/role/editor"
    assert httpx.get(url, headers={"authorization": f"Bearer {mint('e', ['editor'])}"}).json() == {"has_role": True}
    assert httpx.get(url, headers={"authorization": f"Bearer {mint('u', ['user'])}"}).json() == {"has_role": False}
