"""The Python guest SDK (sdk/python/arcana_plugin) in CPython, against fake world bindings.

In a component the host functions come from the modules componentize-py
generates (``wit_world.imports.<interface>``); here fakes of those modules are
put in ``sys.modules``, recording each request and answering what the test
says, so the router, the answers and the bindings' error values are pinned
without building a component (tests/sdk/test_python_build.py builds real ones).
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"
HttpEnv = dict[str, Any]


class FakeWorld:
    """Fake ``wit_world.imports.*`` modules: each host function records its request and answers ``replies[name]``."""

    def __init__(self, interfaces: dict[str, list[str]]) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, Any] = {}
        self.random_sizes: list[int] = []
        self.modules: dict[str, types.ModuleType] = {
            "wit_world": types.ModuleType("wit_world"),
            "wit_world.imports": types.ModuleType("wit_world.imports"),
        }
        for iface, functions in interfaces.items():
            module = types.ModuleType(f"wit_world.imports.{iface}")
            for name in functions:
                setattr(module, name, self._function(name))
            self.modules[module.__name__] = module

    def _function(self, name: str) -> Callable[..., Any]:
        def host(request: str) -> str:
            self.requests.append((name, json.loads(request)))
            reply = self.replies.get(name, {})
            return reply if isinstance(reply, str) else json.dumps(reply)

        return host


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWorld]:
    fake = FakeWorld(
        {
            "log": ["log"],
            "store": ["store_get", "store_put", "store_delete", "store_query", "kv_get", "kv_set", "kv_incr"],
            "auth": ["auth_hash_password", "auth_verify_password", "auth_check_role"],
        }
    )
    clock = types.ModuleType("wit_world.imports.clock")
    clock.now_ms = lambda: 1_767_225_600_123  # type: ignore[attr-defined]
    clock.monotonic_ns = lambda: 42  # type: ignore[attr-defined]
    rnd = types.ModuleType("wit_world.imports.random")
    rnd.random_bytes = lambda n: (fake.random_sizes.append(n), bytes(i % 251 for i in range(n)))[1]  # type: ignore[attr-defined]
    config = types.ModuleType("wit_world.imports.config")
    config.config_get = lambda key: {"greeting": "hej"}.get(key)  # type: ignore[attr-defined]
    fake.modules.update({m.__name__: m for m in (clock, rnd, config)})
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(SDK))
    import arcana_plugin.host

    arcana_plugin.host.preload()
    yield fake
    for name in fake.modules:
        sys.modules.pop(name, None)
    arcana_plugin.host.preload()  # forget the fakes


@pytest.fixture
def sdk(world: FakeWorld) -> types.ModuleType:
    import arcana_plugin

    return arcana_plugin


def _http(method: str, route: str, path: str | None = None, **extra: Any) -> bytes:
    env: HttpEnv = {"kind": "http", "method": method, "route": route, "path": path or route, **extra}
    return json.dumps(env).encode()


def _call(app: Any, handler: str, data: bytes) -> Any:
    return json.loads(app.handle(handler, data))


# ---------------------------------------------------------------- routing


def test_routes_sharing_a_handler_name_are_picked_by_method_and_template(sdk: Any) -> None:
    app = sdk.Plugin(export=False)

    @app.route("GET", "/api/v1/b", name="api")
    def list_b(req: Any) -> Any:
        return ["list"]

    @app.route("GET", "/api/v1/b/{id}", name="api")
    def get_b(req: Any) -> Any:
        return {"get": req.param("id")}

    @app.route("DELETE", "/api/v1/b/{id}", name="api")
    def delete_b(req: Any) -> None:
        return None

    assert app.handlers() == ["api"]
    assert _call(app, "api", _http("GET", "/api/v1/b")) == {"status": 200, "body": ["list"]}
    got = _call(app, "api", _http("GET", "/api/v1/b/{id}", "/api/v1/b/7", params={"id": "7"}))
    assert got == {"status": 200, "body": {"get": "7"}}
    assert _call(app, "api", _http("DELETE", "/api/v1/b/{id}", params={"id": "7"})) == {"status": 204}
    refused = _call(app, "api", _http("PUT", "/api/v1/b/{id}", params={"id": "7"}))
    assert refused["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_a_handler_is_named_after_its_function_unless_named(sdk: Any) -> None:
    app = sdk.Plugin(export=False)
    app.route("GET", "/a")(lambda req: 1)

    @app.route("GET", "/b")
    def get_b(req: Any) -> int:
        return 2

    @app.handler("special")
    def anything(req: Any) -> str:
        return req.kind

    assert app.handlers() == ["<lambda>", "get_b", "special"]
    assert _call(app, "get_b", _http("GET", "/b")) == {"status": 200, "body": 2}
    assert _call(app, "special", _http("POST", "/whatever")) == {"status": 200, "body": "http"}


def test_an_unknown_handler_name_answers_not_found_and_a_duplicate_registration_is_refused(sdk: Any) -> None:
    app = sdk.Plugin(export=False)
    app.route("GET", "/a", name="a")(lambda req: 1)
    assert _call(app, "b", _http("GET", "/a"))["error"]["code"] == "NOT_FOUND"
    with pytest.raises(ValueError, match="registers http GET /a twice"):
        app.route("GET", "/a", name="a")(lambda req: 2)


def test_grpc_job_and_event_handlers_answer_their_envelope_shapes(sdk: Any) -> None:
    app = sdk.Plugin(export=False)

    @app.grpc("hello.v1.Greeter/SayHello")
    def say_hello(req: Any) -> dict[str, str]:
        return {"message": f"Hello, {req.message['name']}!"}

    @app.job("reports.build", name="work")
    def build(req: Any) -> dict[str, Any]:
        return {"built": req.job.payload["id"], "attempt": req.job.attempt}

    @app.job("reports.clean", name="work")
    def clean(req: Any) -> None:
        return None

    seen: list[str] = []

    @app.subscribe("note.*", name="on_event")
    def on_note(req: Any) -> None:
        seen.append(req.event.topic)

    grpc = {"kind": "grpc", "method": "hello.v1.Greeter/SayHello", "message": {"name": "Ada"}}
    assert _call(app, "say_hello", json.dumps(grpc).encode()) == {"message": {"message": "Hello, Ada!"}}
    job = {"kind": "job", "job": {"id": "j1", "type": "reports.build", "payload": {"id": 3}, "attempt": 2}}
    assert _call(app, "work", json.dumps(job).encode()) == {"result": {"built": 3, "attempt": 2}}
    job["job"]["type"] = "reports.clean"  # type: ignore[index]
    assert _call(app, "work", json.dumps(job).encode()) == {}
    event = {"kind": "event", "event": {"id": "e1", "topic": "note.created", "payload": {}}}
    assert _call(app, "on_event", json.dumps(event).encode()) == {}
    event["event"]["topic"] = "user.created"  # type: ignore[index]
    assert _call(app, "on_event", json.dumps(event).encode())["error"]["code"] == "NOT_FOUND"
    assert seen == ["note.created"]


def test_a_raw_handler_gets_the_bytes_and_answers_bytes(sdk: Any) -> None:
    app = sdk.Plugin(export=False)

    @app.raw("echo")
    def echo(body: bytes) -> str:
        return body.decode()[::-1] + sdk.config.get("greeting")

    assert app.handle("echo", b"abc") == b"cbahej"


def test_plugin_defines_the_world_class_componentize_py_exports_in_the_creating_module(sdk: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from arcana_plugin import Plugin\napp = Plugin()\n@app.handler('hi')\ndef hi(req):\n    return 'hi'\n",
        namespace,
    )
    world = namespace["WitWorld"]()
    assert world.handlers() == ["hi"]
    assert json.loads(world.handle("hi", _http("GET", "/x"))) == {"status": 200, "body": "hi"}


# ---------------------------------------------------------------- answers and errors


def test_fail_answers_the_error_model_and_other_exceptions_propagate_to_trap(sdk: Any) -> None:
    app = sdk.Plugin(export=False)

    @app.route("GET", "/x")
    def x(req: Any) -> None:
        raise sdk.Fail(sdk.Code.CONFLICT, "version moved on")

    @app.route("GET", "/y")
    def y(req: Any) -> None:
        raise KeyError("bug")

    assert _call(app, "x", _http("GET", "/x")) == {"error": {"code": "CONFLICT", "message": "version moved on"}}
    with pytest.raises(KeyError):
        app.handle("y", _http("GET", "/y"))


def test_204_and_304_have_no_body_and_a_body_with_them_is_refused(sdk: Any) -> None:
    assert sdk.no_content().answer() == {"status": 204}
    assert sdk.not_modified({"ETag": '"v3"'}).answer() == {"status": 304, "headers": {"etag": '"v3"'}}
    with pytest.raises(ValueError, match="a 204 response has no body"):
        sdk.Response(204, body={"x": 1})
    with pytest.raises(ValueError, match="200-599"):
        sdk.Response(700)


def test_response_helpers_build_the_documented_answers(sdk: Any) -> None:
    assert sdk.created({"id": "b1"}, location="/api/v1/b/b1").answer() == {
        "status": 201,
        "headers": {"location": "/api/v1/b/b1"},
        "body": {"id": "b1"},
    }
    assert sdk.json_response([], status=202).answer() == {"status": 202, "body": []}
    assert sdk.text("hé").answer() == {
        "status": 200,
        "headers": {"content-type": "text/plain; charset=utf-8"},
        "body_base64": "aMOp",
    }


def test_the_http_envelope_is_parsed_with_defaults_and_a_missing_json_body_is_a_validation_failure(sdk: Any) -> None:
    req = sdk.parse(
        _http(
            "POST",
            "/b",
            query={"tag": ["a", "b"]},
            headers={"x-a": "1"},
            principal={"sub": "ada", "roles": ["admin"]},
            body_base64="AAE=",
        )
    )
    assert isinstance(req, sdk.HttpRequest)
    assert req.query_first("tag") == "a" and req.header("X-A") == "1"
    assert req.principal == sdk.Principal("ada", ("admin",)) and req.principal.has_role("admin")
    assert req.body_bytes == b"\x00\x01" and not req.has_json_body
    with pytest.raises(sdk.Fail) as info:
        req.json()
    assert info.value.code == "VALIDATION_FAILED"
    assert sdk.parse(_http("POST", "/b", body=[1])).json() == [1]
    with pytest.raises(sdk.Fail, match="must be a JSON object"):
        sdk.parse(_http("POST", "/b", body=[1])).json_object()
    with pytest.raises(sdk.EnvelopeError, match="unknown envelope kind"):
        sdk.parse(b'{"kind": "smoke"}')


# ---------------------------------------------------------------- host bindings: errors are values


def test_a_binding_sends_the_documented_request_and_answers_the_reply_field(sdk: Any, world: FakeWorld) -> None:
    world.replies["store_put"] = {"doc": {"id": "b1", "version": 1, "url": "u"}}
    result = sdk.store.put("bookmarks", {"url": "u"}, expected_version=0)
    assert result.ok and result.value == {"id": "b1", "version": 1, "url": "u"}
    assert world.requests == [("store_put", {"collection": "bookmarks", "doc": {"url": "u"}, "expected_version": 0})]


def test_a_host_error_is_a_value_and_unwrap_passes_its_code_on(sdk: Any, world: FakeWorld) -> None:
    world.replies["store_get"] = {"error": {"code": "NOT_FOUND", "message": "no document b9 in bookmarks"}}
    result = sdk.store.get("bookmarks", "b9")
    assert not result.ok and result.value is None
    assert result.error == sdk.HostError("NOT_FOUND", "no document b9 in bookmarks")
    app = sdk.Plugin(export=False)
    app.route("GET", "/b/{id}", name="get")(lambda req: sdk.store.get("bookmarks", req.param("id")).unwrap())
    got = _call(app, "get", _http("GET", "/b/{id}", params={"id": "b9"}))
    assert got == {"error": {"code": "NOT_FOUND", "message": "no document b9 in bookmarks"}}


def test_a_function_of_a_grant_the_world_lacks_answers_forbidden_naming_the_grant(sdk: Any, world: FakeWorld) -> None:
    result = sdk.events.emit("note.created", {"id": "n1"})
    assert result.error is not None and result.error.code == "FORBIDDEN"
    assert "grant 'events'" in result.error.message
    assert world.requests == []


def test_an_unreadable_host_reply_is_an_internal_error_not_a_success(sdk: Any, world: FakeWorld) -> None:
    world.replies["kv_incr"] = "not json"
    world.replies["auth_check_role"] = "[1]"
    assert sdk.kv.incr("hits").error == sdk.HostError("INTERNAL", "host call failed")
    assert sdk.auth.check_role("admin").error == sdk.HostError("INTERNAL", "host call failed")


def test_error_details_beside_code_and_message_are_kept(sdk: Any, world: FakeWorld) -> None:
    world.replies["store_query"] = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "down", "retry_after": 2}}
    assert sdk.store.query("b").error.details == {"retry_after": 2}


def test_kv_get_answers_none_for_an_absent_key_and_the_value_otherwise(sdk: Any, world: FakeWorld) -> None:
    world.replies["kv_get"] = {"found": False, "value": None}
    assert sdk.kv.get("k").value is None
    world.replies["kv_get"] = {"found": True, "value": {"n": 1}}
    assert sdk.kv.get("k").unwrap() == {"n": 1}


def test_log_ignores_its_reply_and_sends_fields(sdk: Any, world: FakeWorld) -> None:
    world.replies["log"] = {"error": {"code": "INTERNAL", "message": "x"}}
    assert sdk.log.warn("slow", ms=12) is None
    assert world.requests == [("log", {"level": "warn", "message": "slow", "fields": {"ms": 12}})]


def test_clock_random_and_config_come_from_the_grant_free_interfaces(sdk: Any, world: FakeWorld) -> None:
    assert sdk.clock.now_ms() == 1_767_225_600_123 and sdk.clock.now() == 1_767_225_600.123
    assert len(sdk.random.bytes(70_000)) == 70_000
    assert world.random_sizes == [65_536, 70_000 - 65_536]  # the host bounds one call: fetched in chunks
    assert sdk.config.get("greeting") == "hej" and sdk.config.get("absent", "x") == "x"


def test_in_a_component_stdlib_random_is_reseeded_from_the_host_once_per_instance(
    sdk: Any, world: FakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    import arcana_plugin.plugin

    monkeypatch.setattr(arcana_plugin.plugin, "IN_COMPONENT", True)
    app = sdk.Plugin(export=False)
    app.route("GET", "/r", name="r")(lambda req: 1)
    app.handle("r", _http("GET", "/r"))
    app.handle("r", _http("GET", "/r"))
    assert world.random_sizes == [32]


def test_stdout_lines_go_to_the_log_when_redirected(sdk: Any, world: FakeWorld) -> None:
    stream = sdk.host._LogStream("info")
    print("one", "two", file=stream)
    stream.write("par")
    stream.write("tial\nrest")
    assert [r for _, r in world.requests] == [
        {"level": "info", "message": "one two"},
        {"level": "info", "message": "partial"},
    ]
    stream.flush()
    assert world.requests[-1] == ("log", {"level": "info", "message": "rest"})
