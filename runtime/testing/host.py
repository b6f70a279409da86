"""One plugin file served by a real in-process kernel, without a server: what `arcana plugin call` and the
author test harness (``arcana.testing.PluginHarness``) both run on.

Nothing here is a second pipeline. A :class:`Kernel` serves a temporary
plugin folder holding only the file (and its sidecars) from a temporary,
migrated SQLite database (or a given one, to keep the store), watcher off;
requests go through ``kernel.core`` exactly as the REST edge
(``arcana.edge.plugin_http``) or the gRPC edge hands them over, so routing,
authentication, RBAC, rate limits, the envelope and the error model are the
server's own. Tokens are minted with the kernel's own signer (an ephemeral
HS256 secret unless the config names keys), so the principal the plugin sees
is one the kernel verified.

Grants: with no operator config, the plugin gets what its manifest requests
(the author runs their own plugin on their own machine), or the grants given;
with one, that config's grants and limits apply, as ``arcana serve`` would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
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
from arcana.exit_codes import ExitCode
from arcana.kernel import Kernel
from arcana.loader import schemas_sidecar_of, sidecar_of
from arcana.manifest import Manifest, parse_manifest
from arcana.preflight import quieted
from arcana.registry import LoadedPlugin
from arcana.tracing import end_server_span, http_server_span, traceparent_of
from arcana.wasm_binary import MANIFEST_SECTION, custom_sections

# The address calls come from, for the per-address limits (the caller is this machine).
CLIENT = "127.0.0.1"
# Lifetime of a minted token: long enough for the calls it is made for.
TOKEN_TTL_S = 3600
# "pkg.v1.Service/Method" (a leading slash allowed): a gRPC method.
GRPC_METHOD = re.compile(r"^/?([A-Za-z_][\w.]*\.[A-Za-z_]\w*)/([A-Za-z_]\w*)$")
# What a path keeps as written: RFC 3986's unreserved and sub-delims, ":", "@", "/" and existing "%XX" escapes.
URL_SAFE = "/%:@!$&'()*+,;=-._~"


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


def http_target(method: str, target: str) -> HttpTarget:
    """``GET`` and ``/path?query`` -> a target; characters a URL may not hold percent-encoded, as a client sends."""
    raw_path, _, query = target.partition("?")
    parsed = parse_qs(query, keep_blank_values=True) if query else {}
    return HttpTarget(method.upper(), quote(raw_path, safe=URL_SAFE), parsed)


def grpc_target(method: str) -> GrpcTarget | None:
    """``pkg.Service/Method`` (or ``/pkg.Service/Method``) -> a target; None when it is not a method name."""
    found = GRPC_METHOD.match(method.strip())
    return None if found is None else GrpcTarget(f"/{found.group(1)}/{found.group(2)}")


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


def read_manifest(file: Path) -> Manifest | None:
    """The plugin's manifest (its sidecar's, else the embedded one); None when it cannot be read.

    The kernel's loader reads it again and reports what is wrong with it; here only the name and grants matter.
    """
    sidecar = sidecar_of(file)
    try:
        if sidecar.is_file():
            text = sidecar.read_text()
        else:
            embedded = custom_sections(file.read_bytes()).get(MANIFEST_SECTION)
            if embedded is None:
                return None
            text = embedded.decode()
        return parse_manifest(text)
    except (OSError, UnicodeDecodeError, WasmFormatError, ManifestInvalid):
        return None


def requested_grants(file: Path) -> dict[str, list[str]]:
    """{plugin name: the capabilities its manifest requests}; {} when the manifest cannot be read."""
    manifest = read_manifest(file)
    return {} if manifest is None else {manifest.name: sorted(manifest.requested_capabilities())}


def kernel_config(
    operator: ArcanaConfig | None, file: Path, folder: Path, db: Path, grants: Sequence[str] | None = None
) -> ArcanaConfig:
    """The in-process kernel's config: the operator's (or the defaults with the manifest's grants, or ``grants``),
    on ``folder`` and a SQLite ``db``, watcher off, tokens signed with an ephemeral secret when the algorithm is HS256.
    """
    if operator is not None:
        base = operator
    elif grants is not None:
        manifest = read_manifest(file)
        base = dataclasses.replace(ArcanaConfig(), grants={manifest.name if manifest else "*": list(grants)})
    else:
        base = dataclasses.replace(ArcanaConfig(), grants=requested_grants(file))
    plugins = dataclasses.replace(base.plugins, dir=str(folder), watch=False)
    database = dataclasses.replace(base.database, url=f"sqlite:///{db}", auto_migrate=True)
    # Dev mode signs with a fresh secret when $ARCANA_JWT_SECRET holds none: the token never leaves this process.
    auth = dataclasses.replace(base.auth, dev=True) if base.auth.algorithm == "HS256" else base.auth
    return dataclasses.replace(base, plugins=plugins, database=database, auth=auth)


class InProcessHost:
    """A started kernel serving one plugin file from a temporary folder; ``open`` then calls, then ``close``.

    Async, on the caller's event loop: ``arcana plugin call`` runs one call
    with ``asyncio.run``; the harness keeps one loop for the host's life.
    """

    def __init__(
        self,
        file: Path,
        operator: ArcanaConfig | None = None,
        db: Path | None = None,
        grants: Sequence[str] | None = None,
    ) -> None:
        self.file = file
        self._tmp = tempfile.TemporaryDirectory(prefix="arcana-call-")
        try:
            folder = Path(self._tmp.name) / "plugins"
            folder.mkdir()
            self.copy = folder / file.name
            shutil.copyfile(file, self.copy)
            for sidecar in (sidecar_of(file), file.with_suffix(".pb"), schemas_sidecar_of(file)):
                if sidecar.is_file():
                    shutil.copyfile(sidecar, folder / sidecar.name)
        except BaseException:
            self._tmp.cleanup()
            raise
        self.db = db.resolve() if db is not None else Path(self._tmp.name) / "arcana.db"
        self.kernel = Kernel(kernel_config(operator, file, folder, self.db, grants))
        self._closed = False

    async def open(self) -> LoadedPlugin:
        """Start the kernel and load the file; PluginLoadError (every problem, with its fix) when it is refused."""
        try:
            with quieted("arcana.auth"):  # the dev-mode warning about an ephemeral secret is ours, and expected
                self.kernel.start()
            # The refusal is raised (and printed by the command) with every fix, once.
            with quieted("arcana.kernel", logging.CRITICAL):
                await self.kernel.load_all()
            return self.plugin
        except BaseException:
            self.close()
            raise

    @property
    def plugin(self) -> LoadedPlugin:
        """The loaded plugin; PluginLoadError when the kernel refused (or did not load) the file."""
        failure = self.kernel.registry.failures.get(self.copy)
        if failure is not None:
            raise PluginLoadError(str(self.file), list(failure.problems), failure.plugin)
        for plugin in self.kernel.registry.snapshot.plugins.values():
            if plugin.source == self.copy:
                return plugin
        problem = Problem("file", "the kernel did not load it", "check it with `arcana plugin check`")
        raise PluginLoadError(str(self.file), [problem])

    def close(self) -> None:
        """Close the kernel and remove the temporary folder (and database); a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kernel.close()
        finally:
            self._tmp.cleanup()

    def token(self, user: str, roles: Sequence[str] = (), ttl_s: int = TOKEN_TTL_S) -> str:
        """A real access token for ``user`` with ``roles``, signed by the kernel's own signer."""
        token, _ = self.kernel.identity.issue_token(user, list(roles), ttl_s)
        return token

    async def http(self, target: HttpTarget, body: bytes, headers: dict[str, str], authorization: str) -> Answer:
        """As ``PluginHttpEdge._serve``: request id, address limit, route, span, the core's call, the error model."""
        kernel = self.kernel
        core = kernel.core
        headers = {k: v for k, v in headers.items() if k != "authorization"}
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
            if len(body) > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            http_request = HttpRequest(
                method=target.method,
                path=target.path,
                query=target.query,
                headers=headers,
                body=body,
                request_id=rid,
                traceparent=traceparent,
                authorization=authorization,
                client=CLIENT,
            )
            response = await core.call_http(match, http_request)
            status, out, out_headers = response.status, response.body, dict(response.headers)
        except ArcanaError as exc:
            status, out, out_headers = error_response(exc, rid)
        except Exception as exc:  # noqa: BLE001  as the edge: a kernel bug, answered INTERNAL
            status, out, out_headers = error_response(unexpected(exc, rid), rid)
        if span is not None:
            end_server_span(span, "http.response.status_code", status, status >= 500)
        out_headers["x-request-id"] = rid
        out_headers["content-length"] = str(len(out))
        return Answer(status, out_headers, out)

    async def grpc(self, target: GrpcTarget, body: bytes, metadata: dict[str, str], authorization: str) -> Answer:
        """As the gRPC edge: proto3 JSON in -> wire bytes -> ``core.call_grpc`` -> wire bytes -> proto3 JSON out."""
        core = self.kernel.core
        metadata = {k: v for k, v in metadata.items() if k != "authorization"}
        rid = request_id(metadata.get("x-request-id", ""))
        found = core.rpc_target(target.wire)
        if found is None:  # the server's gRPC answers UNIMPLEMENTED for a method no plugin serves
            out = error_body(ErrorCode.NOT_FOUND, f"no method {target.wire[1:]}", rid)
            return Answer(404, {"x-request-id": rid}, out, grpc_status="UNIMPLEMENTED")
        try:
            data = _encode_request(found.method, body)
            reply = await core.call_grpc(found, data, metadata, rid, authorization, CLIENT)
            return Answer(200, {"x-request-id": rid}, _decode_reply(found.method, reply), grpc_status="OK")
        except ArcanaError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001  as the edge: a kernel bug, answered INTERNAL
            error = unexpected(exc, rid)
        from arcana.edge.grpc_errors import grpc_status  # the gRPC edge's one table (grpc loads only for gRPC calls)

        name = grpc_status(error).name
        out = error_body(error.code, error.message, rid)
        return Answer(HTTP_STATUS[error.code], {"x-request-id": rid}, out, grpc_status=name)


def _encode_request(method: RpcMethod, body: bytes) -> bytes:
    """The body (proto3 JSON; empty: the empty message) -> the request's wire bytes, or VALIDATION_FAILED."""
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
