"""Fuzz: random requests against a live server's REST and gRPC edges, never a 500 and never a traceback.

One real ``arcana serve`` for the module, serving the example plugins (hello,
echo, notes). Hypothesis draws methods, request targets (plugin and kernel
paths with random segments, percent-encoding, dot segments, odd characters,
query strings), headers (random names and values, content types, encodings,
forwarded-for and request ids, authorization with real, minted, forged and
garbled tokens) and bodies (random bytes, random JSON, NaN and infinities,
deep nesting, huge integers, invalid UTF-8, lone surrogates), and for gRPC
random messages and metadata. Every answer must be:

- never a 500 (the example plugins do not misbehave, so not even PLUGIN_FAILED);
- when not 2xx, the error model: ``{"code", "message", "request_id", "timestamp"}``
  as JSON, a code from ``ErrorCode``, the request id of the ``x-request-id`` header;
- on gRPC, never UNKNOWN or INTERNAL;

and the server's log gains no traceback and no "unhandled error" line (checked
after every request, so hypothesis shrinks to the request that caused it).
The last test checks that the process is still up and ready.

Requests go out through httpcore, httpx's own HTTP/1.1 engine: it sends the
request target byte for byte, where httpx would remove dot segments and
re-escape characters. Everything sent is something a client can send (h11
checks every request line and header before it leaves).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpcore
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arcana.errors import ErrorCode
from conftest import ROOT
from e2e.server import AUDIENCE, ISSUER, TEST_SECRET, ArcanaServer, admin_headers, mint
from fuzzing import ANY_TEXT, SCALARS, fuzz_settings, json_values

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

ERROR_KEYS = {"code", "message", "request_id", "timestamp"}
CODES = {code.value for code in ErrorCode}
MAX_BODY = 65_536
# Argon2 at its cheapest and no failed-login lockout: the fuzz reaches past login's rate limit, quickly.
CONFIG = {
    "server": {"max_body_bytes": MAX_BODY},
    "auth": {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "login_failures_per_account": 0,
        "login_failures_per_address": 0,
    },
}
EMAIL, PASSWORD = "fuzz@example.com", "fuzz-password-1"
TIMEOUTS = {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 10.0}


# ---------------------------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Seeds:
    """What the fuzz can reuse: a real user's tokens, and one of their notes."""

    user_id: str
    access_token: str
    refresh_token: str
    note_id: str


