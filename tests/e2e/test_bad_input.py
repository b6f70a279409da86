"""Bad client input against a real server: each gets its documented 4xx in the error model, never a 500.

From an outside attack review: deep JSON, over-long integers, invalid UTF-8
and compressed bodies on plugin routes and on the kernel's own routes, a
non-ASCII digit in a query parameter, kernel-route 405s without ``Allow``,
and ``//`` paths answered by werkzeug (served, or an HTML 308). After every
test the server still answers /health and its log has no traceback.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator

import httpx
import pytest

from arcana.jsonio import MAX_DEPTH
from conftest import ROOT
from e2e.server import ArcanaServer, admin_headers

JSON = {"content-type": "application/json"}
# 981 levels: where json.loads first raised RecursionError inside a request handler.
DEEP_981 = b"[" * 981 + b"]" * 981
DEEP = b'{"email": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_INT = b'{"email": ' + b"9" * 4301 + b"}"
BAD_UTF8 = b'{"email": "\xff\xfe@example.com", "password": "x"}'
# Real gzip bytes are not UTF-8: Quart's get_json raised UnicodeDecodeError on them.
GZIPPED = gzip.compress(b'{"email": "a@example.com", "password": "x"}')

BAD_BODIES = {
    "deep-981": (DEEP_981, JSON),
    "deep-100000": (DEEP, JSON),
    "integer-4301-digits": (HUGE_INT, JSON),
    "invalid-utf8": (BAD_UTF8, JSON),
    "gzip": (GZIPPED, {**JSON, "content-encoding": "gzip"}),
    "gzip-garbage": (b"\x1f\x8b\x08\x00\xff\xfe\xfd garbage", {**JSON, "content-encoding": "gzip"}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("bad-input")
    folder = work / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", folder / "echo.wasm")
    srv = ArcanaServer(folder, work).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def still_healthy(server: ArcanaServer) -> Iterator[None]:
    """After each attack: /health answers and no traceback reached the log."""
    yield
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert "Traceback" not in server.logs(), server.logs()[-3000:]


def _validation_failed(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "VALIDATION_FAILED" and set(body) == {"code", "message", "request_id", "timestamp"}
    assert all(w in body["message"] for w in words), body["message"]


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/v1/echo"),  # a plugin route (plain ASGI edge, the envelope)
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/admin/users"),
        ("PATCH", "/api/v1/admin/users/nobody"),
    ],
)
def test_bad_json_bodies_are_validation_failed_everywhere(
    server: ArcanaServer, method: str, path: str, name: str
) -> None:
    body, headers = BAD_BODIES[name]
    auth = admin_headers() if "/admin/" in path else {}
    r = httpx.request(method, server.url + path, content=body, headers={**headers, **auth})
    _validation_failed(r)
    words = {"deep": "nested", "integer": "out of range", "invalid": "UTF-8", "gzip": "content-encoding"}
    assert words[name.split("-")[0]] in r.json()["message"]


def _nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def test_ordinary_json_still_reaches_the_plugin(server: ArcanaServer) -> None:
    body = {"n": 10**40, "s": "é", "deep": _nested(50)}
    r = httpx.post(f"{server.url}/api/v1/echo", json=body)
    assert r.status_code == 200 and r.json() == {"echo": body}


@pytest.mark.parametrize("path", ["/api/v1/echo", "/api/v1/auth/login"])
def test_the_depth_bound_is_exact(server: ArcanaServer, path: str) -> None:
    """MAX_DEPTH levels pass (echo answers them wrapped two deeper); one more is refused."""
    at_bound = httpx.post(server.url + path, json=_nested(MAX_DEPTH))
    assert at_bound.status_code == (200 if "echo" in path else 400), at_bound.text
    if "echo" in path:
        assert at_bound.json() == {"echo": _nested(MAX_DEPTH)}
    else:  # login parsed it, then wanted an object with an email
        assert "nested" not in at_bound.json()["message"]
    _validation_failed(httpx.post(server.url + path, json=_nested(MAX_DEPTH + 1)), f"more than {MAX_DEPTH} levels")


@pytest.mark.parametrize("query", ["page=%C2%B2", "size=%D9%A3", "page=1" + "0" * 5000, "page=-1", "page=1.0"])
def test_integer_query_parameters_take_ascii_digits_only(server: ArcanaServer, query: str) -> None:
    r = httpx.get(f"{server.url}/api/v1/admin/users?{query}", headers=admin_headers())
    _validation_failed(r, "must be an integer")


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "/health", "GET, HEAD, OPTIONS"),
        ("POST", "/ready", "GET, HEAD, OPTIONS"),
        ("GET", "/api/v1/auth/login", "OPTIONS, POST"),
        ("PUT", "/api/v1/admin/users/u1", "DELETE, GET, HEAD, OPTIONS, PATCH"),
    ],
)
def test_kernel_route_405_names_the_allowed_methods(server: ArcanaServer, method: str, path: str, allowed: str) -> None:
    r = httpx.request(method, server.url + path, headers=admin_headers())
    assert r.status_code == 405 and r.headers["allow"] == allowed
    assert r.json()["code"] == "METHOD_NOT_ALLOWED" and r.json()["message"].endswith(f"allowed: {allowed}")


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "//health"),  # werkzeug stripped the leading slashes and served /health
        ("GET", "//ready"),
        ("GET", "/%2Fhealth"),
        ("POST", "/api/v1//auth/login"),  # werkzeug merged the slashes: an HTML 308 outside the error model
        ("GET", "//api/v1/admin/plugins"),
        ("POST", "//api/v1/echo"),
    ],
)
def test_paths_with_empty_segments_are_404_in_the_error_model(server: ArcanaServer, method: str, path: str) -> None:
    r = httpx.request(method, server.url + path, json={}, headers=admin_headers(), follow_redirects=False)
    assert r.status_code == 404, (r.status_code, r.headers, r.text[:300])
    assert r.headers["content-type"] == "application/json" and r.json()["code"] == "NOT_FOUND"
    assert "location" not in r.headers
