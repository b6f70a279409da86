"""`arcana plugin call`: one request to one plugin file, through a real in-process kernel, without a server.

Nothing here is a second pipeline. A :class:`Kernel` serves a temporary
plugin folder holding only the file (and its sidecars) from a temporary,
migrated SQLite database (or ``--db FILE``, to keep the store between calls),
watcher off; the request goes through ``kernel.core`` exactly as the REST edge
(``arcana.edge.plugin_http``) or the gRPC edge hands it over, so routing,
authentication, RBAC, rate limits, the envelope and the error model are the
server's own. ``--as USER --roles ...`` mints a short-lived access token with
the kernel's own signer (an ephemeral HS256 secret unless the config names
keys), so the principal the plugin sees is one the kernel verified.

Grants: with no ``--config``, the plugin gets what its manifest requests (the
author is calling their own plugin on their own machine); with one, that
config's grants and limits apply, as ``arcana serve`` would apply them.
"""

from __future__ import annotations

import dataclasses
import http
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from google.protobuf import json_format

from arcana.config import ArcanaConfig
from arcana.core import request_id, unexpected
from arcana.descriptors import RpcMethod
from arcana.edge.errors import HTTP_STATUS, error_body, error_response
from arcana.envelopes import HttpRequest
from arcana.errors import (
    ArcanaError,
    ErrorCode,
    ManifestInvalid,
    NotFound,
    PayloadTooLarge,
    PluginLoadError,
    Problem,
    ValidationFailed,
    WasmFormatError,
)
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.kernel import Kernel
from arcana.loader import sidecar_of
from arcana.manifest import parse_manifest
from arcana.preflight import quieted
from arcana.tracing import end_server_span, http_server_span, traceparent_of
from arcana.wasm_binary import MANIFEST_SECTION, custom_sections

# The address the call comes from, for the per-address limits (the caller is this machine).
CLIENT = "127.0.0.1"
# Lifetime of the token minted for --as: long enough for one call, useless after it.
TOKEN_TTL_S = 60
# "GET /path?query": an HTTP method token, one space, an origin-form target.
REQUEST_LINE = re.compile(r"^([A-Za-z]+)\s+(/\S*)$")
# "pkg.v1.Service/Method" (a leading slash allowed): a gRPC method.
GRPC_METHOD = re.compile(r"^/?([A-Za-z_][\w.]*\.[A-Za-z_]\w*)/([A-Za-z_]\w*)$")
# What a path keeps as written: RFC 3986's unreserved and sub-delims, ":", "@", "/" and existing "%XX" escapes.
URL_SAFE = "/%:@!$&'()*+,;=-._~"
USAGE_FIX = "give 'METHOD /path' (e.g. 'GET /api/v1/hello/Ada') or a gRPC method 'pkg.Service/Method'"


@dataclass(frozen=True)
class HttpTarget:
    method: str
    raw_path: str  # as written (percent-encoded): what routing matches, as the edge's raw_path
    query: dict[str, list[str]]

    @property
    def path(self) -> str:
        """The decoded path, as the envelope's ``path`` (the ASGI scope's ``path``)."""
        return unquote(self.raw_path)


@dataclass(frozen=True)
class GrpcTarget:
    wire: str  # "/pkg.Service/Method", as the gRPC edge looks it up


Target = HttpTarget | GrpcTarget


@dataclass(frozen=True)
class CallRequest:
    """What the command line asked for, parsed."""

    file: Path
    target: Target
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    roles: tuple[str, ...] = ()
    db: Path | None = None