class LogWatch:
    """The server log's lines since the last look that show a kernel fault."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def new_faults(self) -> list[str]:
        with self._path.open("rb") as log:
            log.seek(self._offset)
            text = log.read()
        self._offset += len(text)
        lines = text.decode(errors="replace").splitlines()
        return [line[:2000] for line in lines if "Traceback" in line or "unhandled error" in line]


@dataclass
class Live:
    server: ArcanaServer
    seeds: Seeds
    http: httpcore.ConnectionPool
    grpc: grpc.Channel
    log: LogWatch


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("fuzz-edges")
    folder = work / "plugins"
    folder.mkdir()
    for name in ("hello", "echo", "notes"):
        shutil.copyfile(ROOT / "plugins" / name / f"{name}.wasm", folder / f"{name}.wasm")
    server = ArcanaServer(folder, work, CONFIG).start()
    try:
        with httpcore.ConnectionPool() as http, grpc.insecure_channel(server.grpc_address) as channel:
            yield Live(server, _seed(http, server), http, channel, LogWatch(server.log_path))
    finally:
        server.stop()


def _seed(http: httpcore.ConnectionPool, server: ArcanaServer) -> Seeds:
    def call(method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        reply = send(http, server, method, path.encode(), [*_text_headers(headers), JSON_TYPE], json.dumps(body))
        assert 200 <= reply.status < 300, (path, reply)
        return json.loads(reply.body)  # type: ignore[no-any-return]

    user = call("POST", "/api/v1/admin/users", {"email": EMAIL, "password": PASSWORD}, admin_headers())
    pair = call("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD}, {})
    bearer = {"authorization": f"Bearer {pair['access_token']}"}
    note = call("POST", "/api/v1/notes", {"title": "seed", "tags": ["a"]}, bearer)
    return Seeds(user["id"], pair["access_token"], pair["refresh_token"], note["id"])


# ---------------------------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


JSON_TYPE = (b"content-type", b"application/json")


def _text_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def send(
    http: httpcore.ConnectionPool,
    server: ArcanaServer,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | str = b"",
    chunked: bool = False,
) -> Reply:
    """One request, the target and headers exactly as given; the body declared by length, or sent chunked."""
    data = body.encode() if isinstance(body, str) else body
    framing = [(b"transfer-encoding", b"chunked")] if chunked else [(b"content-length", str(len(data)).encode())]
    url = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=server.port, target=target)
    content: bytes | Iterator[bytes] = iter([data[: len(data) // 2], data[len(data) // 2 :]]) if chunked else data
    if not any(name.lower() == b"host" for name, _ in headers):
        headers = [(b"host", f"127.0.0.1:{server.port}".encode()), *headers]
    response = http.request(
        method.encode(),
        url,
        headers=[*framing, *headers],
        content=content,
        extensions={"timeout": TIMEOUTS},
    )
    out: dict[str, str] = {}
    for key, value in response.headers:
        out[key.decode("latin-1").lower()] = value.decode("latin-1")
    return Reply(response.status, out, response.content)


def check(live: Live, method: str, reply: Reply) -> None:
    """The properties every answer has, and no fault in the log since the last request."""
    faults = live.log.new_faults()  # read first: a failed assertion below must not leave them to the next request
    event(f"{method} {reply.status}")  # the spread of answers: pytest --hypothesis-show-statistics
    assert reply.status < 500 or reply.status in (503, 504), reply
    if reply.status >= 300 and method != "HEAD":
        assert reply.headers.get("content-type") == "application/json", reply
        body = json.loads(reply.body)
        assert isinstance(body, dict) and set(body) - {"fields"} == ERROR_KEYS, reply
        if "fields" in body:  # a request that breaks its route's schema lists them (docs/errors.md), and only it
            assert body["code"] == "VALIDATION_FAILED" and body["fields"], reply
            assert all(set(f) == {"pointer", "reason"} for f in body["fields"]), reply
        assert body["code"] in CODES and body["request_id"] == reply.headers.get("x-request-id"), reply
    assert not faults, faults


# ---------------------------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class Route:
    """A method and path template, and the body fields the route reads."""

    method: str
    template: str
    fields: tuple[str, ...] = ()


PLUGIN_ROUTES = [
    Route("GET", "/api/v1/hello/{}"),
    Route("POST", "/api/v1/echo", ("anything",)),
    Route("GET", "/api/v1/notes"),
    Route("POST", "/api/v1/notes", ("title", "body", "tags")),
    Route("GET", "/api/v1/notes/{}"),
    Route("PUT", "/api/v1/notes/{}", ("title", "body", "tags", "version")),
    Route("DELETE", "/api/v1/notes/{}"),
]
AUTH_ROUTES = [
    Route("POST", "/api/v1/auth/login", ("email", "password")),
    Route("POST", "/api/v1/auth/refresh", ("refresh_token",)),
    Route("POST", "/api/v1/auth/logout", ("refresh_token", "everywhere")),
]
ADMIN_ROUTES = [
    Route("GET", "/api/v1/admin/users"),
    Route("POST", "/api/v1/admin/users", ("email", "password", "roles")),
    Route("GET", "/api/v1/admin/users/{}"),
    Route("PATCH", "/api/v1/admin/users/{}", ("roles", "disabled", "password")),
    Route("DELETE", "/api/v1/admin/users/{}"),
    Route("GET", "/api/v1/admin/plugins"),
]
KERNEL_ROUTES = [Route("GET", "/health"), Route("GET", "/ready"), Route("HEAD", "/health"), Route("HEAD", "/ready")]
# Paths nothing serves, near the ones that are served.
UNSERVED = [
    Route("GET", template)
    for template in [
        "/api/v1/hello",
        "/api/v1/hello/{}/{}",
        "/api/v1/echo/{}",
        "/api/v1/notes/{}/{}",
        "/api/v1/{}",
        "/api/{}/hello/Ada",
        "/{}",
        "/",
        "/health/{}",
        "/api/v1/auth",
        "/api/v1/auth/{}",
        "/api/v1/admin",
        "/api/v1/admin/{}",
        "/api/v1/{}/login",
    ]
]

METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "PURGE"])
# Printable ASCII is all a request target may hold (RFC 9112; h11 refuses the rest before it leaves).
SEGMENT_CHARS = "".join(c for c in string.printable[:94] if c not in "/?#%")
PERCENT = st.binary(min_size=1, max_size=6).map(lambda b: "".join(f"%{x:02X}" for x in b))
ODD_SEGMENTS = ["", ".", "..", "%2e%2e", "%2F", "%00", "%", "%zz", "%C0%AF", "%ED%A0%80", "%FF", "~", "#frag", ";a=b"]


def segments(seeds: Seeds) -> st.SearchStrategy[str]:
    """A path segment: a real id, a name, or odd characters and percent-encoded bytes."""
    plausible = st.one_of(
        st.sampled_from([seeds.note_id, seeds.user_id, "Ada", "x" * 300]),
        st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=20),
    )
    odd = st.one_of(
        st.sampled_from(ODD_SEGMENTS),
        st.text(SEGMENT_CHARS, min_size=1, max_size=20),
        st.lists(st.one_of(st.text(SEGMENT_CHARS, min_size=1, max_size=4), PERCENT), min_size=1, max_size=5).map(
            "".join
        ),
    )
    return st.one_of(plausible, plausible, odd)


QUERY_KEYS = st.one_of(
    st.sampled_from(["page", "size", "sort", "order", "tag", "version", "name"]), st.text(SEGMENT_CHARS, max_size=8)
)
QUERY_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-1", "1.0", "20", "100", "101", "9" * 30, "%C2%B2", "%D9%A3", "title", "desc", "+"]),
    st.text(SEGMENT_CHARS.replace("&", "").replace("=", ""), max_size=12),
    PERCENT,
)


@st.composite
def targets(draw: st.DrawFn, template: str, seeds: Seeds) -> bytes:
    """The template with each ``{}`` filled, now and then bent (trailing or doubled slash, upper case); a query."""
    path = template
    while "{}" in path:
        path = path.replace("{}", draw(segments(seeds)), 1)
    path = draw(st.sampled_from([path] * 6 + [path + "/", path.replace("/", "//", 1), path.upper()]))
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
    query = draw(st.one_of(st.just("&".join(f"{k}={v}" for k, v in pairs)), st.sampled_from(["", "&&", "=", "a", "?"])))
    return (path + ("?" + query if query else "")).encode()


# ---- headers

TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Visible ASCII and obs-text: what a header value may hold, around single spaces.
VALUE_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Not random names: the headers that frame the message (the sender sets them: a wrong one makes another
# request, not a fuzzed one), and authorization (drawn on its own, one per request).
NOT_RANDOM = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "expect"}
NOT_RANDOM |= {"keep-alive", "proxy-connection", "http2-settings", "authorization"}
HEADER_VALUES = st.lists(
    st.binary(min_size=1, max_size=24).map(lambda b: bytes(VALUE_BYTES[x % len(VALUE_BYTES)] for x in b))
)
HEADER_VALUES = HEADER_VALUES.map(b" ".join) | st.just(b"")
CONTENT_TYPES = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json; charset=latin-1",
        b"APPLICATION/JSON",
        b"application/problem+json",
        b"application/json;",
        b"text/plain",
        b"application/octet-stream",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"multipart/form-data",
        b"",
    ]
)
NAMED_VALUES: dict[str, st.SearchStrategy[bytes]] = {
    "content-type": CONTENT_TYPES | HEADER_VALUES,
    "content-encoding": st.sampled_from([b"gzip", b"identity", b"br, gzip", b"IDENTITY", b"x-unknown"]) | HEADER_VALUES,
    "x-request-id": st.sampled_from([b"req-1", b"a" * 128, b"a" * 129, b"bad id", b"\xff\xfe"]) | HEADER_VALUES,
    "traceparent": st.sampled_from([b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01"]) | HEADER_VALUES,
    "x-forwarded-for": st.sampled_from([b"10.0.0.1", b"::1", b"1.2.3.4, 5.6.7.8", b"unknown", b"[::1]:80"])
    | HEADER_VALUES,
    "x-forwarded-proto": st.sampled_from([b"https", b"ws", b"wss", b"javascript", b"h\xfft"]) | HEADER_VALUES,
    "forwarded": st.sampled_from([b"for=1.2.3.4;proto=https", b'for="[::1]"']) | HEADER_VALUES,
    "if-match": st.sampled_from([b'"1"', b'W/"2"', b"*", b'"99999999999999999999"']) | HEADER_VALUES,
    "accept": st.sampled_from([b"*/*", b"application/json", b"text/html"]) | HEADER_VALUES,
    "accept-encoding": st.sampled_from([b"gzip", b"br", b"*"]) | HEADER_VALUES,
    "cookie": HEADER_VALUES,
    "origin": HEADER_VALUES,
    "range": st.sampled_from([b"bytes=0-1", b"bytes=-1"]) | HEADER_VALUES,
    # Sent instead of the real one (one Host header per request).
    "host": st.sampled_from([b"localhost", b"127.0.0.1:1", b"a..b", b"x" * 300, b"[::1]", b"h\xffst", b"a b:x"])
    | HEADER_VALUES,
}
NAMED_HEADERS = st.sampled_from(sorted(NAMED_VALUES)).flatmap(lambda n: NAMED_VALUES[n].map(lambda v: (n.encode(), v)))
OTHER_HEADERS = st.tuples(
    st.text(TOKEN_CHARS, min_size=1, max_size=20).filter(lambda n: n.lower() not in NOT_RANDOM).map(str.encode),
    HEADER_VALUES,
)
# Headers besides authorization, at most one Host among them.
HEADERS = st.lists(st.one_of(NAMED_HEADERS, NAMED_HEADERS, OTHER_HEADERS), max_size=6).map(
    lambda p: [h for h in p if h[0] != b"host"] + [h for h in p if h[0] == b"host"][:1]
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: object, secret: str = TEST_SECRET, header: object = None) -> str:
    """A JWT over any JSON claims (NaN included), as a trusted issuer could write it: nothing checked."""
    head = _b64(json.dumps(header if header is not None else {"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def claims() -> st.SearchStrategy[dict[str, Any]]:
    """Valid claims with one replaced; or some replaced or dropped and some added; all of any JSON type."""
    now = int(time.time())
    base = {"sub": "u-fuzz", "roles": ["admin"], "iat": now, "exp": now + 300, "jti": "j", "iss": ISSUER}
    names = st.sampled_from([*base, "aud", "nbf", "arcana_epoch"]) | st.text(max_size=8)
    odd_text = st.sampled_from(["", "\x00", "\ud800", "a\udfffb", "\u202e", "admin\n", "x" * 5000])
    values = st.one_of(
        json_values(),
        ANY_TEXT,
        odd_text,
        st.lists(odd_text | st.just("admin"), max_size=2),
        st.sampled_from([now, now + 10**9, -1, 0, 2**63, 2**64, 10**30, 1e308, [], ["admin", 1], [None]]),
    )
    base["aud"] = AUDIENCE
    one = st.tuples(st.sampled_from([*base, "nbf", "arcana_epoch"]), values).map(lambda t: {**base, t[0]: t[1]})
    some = st.tuples(st.dictionaries(names, values, max_size=4), st.sets(st.sampled_from(sorted(base)), max_size=2))
    return one | some.map(lambda t: {**{k: v for k, v in base.items() if k not in t[1]}, **t[0]})


def valid_tokens(seeds: Seeds) -> list[str]:
    """Tokens the server accepts (until the fuzz revokes the login's): a user's and an admin's."""
    return [seeds.access_token, mint("u-fuzz"), mint("admin-fuzz", ["admin"]), mint(seeds.user_id, ["admin"])]


def authorizations(seeds: Seeds, ascii_only: bool = False) -> st.SearchStrategy[str | bytes]:
    """``Authorization`` values: real tokens intact or garbled, forged and odd claims, odd schemes, junk."""
    real = valid_tokens(seeds)
    tokens = st.one_of(
        st.sampled_from(real),
        st.sampled_from(real).flatmap(
            lambda t: st.integers(0, len(t) - 1).map(lambda i: t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1 :])
        ),
        st.sampled_from(real).flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[:i])),
        claims().map(sign),
        claims().map(lambda c: sign(c, "wrong-secret-0123456789-0123456789")),
        st.sampled_from([{"alg": "none"}, {"alg": "HS512"}, {"alg": "RS256", "kid": "x"}, {"kid": []}, []]).map(
            lambda h: sign({"sub": "x"}, header=h)
        ),
        st.text(string.ascii_letters + string.digits + "-_.", max_size=40),
    )
    schemes = st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Basic ", "Bearer", "Token ", ""])
    junk = st.text(string.printable[:94], max_size=40) if ascii_only else HEADER_VALUES
    return st.one_of(st.tuples(schemes, tokens).map(lambda p: (p[0] + p[1]).strip()), junk)


