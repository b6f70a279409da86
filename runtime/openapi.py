"""The live OpenAPI 3.1 document: the registry's route snapshot in, a JSON-ready dict out.

``build_document`` is pure (snapshot -> dict): every plugin route (method, path parameters,
security, required roles, the error model's responses), the kernel's own routes
(arcana.openapi_kernel), and the plugins' gRPC methods (service, method, request and response
types) in the ``x-arcana-grpc`` extension and in each plugin's tag description, so that one page
describes both edges. ``info.version`` is a hash of everything else in the document: the same
route table gives the same version in every process, a changed one another.

``LiveDocument`` builds it lazily, once per snapshot object: the registry swaps its snapshot whole
on every reload, so the first request after a reload builds the new document and publishes it with
one assignment; a reader sees the old document or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from arcana.contract import RouteContract
from arcana.edge.errors import HTTP_STATUS
from arcana.errors import ErrorCode
from arcana.kernel_protos import kernel_descriptors
from arcana.manifest import Route
from arcana.openapi_contract import (
    component_name,
    declared_responses,
    path_schemas,
    plugin_components,
    query_parameters,
    request_body,
)
from arcana.openapi_kernel import ADMIN_ROLE, KERNEL_OPERATIONS, KernelOperation
from arcana.paths import PathTemplate
from arcana.registry import LoadedPlugin, Snapshot

OPENAPI_VERSION = "3.1.0"
TITLE = "Arcana"
SECURITY_SCHEME = "bearerAuth"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
KERNEL_TAGS = {"/api/v1/auth": "arcana.auth", "/api/v1/admin": "arcana.admin"}
HEALTH_TAG = "arcana.health"
# The kernel's gRPC services -> (the tag of the REST routes they mirror, their roles; None: public).
KERNEL_GRPC: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "arcana.auth.v1.AuthService": ("arcana.auth", None),
    "arcana.admin.v1.AdminService": ("arcana.admin", (ADMIN_ROLE,)),
}

# The error model's statuses (arcana.edge.errors.HTTP_STATUS): each a reusable response, with the codes it carries.
_STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    429: "RateLimited",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "PluginTimeout",
}
_HEADER_DOCS = {
    "x-request-id": "the request's id: the caller's when it sent a sane one, else a fresh one",
    "www-authenticate": "`Bearer`",
    "retry-after": "seconds to wait before trying again",
    "allow": "the methods the path serves",
}
_STATUS_HEADERS = {401: ("www-authenticate",), 405: ("allow",), 429: ("retry-after",), 503: ("retry-after",)}
# Every plugin call can end in these: a malformed body, the per-address or route limit, a plugin fault
# (trap, out of memory, malformed answer), a refusal (breaker, bulkhead, unloaded), the time limit.
_PLUGIN_ERRORS = (400, 429, 500, 503, 504)
_KERNEL_ERRORS = (500,)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The error model (docs/errors.md): one stable code per error, whoever raised it",
    "required": ["code", "message", "request_id"],
    "properties": {
        "code": {"type": "string", "enum": sorted(code.value for code in ErrorCode)},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "fields": {
            "type": "array",
            "description": "VALIDATION_FAILED: each field that broke the route's schema",
            "items": {
                "type": "object",
                "required": ["pointer", "reason"],
                "properties": {"pointer": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def _codes_of(status: int) -> list[str]:
    return sorted(code.value for code, mapped in HTTP_STATUS.items() if mapped == status)


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, name in _STATUS_NAMES.items():
        headers = {h: _header(h) for h in ("x-request-id", *_STATUS_HEADERS.get(status, ()))}
        out[name] = {
            "description": f"{', '.join(_codes_of(status))} (the error model)",
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return out


def _header(name: str) -> dict[str, Any]:
    schema = {"type": "integer"} if name == "retry-after" else {"type": "string"}
    return {"description": _HEADER_DOCS[name], "schema": schema}


def _error_refs(statuses: Iterable[int]) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{_STATUS_NAMES[s]}"} for s in sorted(set(statuses))}


def _access_text(public: bool, roles: tuple[str, ...] | None) -> str:
    if public or roles is None:
        return "Public: no token needed."
    if not roles:
        return "Requires a signed-in user (a bearer token; any role)."
    return f"Requires one of the roles: {', '.join(f'`{r}`' for r in roles)}."


def _security(public: bool) -> list[dict[str, list[str]]] | None:
    """``[]`` marks a public operation (it overrides the document's bearer requirement); None: inherit it."""
    return [] if public else None


@dataclass(frozen=True)
class _PathKey:
    """Where a route goes in ``paths``: templates of one shape share one key (OpenAPI forbids two)."""

    raw: str
    names: tuple[str, ...]


def _path_params(
    names: Iterable[str], described: dict[str, str] | None = None, schemas: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    described, schemas = described or {}, schemas or {}
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.get(name, {"type": "string", "minLength": 1}),
            **({"description": described[name]} if name in described else {}),
        }
        for name in names
    ]