@dataclass(frozen=True)
class Answer:
    """The response as a client would see it: HTTP status (or gRPC status name), headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes
    grpc_status: str | None = None  # set for gRPC calls: "OK", "UNAUTHENTICATED", ...

    @property
    def exit_code(self) -> int:
        """0 for a 2xx/3xx answer (gRPC OK), 1 for a 4xx/5xx one (any other gRPC status)."""
        if self.grpc_status is not None:
            return ExitCode.OK if self.grpc_status == "OK" else ExitCode.FAILED
        return ExitCode.OK if self.status < 400 else ExitCode.FAILED


def usage(cause: str, fix: str) -> StartupFailure:
    return StartupFailure(ExitCode.CONFIG, cause, fix)


def parse_target(text: str) -> Target:
    """'GET /api/v1/x/1?a=b' or 'pkg.Service/Method'; a usage error otherwise."""
    line = text.strip()
    found = REQUEST_LINE.match(line)
    if found is not None:
        method, target = found.groups()
        raw_path, _, query = target.partition("?")
        parsed = parse_qs(query, keep_blank_values=True) if query else {}
        # As a client sends it: characters a URL may not hold percent-encoded, escapes already there kept.
        return HttpTarget(method.upper(), quote(raw_path, safe=URL_SAFE), parsed)
    rpc = GRPC_METHOD.match(line)
    if rpc is not None:
        return GrpcTarget(f"/{rpc.group(1)}/{rpc.group(2)}")
    raise usage(f"not a request line or gRPC method: {text!r}", USAGE_FIX)


def parse_headers(lines: list[str]) -> dict[str, str]:
    """'Name: value' lines -> lower-cased names, repeated names joined with ',' (as the REST edge does)."""
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", name):
            raise usage(f"not a header: {line!r}", "give --header 'Name: value'")
        value = value.strip()
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def read_body(text: str | None) -> bytes:
    """--body as given, or the contents of a file for '@FILE'."""
    if text is None:
        return b""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise usage(
                f"cannot read the body file {path}: {exc.strerror}", "give --body JSON or --body @FILE"
            ) from exc
    return text.encode()


def build_request(
    file: Path,
    target: str,
    body: str | None = None,
    headers: list[str] | None = None,
    user: str | None = None,
    roles: str | None = None,
    db: Path | None = None,
) -> CallRequest:
    """The command line's arguments -> a request, or a usage error (exit code 2) naming the fix."""
    if not file.is_file():
        raise usage(f"plugin file {file} does not exist", "give the path of a built .wasm")
    parsed = parse_target(target)
    header_map = parse_headers(headers or [])
    role_list = tuple(r.strip() for r in (roles or "").split(",") if r.strip())
    if role_list and user is None:
        raise usage("--roles needs --as", "give --as USER with --roles")
    if user is not None and "authorization" in header_map:
        raise usage("both --as and an Authorization header", "give one of them")
    if user is not None and not user.strip():
        raise usage("--as needs a user id", "give --as USER")
    data = read_body(body)
    if data and isinstance(parsed, HttpTarget):
        header_map.setdefault("content-type", "application/json" if _is_json(data) else "text/plain; charset=utf-8")
        header_map["content-length"] = str(len(data))
    return CallRequest(file, parsed, data, header_map, user, role_list, db)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def requested_grants(file: Path) -> dict[str, list[str]]:
    """{plugin name: the capabilities its manifest requests}; {} when the manifest cannot be read.

    The kernel's loader reads the manifest again and reports what is wrong with it; here only the grants matter.
    """
    sidecar = sidecar_of(file)
    try:
        if sidecar.is_file():
            text = sidecar.read_text()
        else:
            embedded = custom_sections(file.read_bytes()).get(MANIFEST_SECTION)
            if embedded is None:
                return {}
            text = embedded.decode()
        manifest = parse_manifest(text)
    except (OSError, UnicodeDecodeError, WasmFormatError, ManifestInvalid):
        return {}
    return {manifest.name: sorted(manifest.requested_capabilities())}


