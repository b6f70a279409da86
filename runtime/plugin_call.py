"""`arcana plugin call`: one request to one plugin file, through a real in-process kernel, without a server.

Nothing here is a second pipeline: the command parses its arguments into a
request and hands it to ``arcana.testing.host.InProcessHost``, the one
in-process host the author test harness (``arcana.testing``) runs on too: a
:class:`Kernel` serving a temporary plugin folder holding only the file (and
its sidecars) from a temporary, migrated SQLite database (or ``--db FILE``, to
keep the store between calls), watcher off, the request going through
``kernel.core`` exactly as the edges hand it over. ``--as USER --roles ...``
mints a short-lived access token with the kernel's own signer, so the
principal the plugin sees is one the kernel verified.

Grants: with no ``--config``, the plugin gets what its manifest requests (the
author is calling their own plugin on their own machine); with one, that
config's grants and limits apply, as ``arcana serve`` would apply them.
"""

from __future__ import annotations

import http
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from arcana.config import ArcanaConfig
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.testing.host import (
    Answer,
    GrpcTarget,
    HttpTarget,
    InProcessHost,
    Target,
    grpc_target,
    http_target,
    kernel_config,
    requested_grants,
)

__all__ = [
    "Answer",
    "CallRequest",
    "GrpcTarget",
    "HttpTarget",
    "build_request",
    "call_plugin",
    "format_answer",
    "kernel_config",
    "parse_headers",
    "parse_target",
    "requested_grants",
]

# Lifetime of the token minted for --as: long enough for one call, useless after it.
TOKEN_TTL_S = 60
# "GET /path?query": an HTTP method token, one space, an origin-form target.
REQUEST_LINE = re.compile(r"^([A-Za-z]+)\s+(/\S*)$")
USAGE_FIX = "give 'METHOD /path' (e.g. 'GET /api/v1/hello/Ada') or a gRPC method 'pkg.Service/Method'"


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


def usage(cause: str, fix: str) -> StartupFailure:
    return StartupFailure(ExitCode.CONFIG, cause, fix)


def parse_target(text: str) -> Target:
    """'GET /api/v1/x/1?a=b' or 'pkg.Service/Method'; a usage error otherwise."""
    line = text.strip()
    found = REQUEST_LINE.match(line)
    if found is not None:
        method, target = found.groups()
        return http_target(method, target)
    rpc = grpc_target(line)
    if rpc is not None:
        return rpc
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


async def call_plugin(request: CallRequest, operator: ArcanaConfig | None = None) -> Answer:
    """Load the plugin in a fresh kernel and make the call; PluginLoadError when the kernel refuses the file."""
    host = InProcessHost(request.file, operator, request.db)
    await host.open()
    try:
        authorization = request.headers.get("authorization", "")
        if request.user is not None:
            authorization = f"Bearer {host.token(request.user, request.roles, TOKEN_TTL_S)}"
        if isinstance(request.target, GrpcTarget):
            return await host.grpc(request.target, request.body, request.headers, authorization)
        return await host.http(request.target, request.body, request.headers, authorization)
    finally:
        host.close()


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
