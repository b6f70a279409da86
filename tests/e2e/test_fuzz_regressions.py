"""Inputs the fuzz suite (test_fuzz_edges.py) found, each pinned as a plain test against a real server.

Every test sends the exact input that failed and checks the answer the
kernel gives now; after each, the server still answers /health and its log
has no traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import grpc
import httpcore
import httpx
import pytest

from conftest import ROOT
from e2e.server import ArcanaServer, admin_headers, mint

ERROR_KEYS = {"code", "message", "request_id", "timestamp"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("fuzz-regressions")
    folder = work / "plugins"
    folder.mkdir()
    for name in ("echo", "notes"):
        shutil.copyfile(ROOT / "plugins" / name / f"{name}.wasm", folder / f"{name}.wasm")
    srv = ArcanaServer(folder, work).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def still_healthy(server: ArcanaServer) -> Iterator[None]:
    yield
    assert httpx.get(f"{server.url}/health").status_code == 200
    log = server.logs()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


def _get(server: ArcanaServer, path: str, host: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET with this exact Host header (httpx derives Host from the URL; httpcore sends what it is given)."""
    with httpcore.ConnectionPool() as pool:
        url = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=server.port, target=path.encode())
        sent = [(b"host", host), *((k.encode(), v.encode()) for k, v in (headers or {}).items())]
        reply = pool.request(b"GET", url, headers=sent)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.content)


# werkzeug IDNA-encodes the Host to bind Quart's URL map, and raised BadHost for a label over 63 characters
# or an empty one while Quart built the request context, before any error handler: uvicorn's plain 500 on
# kernel paths, INTERNAL on paths no plugin serves, and a traceback in the log either way.
UNENCODABLE_HOSTS = [b"x" * 300, b"a..b", b".example.com", b"x" * 64 + b".example.com:8080"]


@pytest.mark.parametrize("host", UNENCODABLE_HOSTS)
def test_a_host_werkzeug_cannot_encode_is_served_like_any_other(server: ArcanaServer, host: bytes) -> None:
    assert _get(server, "/health", host).json() == {"status": "ok"}
    assert _get(server, "/ready", host).status_code == 200
    listing = _get(server, "/api/v1/admin/plugins", host, admin_headers())
    assert listing.status_code == 200 and sorted(p["name"] for p in listing.json()["plugins"]) == ["echo", "notes"]
    missing = _get(server, "/api/v1/nothing", host)  # no plugin serves it: the kernel app's 404
    assert missing.status_code == 404 and set(missing.json()) == ERROR_KEYS
    assert missing.json()["code"] == "NOT_FOUND"


# JSON lets a token's claims carry a lone surrogate ("\\ud800"), and PyJWT's parser takes it. A correctly signed
# token whose `sub` held one reached the revocation lookup, where SQLite refused to encode it: INTERNAL on every
# authenticated REST route and gRPC method. One in `roles` reached the plugin's envelope, which the plugin could
# not parse: a 400 blaming the client's request.
# The tokens are minted when the test runs, not when it is collected: a long suite would see them expire.
@pytest.mark.parametrize(
    "claims",
    [("\ud800", []), ("a\udfffb", ["admin"]), ("u-1", ["\udc80admin"])],
    ids=["sub", "admin-sub", "role"],
)
def test_a_token_claim_that_is_not_unicode_text_is_unauthorized(
    server: ArcanaServer, claims: tuple[str, list[str]]
) -> None:
    bearer = {"authorization": f"Bearer {mint(*claims)}"}
    for path in ("/api/v1/notes", "/api/v1/admin/plugins", "/api/v1/echo"):
        r = httpx.request("GET" if "echo" not in path else "POST", server.url + path, headers=bearer, json={})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == "UNAUTHORIZED" and r.json()["message"] == "the access token is invalid"
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(
            "/arcana.admin.v1.AdminService/ListPlugins", request_serializer=bytes, response_deserializer=bytes
        )
        with pytest.raises(grpc.RpcError) as info:
            call(b"", metadata=[("authorization", bearer["authorization"])], timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