def kernel_config(operator: ArcanaConfig | None, file: Path, folder: Path, db: Path) -> ArcanaConfig:
    """The in-process kernel's config: the operator's (or the defaults with the manifest's grants), on ``folder``
    and a SQLite ``db``, watcher off, tokens signed with an ephemeral secret when the algorithm is HS256.
    """
    base = operator if operator is not None else dataclasses.replace(ArcanaConfig(), grants=requested_grants(file))
    plugins = dataclasses.replace(base.plugins, dir=str(folder), watch=False)
    database = dataclasses.replace(base.database, url=f"sqlite:///{db}", auto_migrate=True)
    # Dev mode signs with a fresh secret when $ARCANA_JWT_SECRET holds none: the token never leaves this process.
    auth = dataclasses.replace(base.auth, dev=True) if base.auth.algorithm == "HS256" else base.auth
    return dataclasses.replace(base, plugins=plugins, database=database, auth=auth)


@contextmanager
def staged(file: Path) -> Iterator[tuple[Path, Path]]:
    """A temporary folder with the plugin file (and its .toml/.pb sidecars) and room for a database."""
    with tempfile.TemporaryDirectory(prefix="arcana-call-") as tmp:
        folder = Path(tmp) / "plugins"
        folder.mkdir()
        copy = folder / file.name
        shutil.copyfile(file, copy)
        for sidecar in (sidecar_of(file), file.with_suffix(".pb")):
            if sidecar.is_file():
                shutil.copyfile(sidecar, folder / sidecar.name)
        yield copy, Path(tmp) / "arcana.db"


async def call_plugin(request: CallRequest, operator: ArcanaConfig | None = None) -> Answer:
    """Load the plugin in a fresh kernel and make the call; PluginLoadError when the kernel refuses the file."""
    with staged(request.file) as (copy, scratch_db):
        db = request.db.resolve() if request.db is not None else scratch_db
        kernel = Kernel(kernel_config(operator, request.file, copy.parent, db))
        try:
            with quieted("arcana.auth"):  # the dev-mode warning about an ephemeral secret is ours, and expected
                kernel.start()
            # A refusal is printed by the command, with every fix, once.
            with quieted("arcana.kernel", logging.CRITICAL):
                await kernel.load_all()
            _require_loaded(kernel, copy, request.file)
            authorization = request.headers.get("authorization", "")
            if request.user is not None:
                token, _ = kernel.identity.issue_token(request.user, list(request.roles), TOKEN_TTL_S)
                authorization = f"Bearer {token}"
            if isinstance(request.target, GrpcTarget):
                return await _call_grpc(kernel, request.target, request, authorization)
            return await _call_http(kernel, request.target, request, authorization)
        finally:
            kernel.close()


def _require_loaded(kernel: Kernel, copy: Path, original: Path) -> None:
    failure = kernel.registry.failures.get(copy)
    if failure is not None:
        raise PluginLoadError(str(original), list(failure.problems), failure.plugin)
    if not any(p.source == copy for p in kernel.registry.snapshot.plugins.values()):
        problem = Problem("file", "the kernel did not load it", "check it with `arcana plugin check`")
        raise PluginLoadError(str(original), [problem])