def _param_names(template: PathTemplate) -> tuple[str, ...]:
    return tuple(value for kind, value in template.segments if kind == "param")


def _plugin_operation(plugin: LoadedPlugin, route: Route, key: _PathKey, operation_id: str) -> dict[str, Any]:
    contract = plugin.contract.route(route)
    own = _param_names(route.path)
    renamed = {k: f"the plugin's `{o}`" for k, o in zip(key.names, own, strict=True) if k != o}
    typed = path_schemas(contract)
    schemas = {k: typed[o] for k, o in zip(key.names, own, strict=True) if o in typed}
    errors = [*_PLUGIN_ERRORS]
    if not route.public:
        errors += [401, 403]
    if route.method in BODY_METHODS:
        errors.append(413)
    abi = "raw" if route.abi == "raw" else "json"
    description = [
        f"Served by plugin `{plugin.name}` {plugin.manifest.version}, handler `{route.handler}` ({abi} ABI).",
        _access_text(route.public, route.roles),
    ]
    if contract is not None and contract.checks_request:
        description.append(
            "The request is checked against the route's schemas before the plugin runs: "
            "400 `VALIDATION_FAILED` lists each field that breaks them (`fields`)."
        )
    if route.rate_limit:
        description.append(f"Rate limit: {route.rate_limit} per user (per address when anonymous).")
    description.append("Any other error is one of the error model's codes (the plugin may answer any).")
    operation: dict[str, Any] = {
        "tags": [plugin.name],
        "summary": route.handler,
        "description": "\n\n".join(description),
        "operationId": operation_id,
        "parameters": [*_path_params(key.names, renamed, schemas), *query_parameters(contract)],
        "responses": _plugin_responses(plugin.name, route, contract, errors),
    }
    body = request_body(plugin.name, contract)
    if body is None and route.method in BODY_METHODS:
        body_type = "application/octet-stream" if abi == "raw" else "application/json"
        body = {"required": False, "content": {body_type: {"schema": {}}}}
    if body is not None:
        operation["requestBody"] = body
    security = _security(route.public)
    if security is not None:
        operation["security"] = security
    return operation


def _plugin_responses(plugin: str, route: Route, contract: RouteContract | None, errors: list[int]) -> dict[str, Any]:
    """The route's declared answers; "2XX" (any body) when it declares no success; the error model's."""
    content_type = route.content_type if route.abi == "raw" else "application/json"
    declared = declared_responses(plugin, contract)
    out: dict[str, Any] = {}
    if not any(200 <= status < 300 for status in declared):
        out["2XX"] = {
            "description": "the plugin's answer",
            "headers": {"x-request-id": _header("x-request-id")},
            "content": {content_type: {"schema": {}}},
        }
    for status, schema in declared.items():
        if schema is None and status >= 400:  # an error answer: the error model's body
            name = _STATUS_NAMES.get(status, "PluginError")
            out[str(status)] = {"$ref": f"#/components/responses/{name}"}
            continue
        answer: dict[str, Any] = {
            "description": f"declared by the plugin ({status})",
            "headers": {"x-request-id": _header("x-request-id")},
        }
        if schema is not None:
            answer["content"] = {content_type: {"schema": schema}}
        out[str(status)] = answer
    for key, ref in _error_refs(errors).items():
        out.setdefault(key, ref)
    out["default"] = {"$ref": "#/components/responses/PluginError"}
    return out


