"""Where a REST plugin call's time goes in the kernel: each step of the path timed alone, in-process.

    .venv/bin/python bench/rest_breakdown.py            # about 25 s
    .venv/bin/python bench/run.py --only rest           # the same, after the wrk runs of bench_rest.py

The REST twin of bench/grpc_breakdown.py. One process builds the real kernel
(``Kernel(load_config(...))`` serving plugins/hello/hello.wasm) and its REST
app (``create_rest_app``: ``PluginHttpEdge`` in front of the kernel's Quart
app), warms ``GET /api/v1/hello/x`` up until the handler runs inline on the
event loop (``InstancePool.inline_handlers()``; the output says whether it
does), then times, over many calls each on uvloop, every step a request takes
after uvicorn/httptools has parsed it into an ASGI scope, with the kernel's
own objects:

- the metrics middleware (``HttpMetrics.measure`` and its ``send`` wrapper,
  around an app that only sends the two response messages);
- the edge's request parsing: ``is_kernel_path``, the raw path, ``_headers``,
  ``request_id`` (wrk sends no ``x-request-id``: a fresh uuid4), ``_client``,
  and ``_request`` (query, the body read through ``receive``, ``HttpRequest``);
- ``RequestCore.limit_address``, ``route_http``, ``_admit`` (authentication),
  ``_limit_call``, ``_context`` with the log scope, ``http_envelope``,
  ``InstancePool.call`` split into the guest call itself (``instance.call``
  on this thread, on the instance the pool would use) and the pool's own
  work (the same ``pool.call`` with that instance swapped for a stub that
  answers hello's output at once), ``parse_http_output``, and the response
  (headers, their encoding, the two ``send`` calls);
- ``RequestCore.call_http`` whole and one whole ASGI call of the edge app,
  each also with the stub guest, so what the steps above leave out shows as
  the two remainders without the guest's run-to-run noise in them;
- for scale: one whole ASGI call of a native Quart app (one async view, as
  bench/serve_bench_app.py's ``add_native_route``) and of a bare ASGI
  callable (``RawAsgiHello``), with the same fake ``receive``/``send``.

Each step is timed in 3 rounds over all the steps, best of 5 batches per
round, the best round kept. An inline call that overruns the inline limit
(a preempted process can) demotes the handler; the script then warms it up
again before the next step and says how often that happened.

Every whole ASGI call is given a fresh copy of the scope and a fresh
``receive`` (as a server does per request); that harness's own cost, timed
around an empty app, is taken off the whole-call figures. The HTTP layer
(uvicorn's httptools protocol, the socket) is outside every figure: it costs
the plugin route and the native one the same. Never used by tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from common import Row, hello_kernel_env
from grpc_breakdown import Step, per_call_async, report
from grpc_breakdown import _sync as per_call

PLUGIN_PATH = "/api/v1/hello/x"
NATIVE_PATH = "/bench/native/hello/x"
RAW_PATH = "/bench/raw/hello/x"
BODY = b'{"message":"Hello, x!"}'
WARM_CALLS = 150  # more than executor.inline_after_calls (100): the handler is promoted to inline
ROUNDS = 3


def http_scope(path: str) -> dict[str, Any]:
    """The scope uvicorn (httptools) builds for wrk's ``GET path`` (wrk sends only a Host header)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "state": {},
    }


class Sent:
    """A no-op ASGI ``send`` that keeps the last answer's status and body, to check the answers."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status, self.body = message["status"], b""
        else:
            self.body += message.get("body", b"")  # Quart sends its body, then an empty last chunk


class NoGuest:
    """Stands in for hello's instance while the pool's own work is timed: hello's answer, at once."""

    def __init__(self, output: bytes) -> None:
        self.output = output

    def call(self, handler: str, data: bytes, context: object) -> bytes:
        return self.output

    def cancel(self) -> None:  # the inline watchdog's hold on an instance
        pass


REQUEST_MESSAGE = {"type": "http.request", "body": b"", "more_body": False}