async def _call_http(kernel: Kernel, target: HttpTarget, request: CallRequest, authorization: str) -> Answer:
    """As ``PluginHttpEdge._serve``: request id, address limit, route, span, the core's call, the error model."""
    core = kernel.core
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    rid = request_id(headers.get("x-request-id", ""))
    span = None
    try:
        await core.limit_address(CLIENT)
        match = core.route_http(target.method, target.raw_path)
        if match is None:
            raise NotFound(f"no route for {target.path}")  # what the kernel app answers, in the same model
        traceparent = headers.get("traceparent", "")
        if core.tracing is not None:
            span = http_server_span(core.tracing, target.method, match.target, rid, traceparent)
            traceparent = traceparent_of(span)
        limit = kernel.config.server.max_body_bytes
        if len(request.body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        http_request = HttpRequest(
            method=target.method,
            path=target.path,
            query=target.query,
            headers=headers,
            body=request.body,
            request_id=rid,
            traceparent=traceparent,
            authorization=authorization,
            client=CLIENT,
        )
        response = await core.call_http(match, http_request)
        status, body, out_headers = response.status, response.body, dict(response.headers)
    except ArcanaError as exc:
        status, body, out_headers = error_response(exc, rid)
    except Exception as exc:  # noqa: BLE001  as the edge: a kernel bug, answered INTERNAL
        status, body, out_headers = error_response(unexpected(exc, rid), rid)
    if span is not None:
        end_server_span(span, "http.response.status_code", status, status >= 500)
    out_headers["x-request-id"] = rid
    out_headers["content-length"] = str(len(body))
    return Answer(status, out_headers, body)


async def _call_grpc(kernel: Kernel, target: GrpcTarget, request: CallRequest, authorization: str) -> Answer:
    """As the gRPC edge: proto3 JSON in -> wire bytes -> ``core.call_grpc`` -> wire bytes -> proto3 JSON out."""
    core = kernel.core
    metadata = {k: v for k, v in request.headers.items() if k != "authorization"}
    rid = request_id(metadata.get("x-request-id", ""))
    found = core.rpc_target(target.wire)
    if found is None:  # the server's gRPC answers UNIMPLEMENTED for a method no plugin serves
        body = error_body(ErrorCode.NOT_FOUND, f"no method {target.wire[1:]}", rid)
        return Answer(404, {"x-request-id": rid}, body, grpc_status="UNIMPLEMENTED")
    try:
        data = _encode_request(found.method, request.body)
        reply = await core.call_grpc(found, data, metadata, rid, authorization, CLIENT)
        body = _decode_reply(found.method, reply)
        return Answer(200, {"x-request-id": rid}, body, grpc_status="OK")
    except ArcanaError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001  as the edge: a kernel bug, answered INTERNAL
        error = unexpected(exc, rid)
    from arcana.edge.grpc_errors import grpc_status  # the gRPC edge's one table (grpc loads only for gRPC calls)

    name = grpc_status(error).name
    body = error_body(error.code, error.message, rid)
    return Answer(HTTP_STATUS[error.code], {"x-request-id": rid}, body, grpc_status=name)


def _encode_request(method: RpcMethod, body: bytes) -> bytes:
    """--body (proto3 JSON; empty: the empty message) -> the request's wire bytes, or VALIDATION_FAILED."""
    try:
        value: Any = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise ValidationFailed(f"the body is not JSON: {exc}") from exc
    try:
        return json_format.ParseDict(value, method.input_type()).SerializeToString()
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationFailed(f"the body does not fit {method.input_type.DESCRIPTOR.full_name}: {exc}") from exc


def _decode_reply(method: RpcMethod, reply: bytes) -> bytes:
    """The reply's wire bytes -> proto3 JSON, as a gRPC client with the same .proto would read it."""
    message = method.output_type()
    message.ParseFromString(reply)
    return json.dumps(json_format.MessageToDict(message)).encode()


def format_answer(answer: Answer) -> bytes:
    """The status line, the headers, a blank line, then the body (JSON pretty-printed, other text as is)."""
    if answer.grpc_status is not None:
        lines = [f"gRPC {answer.grpc_status}"]
    else:
        try:
            reason = http.HTTPStatus(answer.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {answer.status} {reason}".rstrip()]
    lines += [f"{k}: {v}" for k, v in answer.headers.items()]
    head = ("\n".join(lines) + "\n\n").encode()
    return head + pretty_body(answer.body)


def pretty_body(body: bytes) -> bytes:
    if not body:
        return b""
    try:
        parsed = json.loads(body)
    except ValueError:  # not JSON (nor UTF-8): printed as it came
        return body if body.endswith(b"\n") else body + b"\n"
    return (json.dumps(parsed, indent=2, ensure_ascii=False) + "\n").encode()