def _kernel_tag(path: str) -> str:
    return next((tag for prefix, tag in KERNEL_TAGS.items() if path.startswith(prefix)), HEALTH_TAG)


def _kernel_operation(op: KernelOperation) -> dict[str, Any]:
    template = PathTemplate.parse(op.path)
    names = _param_names(template)
    errors = [*_KERNEL_ERRORS, *op.errors]
    if op.body is not None or op.query:
        errors.append(400)
    if op.body is not None:
        errors.append(413)
    if op.roles is not None:
        errors += [401, 403]
    if names:
        errors.append(404)
    ok: dict[str, Any] = {"description": op.summary, "headers": {"x-request-id": _header("x-request-id")}}
    if op.ok_schema is not None:
        ok["content"] = {"application/json": {"schema": op.ok_schema}}
    operation: dict[str, Any] = {
        "tags": [_kernel_tag(op.path)],
        "summary": op.summary,
        "description": f"Arcana's own route. {_access_text(False, op.roles)}",
        "operationId": "arcana_" + "_".join([op.method.lower(), *(v for _, v in template.segments)]),
        "parameters": [
            *_path_params(names, schemas=op.params),
            *({"name": n, "in": "query", "required": False, "schema": s} for n, s in op.query.items()),
        ],
        "responses": {str(op.ok_status): ok, **_error_refs(errors)},
    }
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    if op.roles is None:
        operation["security"] = []
    return operation


def _grpc_services(plugin: LoadedPlugin) -> list[dict[str, Any]]:
    services: dict[str, list[dict[str, Any]]] = {}
    for entry in plugin.manifest.grpc:
        rpc = plugin.rpc.get(entry.method)
        if rpc is None:
            continue
        service, _, method = entry.method.partition("/")
        services.setdefault(service, []).append(
            {
                "method": method,
                "path": "/" + entry.method,
                "request": rpc.input_type.DESCRIPTOR.full_name,
                "response": rpc.output_type.DESCRIPTOR.full_name,
                # Their proto3 JSON forms, as schemas of this document (not $refs: an extension is not resolved).
                "request_schema": _schema_pointer(plugin.name, rpc.input_type.DESCRIPTOR.full_name),
                "response_schema": _schema_pointer(plugin.name, rpc.output_type.DESCRIPTOR.full_name),
                "access": _access_text(entry.public, entry.roles),
                "public": entry.public,
                "roles": list(entry.roles),
            }
        )
    return [{"service": name, "plugin": plugin.name, "methods": methods} for name, methods in services.items()]


def _schema_pointer(plugin: str, message: str) -> str:
    return f"#/components/schemas/{component_name(plugin, message)}"


def _grpc_table(services: list[dict[str, Any]], what: str) -> list[str]:
    if not services:
        return []
    lines = ["", f"**gRPC** ({what} over gRPC, proto3 messages; server reflection lists them too):", ""]
    lines += ["| method | request | response | access |", "|---|---|---|---|"]
    for service in services:
        for m in service["methods"]:
            lines.append(f"| `{m['path']}` | `{m['request']}` | `{m['response']}` | {m['access']} |")
    return lines


def _tag_description(plugin: LoadedPlugin, services: list[dict[str, Any]]) -> str:
    lines = [f"{plugin.manifest.description or 'Plugin'} (`{plugin.name}` {plugin.manifest.version})."]
    return "\n".join(lines + _grpc_table(services, "the same plugin"))


def _kernel_grpc() -> dict[str, list[dict[str, Any]]]:
    """The kernel's own gRPC services (proto/arcana, arcana.edge.grpc_kernel), by the tag of their REST twins."""
    by_tag: dict[str, list[dict[str, Any]]] = {}
    descriptors = kernel_descriptors()
    for file in descriptors.files:
        for service in file.service:
            full = f"{file.package}.{service.name}"
            tag, roles = KERNEL_GRPC[full]
            methods = [
                {
                    "method": m.name,
                    "path": f"/{full}/{m.name}",
                    "request": m.input_type.lstrip("."),
                    "response": m.output_type.lstrip("."),
                    "access": _access_text(roles is None, roles),
                    "public": roles is None,
                    "roles": list(roles or ()),
                }
                for m in service.method
            ]
            by_tag.setdefault(tag, []).append({"service": full, "plugin": "", "methods": methods})
    return by_tag