def signed_in(seeds: Seeds) -> st.SearchStrategy[str | bytes | None]:
    """Mostly a valid token (so requests get past authentication), sometimes none or anything else."""
    valid = st.sampled_from(valid_tokens(seeds)).map(lambda t: f"Bearer {t}")
    return st.one_of(valid, valid, st.none(), authorizations(seeds))


# ---- bodies


def field_values(seeds: Seeds) -> dict[str, st.SearchStrategy[Any]]:
    """For each body field a route reads: values that pass its checks, or nearly."""
    return {
        "anything": json_values(),
        "email": st.sampled_from([EMAIL, "FUZZ@example.com ", "x@y", "a@b@c", "é@x.io", "\u202e@x.io", "a" * 300]),
        "password": st.sampled_from([PASSWORD, "short", "x" * 2000, "\x00" * 8]),
        "refresh_token": st.sampled_from([seeds.refresh_token, "x"]),
        "everywhere": st.booleans(),
        "roles": st.lists(st.sampled_from(["admin", "user", "Admin", "a" * 65, ""]), max_size=3),
        "disabled": st.booleans(),
        "title": st.text(max_size=210),
        "body": st.text(max_size=50),
        "tags": st.lists(st.text(max_size=41), max_size=21),
        "version": st.integers(-1, 3) | st.integers(),
    }