def fresh_receive() -> Any:
    """An ASGI ``receive`` for one bodiless request: the request once, then (as a server) a wait for disconnect."""
    given = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal given
        if not given:
            given = True
            return REQUEST_MESSAGE
        await asyncio.Event().wait()  # Quart listens for a disconnect until its handler is done, then cancels
        raise AssertionError("unreachable")

    return receive


async def measure(seconds: float) -> tuple[list[Step], str]:
    from quart import Quart

    from arcana import logs
    from arcana.config import load_config
    from arcana.core import request_id
    from arcana.edge.http_metrics import HttpMetrics
    from arcana.edge.plugin_http import _client, _headers, is_kernel_path
    from arcana.edge.rest import create_rest_app
    from arcana.envelopes import http_envelope, parse_http_output
    from arcana.kernel import Kernel
    from serve_bench_app import RawAsgiHello, add_native_route

    workdir = Path(tempfile.mkdtemp(prefix="arcana-bench-rest-cost-"))
    env = hello_kernel_env(workdir)
    kernel = Kernel(load_config(None, environ=env))
    kernel.start()
    native_app = Quart("bench")
    add_native_route(native_app)
    await native_app.startup()
    try:
        await kernel.load_all()
        core = kernel.core
        edge = create_rest_app(kernel)
        raw = RawAsgiHello(edge)
        sent = Sent()
        scope = http_scope(PLUGIN_PATH)

        # Warm up through the whole edge: the first calls run on the plugin's threads, then inline.
        for _ in range(WARM_CALLS):
            await edge(dict(scope), fresh_receive(), sent)
        assert (sent.status, sent.body) == (200, BODY), (sent.status, sent.body)
        for app, path in ((native_app, NATIVE_PATH), (raw, RAW_PATH)):  # the same answer from the two for scale
            await app(http_scope(path), fresh_receive(), sent)  # type: ignore[arg-type]
            assert (sent.status, json.loads(sent.body)) == (200, json.loads(BODY)), (path, sent.status, sent.body)

        match = core.route_http("GET", PLUGIN_PATH)
        assert match is not None
        plugin, route = match.target.plugin, match.target.route
        pool = plugin.pool
        inline = pool.inline_handlers()
        is_inline = route.handler in inline
        headers = _headers(scope)
        rid = request_id(headers.get("x-request-id", ""))
        request = await edge._request(scope, fresh_receive(), headers, rid, "")
        principal = core._admit(route.public, route.roles, request.authorization)
        where = f"{plugin.name} {route.method} {route.path.raw}"
        context = core._context(plugin, route.handler, rid, "", principal)
        envelope = http_envelope(request, route.path.raw, match.params, context.principal, context.traceparent)
        # The guest on the instance the call runs on: the inline twin when inline, else a thread's instance.
        instance = pool._inline_idle[-1] if is_inline else pool._idle[-1][0]
        output = instance.call(route.handler, envelope, context)
        response = parse_http_output(plugin.name, output)
        assert response.body == BODY, response

        metrics = HttpMetrics()

        async def answer_only(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": BODY})

        def parse_head() -> None:
            # PluginHttpEdge._serve up to the call: kernel path test, raw path, headers, client (request_id apart).
            is_kernel_path(scope["path"])
            scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1") or scope["path"]
            _headers(scope).get("x-request-id", "")
            _client(scope)

        async def request_once() -> MutableMapping[str, Any]:
            return REQUEST_MESSAGE

        async def build_request() -> object:
            # The headers as _serve read them (no Authorization in them, so _request's pop changes nothing).
            return await edge._request(scope, request_once, headers, rid, "")

        def core_context() -> None:
            scope_token = logs.enter(logs.RequestScope(rid, "", plugin.name, plugin.manifest.version))
            core._context(plugin, route.handler, rid, "", principal)
            logs.leave(scope_token)

        def fresh_context() -> Any:
            context.deadline = 1e12  # the thread path takes its reserve off the deadline on every call
            return context

        @contextmanager
        def no_guest() -> Iterator[None]:
            """The pool's instances swapped for a NoGuest (the inline one, or the threads' ones), then put back."""
            stub = NoGuest(output)
            if is_inline:
                saved = pool._inline_idle[:]
                pool._inline_idle[:] = [stub]  # type: ignore[list-item]
            else:
                saved_idle = list(pool._idle)
                pool._idle.clear()
                pool._idle.append((stub, time.monotonic()))  # type: ignore[arg-type]
            try:
                yield
            finally:
                if is_inline:
                    pool._inline_idle[:] = saved
                else:
                    pool._idle.clear()
                    pool._idle.extend(saved_idle)

        async def pool_call() -> bytes:
            return await pool.call(route.handler, envelope, fresh_context())

        async def respond() -> None:
            # PluginHttpEdge._serve after the call: the two headers, their encoding, the two messages.
            status, body, out_headers = response.status, response.body, response.headers
            out_headers["x-request-id"] = rid
            out_headers["content-length"] = str(len(body))
            encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()]
            await sent({"type": "http.response.start", "status": status, "headers": encoded})
            await sent({"type": "http.response.body", "body": body})

        async def call_http() -> object:
            return await core.call_http(match, request)

        async def empty(scope: Any, receive: Any, send: Any) -> None:
            return None

        def whole(app: Any, path: str) -> Any:
            template = http_scope(path)

            async def one() -> None:
                await app(dict(template), fresh_receive(), sent)

            return one

        async def ensure_inline() -> int:
            """1 if the handler had been demoted meanwhile (a call overran the inline limit) and is inline again."""
            if not is_inline or route.handler in pool.inline_handlers():
                return 0
            for _ in range(50 * WARM_CALLS):  # a demoted handler needs a longer streak (arcana.inline)
                await core.call_http(match, request)
                if route.handler in pool.inline_handlers():
                    return 1
            raise RuntimeError("hello did not run inline again after a demotion")

        guest_on = [instance]

        def guest() -> bytes:
            return guest_on[0].call(route.handler, envelope, context)  # type: ignore[no-any-return]

        # name -> (the call to time, whether it is awaited).
        timed: dict[str, tuple[Callable[[], Any], bool]] = {
            "metrics": (lambda: metrics.measure(answer_only, scope, fresh_receive(), sent), True),
            "answer only": (lambda: answer_only(scope, fresh_receive(), sent), True),
            "parse head": (parse_head, False),
            "request_id": (lambda: request_id(""), False),
            "request": (build_request, True),
            "limit_address": (lambda: core.limit_address("127.0.0.1"), True),
            "route": (lambda: core.route_http("GET", PLUGIN_PATH), False),
            "admit": (lambda: core._admit(route.public, route.roles, ""), False),
            "limit_call": (lambda: core._limit_call(route.rate_limit, where, principal, "127.0.0.1", "route"), True),
            "context": (core_context, False),
            "envelope": (
                lambda: http_envelope(request, route.path.raw, match.params, context.principal, context.traceparent),
                False,
            ),
            "guest": (guest, False),
            "pool": (pool_call, True),
            "pool rest": (pool_call, True),  # these three with no_guest: the kernel's own work, without the
            "call_http rest": (call_http, True),  # guest's run-to-run noise in the remainders below
            "edge rest": (whole(edge, PLUGIN_PATH), True),
            "parse": (lambda: parse_http_output(plugin.name, output), False),
            "respond": (respond, True),
            "call_http": (call_http, True),
            "harness": (whole(empty, PLUGIN_PATH), True),
            "edge": (whole(edge, PLUGIN_PATH), True),
            "quart": (whole(native_app, NATIVE_PATH), True),
            "raw": (whole(raw, RAW_PATH), True),
        }
        # Rounds over every step in turn, each step's best round kept: a burst of other work on the machine
        # then spoils one round of a step rather than the step.
        t: dict[str, float] = {}
        rewarmed = 0
        for _ in range(ROUNDS):
            for name, (fn, awaited) in timed.items():
                rewarmed += await ensure_inline()
                guest_on[0] = pool._inline_idle[-1] if is_inline else pool._idle[-1][0]
                with no_guest() if name.endswith(" rest") else nullcontext():
                    us = await per_call_async(fn, seconds / ROUNDS) if awaited else per_call(fn, seconds / ROUNDS)
                t[name] = min(t.get(name, us), us)
        still_inline = route.handler in pool.inline_handlers()
    finally:
        await native_app.shutdown()
        kernel.close()
        shutil.rmtree(workdir, ignore_errors=True)
    request_us = t["request"]
    harness = t["harness"]
    edge_us, quart_us, raw_us = (max(0.0, t[k] - harness) for k in ("edge", "quart", "raw"))
    edge_no_guest = max(0.0, t["edge rest"] - harness)
    inner = ("admit", "limit_call", "context", "envelope", "pool rest", "parse")
    call_http_rest = max(0.0, t["call_http rest"] - sum(t[k] for k in inner))
    metrics_us = max(0.0, t["metrics"] - t["answer only"])
    outer = metrics_us + t["parse head"] + t["request_id"] + request_us + t["limit_address"] + t["route"]
    edge_rest = max(0.0, edge_no_guest - outer - t["call_http rest"] - t["respond"])
    lane = "inline on the event loop" if is_inline else "on the plugin's threads (NOT inline)"
    steps = [
        Step("metrics middleware: HttpMetrics.measure + send wrapper", metrics_us),
        Step("edge: is_kernel_path, raw path, _headers, _client", t["parse head"]),
        Step("request id: request_id('') (no x-request-id: uuid4)", t["request_id"]),
        Step("request: _request (query, body via receive, HttpRequest)", request_us),
        Step("per-address limit: limit_address (off by default)", t["limit_address"]),
        Step("route match: RequestCore.route_http", t["route"]),
        Step("auth: _admit (authenticate '' + RBAC)", t["admit"]),
        Step("route rate limit: _limit_call (none set)", t["limit_call"]),
        Step("call context + log scope: _context, enter/leave", t["context"]),
        Step("envelope JSON: http_envelope", t["envelope"]),
        Step(f"pool: InstancePool.call around a no-op guest ({'inline' if is_inline else 'threads'})", t["pool rest"]),
        Step("guest: instance.call on this thread (hello)", t["guest"]),
        Step("reply JSON: parse_http_output", t["parse"]),
        Step("response: headers, encode, send start + body", t["respond"]),
        Step("call_http remainder (no-op guest): in-flight count, try/finally", call_http_rest),
        Step("edge remainder (no-op guest): _serve's own code, awaits", edge_rest),
        Step("  call_http whole", t["call_http"], part_of_total=False),
        Step("  edge whole ASGI call (PluginHttpEdge, net of harness)", edge_us, part_of_total=False),
        Step("  the same with a no-op guest: the kernel's own work", edge_no_guest, part_of_total=False),
        Step("for scale: native Quart app, whole ASGI call (net)", quart_us, part_of_total=False),
        Step("for scale: bare ASGI callable (RawAsgiHello, net)", raw_us, part_of_total=False),
        Step("harness: dict(scope) + fresh receive + empty app", harness, part_of_total=False),
    ]
    how = (
        f"hello's handler ran {lane} (pool.inline_handlers() = {inline}; demoted and warmed up again "
        f"{rewarmed} times, inline after the run: {still_inline}); "
        f"edge whole / native Quart whole = {edge_us / quart_us:.2f}x, "
        f"edge whole / bare ASGI = {edge_us / raw_us:.1f}x; pool.call whole {t['pool']:.1f} us"
    )
    return steps, how


def run(quick: bool = False, seconds: float = 0.6) -> list[Row]:
    import uvloop

    steps, how = uvloop.run(measure(0.3 if quick else seconds))
    return report("rest-cost", steps, how, "the edge's", "edge total per call (sum)")


def main() -> int:
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