def _info_description() -> str:
    return (
        "The routes of the plugins loaded right now and Arcana's own routes; this document is rebuilt when a "
        "plugin is loaded, replaced or removed, and `info.version` changes with it.\n\n"
        "**Log in**: `POST /api/v1/auth/login` answers an `access_token`; on the docs page that logs you in "
        "(or paste a token into *Authorize*). Routes marked with a lock need `Authorization: Bearer <token>`; "
        "each one names the roles it requires.\n\n"
        "**Errors** are one JSON shape with a stable `code` (the `Error` schema, docs/errors.md).\n\n"
        "**gRPC**: each plugin's tag lists the methods it serves over gRPC, and `x-arcana-grpc` lists them all."
    )


def build_document(snapshot: Snapshot) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``snapshot``; pure, and the same dict for the same route table."""
    paths: dict[str, dict[str, Any]] = {}
    for op in KERNEL_OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _kernel_operation(op)
    keys: dict[str, _PathKey] = {}
    operation_ids: set[str] = set()
    tags: list[dict[str, Any]] = []
    grpc: list[dict[str, Any]] = []
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for plugin in sorted(snapshot.plugins.values(), key=lambda p: p.name):
        schemas.update(plugin_components(plugin))
        services = _grpc_services(plugin)
        grpc += services
        tags.append({"name": plugin.name, "description": _tag_description(plugin, services)})
        for route in plugin.manifest.routes:
            key = keys.setdefault(route.path.shape, _PathKey(route.path.raw, _param_names(route.path)))
            operation_id = _unique(f"{plugin.name}.{route.handler}", operation_ids)
            paths.setdefault(key.raw, {})[route.method.lower()] = _plugin_operation(plugin, route, key, operation_id)
    kernel_grpc = _kernel_grpc()
    for tag, text in (
        ("arcana.auth", "Log in, refresh and log out (Arcana's own routes)."),
        ("arcana.admin", f"Administration (Arcana's own routes, role `{ADMIN_ROLE}`)."),
    ):
        services = kernel_grpc.get(tag, [])
        grpc += services
        tags.append({"name": tag, "description": "\n".join([text, *_grpc_table(services, "the same")])})
    tags.append({"name": HEALTH_TAG, "description": "Liveness and readiness probes."})
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": "", "description": _info_description()},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": [{SECURITY_SCHEME: []}],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /api/v1/auth/login (or from your identity provider).",
                }
            },
            "schemas": schemas,
            "responses": {
                **_error_responses(),
                "PluginError": {
                    "description": "another code of the error model, answered by the plugin",
                    "headers": {"x-request-id": _header("x-request-id")},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        },
        "x-arcana-grpc": grpc,
    }
    document["info"]["version"] = table_version(document)
    return document


def table_version(document: dict[str, Any]) -> str:
    """A hash of the document without its ``info.version``: it changes exactly when the document does."""
    canonical = {**document, "info": {**document["info"], "version": ""}}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unique(wanted: str, taken: set[str]) -> str:
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}_{n}"
    taken.add(candidate)
    return candidate


@dataclass(frozen=True)
class Published:
    """One built document, serialized once: every request for it sends these bytes."""

    body: bytes
    version: str


class LiveDocument:
    """The document of the registry's current snapshot, built on first use after each swap."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        # A weak reference: an old snapshot (and its retired plugins) is not kept alive by the docs.
        self._cached: tuple[weakref.ref[Snapshot], Published] | None = None

    def current(self) -> Published:
        snapshot = self._snapshot()
        cached = self._cached
        if cached is not None and cached[0]() is snapshot:
            return cached[1]
        document = build_document(snapshot)
        published = Published(json.dumps(document).encode(), document["info"]["version"])
        self._cached = (weakref.ref(snapshot), published)
        return published