def bodies(seeds: Seeds, fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Objects with the route's fields, plausible or anything; random JSON and not-quite-JSON; junk."""
    values = field_values(seeds)
    plausible = {name: values[name] for name in fields}
    anything = {name: st.one_of(values[name], json_values(), ANY_TEXT) for name in fields}
    objects = st.one_of(
        st.fixed_dictionaries(plausible),
        st.fixed_dictionaries(plausible),
        st.fixed_dictionaries({}, optional=anything),
        st.dictionaries(st.sampled_from(sorted(values)) | st.text(max_size=8), json_values(), max_size=4),
    )
    depth = st.integers(1, 30_000)
    junk = st.one_of(
        json_values(SCALARS).map(lambda v: json.dumps(v).encode()),
        objects.map(lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        st.binary(max_size=300),
        depth.map(lambda n: b"[" * n + b"]" * n),
        depth.map(lambda n: b'{"email":' + b'{"a":' * n + b"1" + b"}" * n + b"}"),
        st.integers(4200, 5000).map(lambda n: b'{"version":' + b"9" * n + b"}"),
        st.integers(MAX_BODY - 20, MAX_BODY + 20).map(lambda n: (b'{"title":"' + b"x" * n)[:n] + b'"}'),
        st.sampled_from(
            [b"", b"null", b"NaN", b"-Infinity", b"1e999", b"-0", b"[]", b'"\\ud800"', b'{"a":"\xff"}', b"{}x"]
        ),
        st.sampled_from([b'{"email": "a@b", "email": "c@d"}', b'\xef\xbb\xbf{"a":1}', b'{"a":1}\x00']),
    )
    return st.one_of(objects.map(lambda o: json.dumps(o).encode()), junk)


# Mostly JSON, as the routes expect; sometimes another type, or none.
BODY_TYPES = st.one_of(st.just([JSON_TYPE]), st.just([JSON_TYPE]), CONTENT_TYPES.map(lambda v: [(b"content-type", v)]))


@dataclass(frozen=True)
class Request:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool


@st.composite
def requests(
    draw: st.DrawFn, routes: list[Route], seeds: Seeds, authorization: st.SearchStrategy[str | bytes | None]
) -> Request:
    """Mostly a served route with its own method, sometimes another method or an unserved path; all else random."""
    route = draw(st.one_of(st.sampled_from(routes), st.sampled_from(routes), st.sampled_from(UNSERVED)))
    method = draw(st.one_of(st.just(route.method), st.just(route.method), METHODS))
    sends_body = method not in ("GET", "HEAD", "DELETE", "OPTIONS") or draw(st.integers(0, 5)) == 0
    body = draw(bodies(seeds, route.fields)) if sends_body else b""
    headers = [*draw(BODY_TYPES)] if body else []
    headers += draw(HEADERS)
    auth = draw(authorization)
    if auth is not None:
        headers.append((b"authorization", auth.encode() if isinstance(auth, str) else auth))
    return Request(method, draw(targets(route.template, seeds)), headers, body, bool(body) and draw(st.booleans()))


def _send(live: Live, request: Request) -> Reply:
    return send(live.http, live.server, request.method, request.target, request.headers, request.body, request.chunked)


# ---------------------------------------------------------------------------------------------- REST


@fuzz_settings(max_examples=250)
@given(data=st.data())
def test_plugin_routes_answer_random_requests_in_the_error_model(live: Live, data: st.DataObject) -> None:
    request = data.draw(requests(PLUGIN_ROUTES, live.seeds, signed_in(live.seeds)))
    check(live, request.method, _send(live, request))


@fuzz_settings(max_examples=200)
@given(data=st.data())
def test_auth_routes_answer_random_requests_in_the_error_model(live: Live, data: st.DataObject) -> None:
    request = data.draw(requests(AUTH_ROUTES, live.seeds, st.none() | authorizations(live.seeds)))
    check(live, request.method, _send(live, request))


@fuzz_settings(max_examples=200)
@given(data=st.data())
def test_admin_routes_answer_random_requests_in_the_error_model(live: Live, data: st.DataObject) -> None:
    admin = st.just(admin_headers()["authorization"])
    request = data.draw(requests(ADMIN_ROUTES, live.seeds, st.one_of(admin, admin, authorizations(live.seeds))))
    check(live, request.method, _send(live, request))


@fuzz_settings(max_examples=100)
@given(data=st.data())
def test_health_and_readiness_answer_random_requests_in_the_error_model(live: Live, data: st.DataObject) -> None:
    request = data.draw(requests(KERNEL_ROUTES, live.seeds, st.none() | authorizations(live.seeds)))
    check(live, request.method, _send(live, request))


# An authenticated route of each kind: a plugin's, the kernel's admin API, a public plugin route (token optional).
AUTHENTICATED = [b"/api/v1/notes", b"/api/v1/admin/plugins", b"/api/v1/admin/users?size=1", b"/api/v1/hello/Ada"]


@fuzz_settings(max_examples=150)
@given(data=st.data())
def test_tokens_with_any_claims_are_accepted_or_refused_in_the_error_model(live: Live, data: st.DataObject) -> None:
    """Signed with the server's own secret (as a trusted issuer would), so each claim is really checked."""
    token = data.draw(claims().map(sign), label="token")
    target = data.draw(st.sampled_from(AUTHENTICATED), label="target")
    check(live, "GET", send(live.http, live.server, "GET", target, [(b"authorization", f"Bearer {token}".encode())]))
    call = live.grpc.unary_unary(
        "/arcana.admin.v1.AdminService/ListPlugins", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    try:
        call(b"", metadata=[("authorization", f"Bearer {token}")], timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (exc.code(), exc.details())
    faults = live.log.new_faults()
    assert not faults, faults


# ---------------------------------------------------------------------------------------------- gRPC

# Each method, and what its request message's string fields 1 and 2 are.
GRPC_METHODS = {
    "/greeter.v1.Greeter/SayHello": ("name",),
    "/arcana.auth.v1.AuthService/Login": ("email", "password"),
    "/arcana.auth.v1.AuthService/Refresh": ("refresh_token",),
    "/arcana.auth.v1.AuthService/Logout": ("refresh_token",),
    "/arcana.admin.v1.AdminService/ListPlugins": (),
}
NOT_METADATA = {"content-type", "te", "host", "user-agent", "connection", "transfer-encoding", "upgrade", "keep-alive"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + (_varint(len(payload)) + payload if wire == 2 else payload)


def messages(seeds: Seeds, fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Protobuf bytes: the method's fields with plausible or any text; wrong wire types, invalid UTF-8, junk."""
    values = field_values(seeds) | {"name": st.sampled_from(["Ada", ""]) | st.text(max_size=30)}
    texts = [(values[name] | ANY_TEXT).filter(lambda v: isinstance(v, str)) for name in fields]
    valid = st.tuples(*texts).map(
        lambda vs: b"".join(_field(i, 2, v.encode("utf-8", "surrogatepass")) for i, v in enumerate(vs, 1))
    )
    odd_fields = st.one_of(
        st.tuples(st.integers(1, 3), st.just(2), st.binary(max_size=40)),
        st.tuples(st.integers(1, 20), st.sampled_from([0, 1, 5]), st.binary(min_size=1, max_size=8)),
    )
    odd = st.lists(odd_fields.map(lambda f: _field(*f)), max_size=4).map(b"".join)
    return st.one_of(valid, valid, odd, odd.map(lambda m: m[:-1]), st.binary(max_size=200))


def metadata(seeds: Seeds) -> st.SearchStrategy[list[tuple[str, str | bytes]]]:
    keys = st.text(string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=16).filter(
        lambda k: k not in NOT_METADATA and not k.startswith("grpc-") and not k.endswith("-bin")
    )
    values = st.text(string.printable[:95], max_size=40).map(str.strip)
    valid = st.sampled_from(valid_tokens(seeds)).map(lambda t: f"Bearer {t}")
    auth = st.one_of(valid, valid, authorizations(seeds, ascii_only=True))
    pairs = st.one_of(
        st.tuples(st.sampled_from(["x-request-id", "traceparent", "x-forwarded-for"]), values),
        st.tuples(keys, values),
        st.tuples(keys.map(lambda k: k + "-bin"), st.binary(max_size=40)),
    )
    return st.tuples(st.lists(pairs, max_size=4), st.none() | auth).map(
        lambda t: t[0] + ([("authorization", t[1])] if t[1] is not None else [])
    )


@fuzz_settings(max_examples=250)
@given(data=st.data())
def test_grpc_methods_answer_random_messages_and_metadata_without_internal_errors(
    live: Live, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(sorted(GRPC_METHODS)), label="method")
    request = data.draw(messages(live.seeds, GRPC_METHODS[method]), label="message")
    sent = data.draw(metadata(live.seeds), label="metadata")
    call = live.grpc.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(request, metadata=sent, timeout=30)
    except grpc.RpcError as exc:
        faults = live.log.new_faults()
        event(f"{method} {exc.code().name}")
        assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (exc.code(), exc.details())
    else:
        faults = live.log.new_faults()
        event(f"{method} OK")
    assert not faults, faults


# ---------------------------------------------------------------------------------------------- afterwards


def test_the_server_survives_the_fuzz(live: Live) -> None:
    """Runs last in this module: the process is up, healthy and ready, and its whole log has no fault."""
    assert live.server.proc is not None and live.server.proc.poll() is None
    for path in (b"/health", b"/ready"):
        assert send(live.http, live.server, "GET", path, []).status == 200
    log = live.server.logs()
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]
