"""What a raw-ABI handler is told about its call, as Extism config keys.

A raw handler gets only the body bytes as input, the shape a plain Extism
PDK expects; everything else about the request (method, path parameters,
query, the caller) it reads with Extism's own ``config_get``, under keys
that start with ``arcana.``, set on the instance for that one call
(``CallContext.call_config``; docs/envelopes.md lists them). A key that
does not apply is not set; an empty value reads as absent too (the Extism
kernel answers ``config_get`` with offset 0 for it), which is why the
whole query also travels as JSON (``?flag`` against no flag).
"""

from __future__ import annotations

from typing import Any

from arcana import jsonio
from arcana.envelopes import HttpRequest


def http_call_config(
    req: HttpRequest, route: str, params: dict[str, str], principal: dict[str, Any] | None, traceparent: str
) -> dict[str, str]:
    """The keys of a raw REST call: the request line, the route's parameters, the query, headers, the caller."""
    values = {
        "arcana.kind": "http",
        "arcana.method": req.method,
        "arcana.path": req.path,
        "arcana.route": route,
        "arcana.request_id": req.request_id,
        "arcana.traceparent": traceparent,
        # Every value of every name, for a name given more than once (the per-name keys hold the first).
        "arcana.query": jsonio.encode(req.query).decode(),
    }
    for name, value in params.items():
        values["arcana.param." + name] = value
    for name, given in req.query.items():
        if given:
            values["arcana.query." + name] = given[0]
    for name, value in req.headers.items():
        values["arcana.header." + name] = value
    _principal(values, principal)
    return values


def grpc_call_config(
    method: str, metadata: dict[str, str], request_id: str, traceparent: str, principal: dict[str, Any] | None
) -> dict[str, str]:
    """The keys of a raw gRPC call: the method's full name, the metadata, the caller."""
    values = {
        "arcana.kind": "grpc",
        "arcana.method": method,
        "arcana.request_id": request_id,
        "arcana.traceparent": traceparent,
    }
    for name, value in metadata.items():
        values["arcana.metadata." + name] = value
    _principal(values, principal)
    return values


def _principal(values: dict[str, str], principal: dict[str, Any] | None) -> None:
    """The caller's subject and roles (role names hold no comma: ``arcana.auth.users.ROLE_RE``); none: anonymous."""
    if principal is not None:
        values["arcana.principal.sub"] = str(principal["sub"])
        values["arcana.principal.roles"] = ",".join(principal["roles"])
