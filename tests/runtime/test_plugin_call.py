"""`arcana plugin call`: request lines, headers, output and exit codes (fast), then real plugins in process.

The real calls load real .wasm files (plugins/, tests/fixtures/plugins) in a
real kernel on a fresh SQLite database; the command run as a process is in
tests/e2e/test_plugin_call.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcana import cli
from arcana.config import ArcanaConfig
from arcana.errors import PluginLoadError
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.plugin_call import (
    Answer,
    CallRequest,
    GrpcTarget,
    HttpTarget,
    build_request,
    call_plugin,
    format_answer,
    kernel_config,
    parse_headers,
    parse_target,
    requested_grants,
)

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "plugins" / "hello" / "hello.wasm"
NOTES = ROOT / "plugins" / "notes" / "notes.wasm"


# ---- fast: parsing, formatting, exit codes


def test_a_request_line_gives_method_raw_path_and_query() -> None:
    target = parse_target("get /api/v1/x/a%20b?tag=1&tag=2&empty=")
    assert target == HttpTarget("GET", "/api/v1/x/a%20b", {"tag": ["1", "2"], "empty": [""]})
    assert isinstance(target, HttpTarget) and target.path == "/api/v1/x/a b"


def test_a_path_is_percent_encoded_as_a_client_sends_it() -> None:
    target = parse_target("GET /api/v1/hello/Zoë%2F1")
    assert isinstance(target, HttpTarget) and target.raw_path == "/api/v1/hello/Zo%C3%AB%2F1"
    assert target.path == "/api/v1/hello/Zoë/1"


def test_a_grpc_method_is_a_target_with_or_without_its_leading_slash() -> None:
    assert parse_target("greeter.v1.Greeter/SayHello") == GrpcTarget("/greeter.v1.Greeter/SayHello")
    assert parse_target("/greeter.v1.Greeter/SayHello") == GrpcTarget("/greeter.v1.Greeter/SayHello")


@pytest.mark.parametrize("line", ["GET", "GET api/v1/x", "GET /a /b", "/api/v1/x", "", "Greeter/SayHello", "G3T /x"])
def test_a_bad_request_line_is_a_usage_error(line: str) -> None:
    with pytest.raises(StartupFailure) as caught:
        parse_target(line)
    assert caught.value.code is ExitCode.CONFIG and "METHOD /path" in caught.value.fix


def test_headers_are_lower_cased_and_repeats_joined_as_the_edge_does() -> None:
    assert parse_headers(["X-A: 1", "x-a: 2", "Accept:  text/plain "]) == {"x-a": "1,2", "accept": "text/plain"}
    for bad in ("no colon", ": empty name", "bad name: 1"):
        with pytest.raises(StartupFailure):
            parse_headers([bad])


def test_build_request_refuses_a_missing_file_and_roles_without_a_user(tmp_path: Path) -> None:
    with pytest.raises(StartupFailure, match="does not exist"):
        build_request(tmp_path / "missing.wasm", "GET /x")
    with pytest.raises(StartupFailure, match="--roles needs --as"):
        build_request(HELLO, "GET /x", roles="user")
    with pytest.raises(StartupFailure, match="both --as and an Authorization header"):
        build_request(HELLO, "GET /x", headers=["Authorization: Bearer x"], user="u1")


def test_a_json_body_gets_its_content_type_and_length_unless_given(tmp_path: Path) -> None:
    request = build_request(HELLO, "POST /x", body='{"a": 1}')
    assert request.body == b'{"a": 1}'
    assert request.headers == {"content-type": "application/json", "content-length": "8"}
    given = build_request(HELLO, "POST /x", body="a=1", headers=["Content-Type: application/x-www-form-urlencoded"])
    assert given.headers["content-type"] == "application/x-www-form-urlencoded"
    (tmp_path / "body.json").write_text('{"from": "file"}')
    assert build_request(HELLO, "POST /x", body=f"@{tmp_path / 'body.json'}").body == b'{"from": "file"}'


def test_output_is_status_line_headers_then_pretty_json() -> None:
    answer = Answer(201, {"content-type": "application/json", "x-request-id": "r1"}, b'{"id":"n1","tags":[]}')
    assert format_answer(answer).decode() == (
        'HTTP/1.1 201 Created\ncontent-type: application/json\nx-request-id: r1\n\n{\n  "id": "n1",\n  "tags": []\n}\n'
    )
    text = Answer(200, {"content-type": "text/plain"}, b"plain")
    assert format_answer(text).endswith(b"\n\nplain\n")
    assert format_answer(Answer(204, {}, b"")) == b"HTTP/1.1 204 No Content\n\n"
    assert format_answer(Answer(200, {}, b"{}", grpc_status="OK")).startswith(b"gRPC OK\n")


def test_exit_code_is_0_for_2xx_3xx_and_1_for_4xx_5xx() -> None:
    assert [Answer(s, {}, b"").exit_code for s in (200, 204, 304, 400, 401, 404, 500, 504)] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert Answer(200, {}, b"", grpc_status="OK").exit_code == 0
    assert Answer(401, {}, b"", grpc_status="UNAUTHENTICATED").exit_code == 1


def test_without_a_config_the_plugin_gets_what_its_manifest_requests(tmp_path: Path) -> None:
    assert requested_grants(NOTES) == {"notes": ["events", "log", "store"]}
    assert requested_grants(tmp_path / "missing.wasm") == {}
    config = kernel_config(None, NOTES, tmp_path, tmp_path / "a.db")
    assert config.grants == {"notes": ["events", "log", "store"]}
    assert config.plugins.dir == str(tmp_path) and config.plugins.watch is False
    assert config.database.url == f"sqlite:///{tmp_path / 'a.db'}" and config.auth.dev


def test_an_operator_config_keeps_its_grants_and_limits(tmp_path: Path) -> None:
    operator = ArcanaConfig(grants={"*": ["log"]})
    config = kernel_config(operator, NOTES, tmp_path, tmp_path / "a.db")
    assert config.grants == {"*": ["log"]} and config.executor == operator.executor


# ---- real plugins, in process


def _call(file: Path, line: str, **given: str | list[str] | Path | None) -> Answer:
    request = build_request(file, line, **given)  # type: ignore[arg-type]
    return asyncio.run(call_plugin(request))


def test_hello_answers_its_route() -> None:
    answer = _call(HELLO, "GET /api/v1/hello/Ada")
    assert (answer.status, json.loads(answer.body)) == (200, {"message": "Hello, Ada!"})
    assert answer.headers["x-request-id"] and answer.exit_code == 0


def test_hello_answers_its_grpc_method_in_proto3_json() -> None:
    answer = _call(HELLO, "greeter.v1.Greeter/SayHello", body='{"name": "Ada"}')
    assert (answer.grpc_status, json.loads(answer.body)) == ("OK", {"message": "Hello, Ada!"})
    wrong = _call(HELLO, "greeter.v1.Greeter/SayHello", body='{"nom": "Ada"}')
    assert wrong.grpc_status == "INVALID_ARGUMENT" and json.loads(wrong.body)["code"] == "VALIDATION_FAILED"
    missing = _call(HELLO, "greeter.v1.Greeter/Nope")
    assert missing.grpc_status == "UNIMPLEMENTED" and missing.exit_code == 1


def test_hello_gets_a_non_ascii_name_decoded() -> None:
    answer = _call(HELLO, "GET /api/v1/hello/Zo%C3%AB")
    assert json.loads(answer.body) == {"message": "Hello, Zoë!"}
    assert json.loads(_call(HELLO, "GET /api/v1/hello/Zoë").body) == {"message": "Hello, Zoë!"}


def test_a_path_no_route_serves_is_404_in_the_error_model() -> None:
    answer = _call(HELLO, "GET /api/v1/nothing", headers=["X-Request-Id: mine-1"])
    body = json.loads(answer.body)
    assert (answer.status, body["code"], body["request_id"]) == (404, "NOT_FOUND", "mine-1")


def test_notes_as_a_user_creates_a_note_owned_by_that_principal(tmp_path: Path) -> None:
    created = _call(NOTES, "POST /api/v1/notes", body='{"title": "t", "body": "b"}', user="u1", roles="user")
    assert created.status == 201 and json.loads(created.body)["owner"] == "u1"


def test_notes_without_a_user_is_401_with_the_bearer_challenge() -> None:
    answer = _call(NOTES, "GET /api/v1/notes")
    assert answer.status == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert json.loads(answer.body)["code"] == "UNAUTHORIZED" and answer.exit_code == 1


def test_each_call_has_a_fresh_store_unless_db_keeps_it(tmp_path: Path) -> None:
    as_u1: dict[str, str | None] = {"user": "u1", "roles": "user"}
    note = json.loads(_call(NOTES, "POST /api/v1/notes", body='{"title": "kept"}', db=tmp_path / "n.db", **as_u1).body)
    again = _call(NOTES, f"GET /api/v1/notes/{note['id']}", db=tmp_path / "n.db", **as_u1)
    assert again.status == 200 and json.loads(again.body)["title"] == "kept"
    fresh = _call(NOTES, f"GET /api/v1/notes/{note['id']}", **as_u1)
    assert fresh.status == 404
    other = _call(NOTES, f"GET /api/v1/notes/{note['id']}", db=tmp_path / "n.db", user="u2", roles="user")
    assert other.status == 404  # the plugin keeps each principal's notes apart: the principal is the real one


def test_a_job_enqueued_by_a_call_waits_in_the_kept_database(fixture_wasm: dict[str, Path], tmp_path: Path) -> None:
    """The queue is the kernel's own (SQL, on the call's database); no worker runs in a call."""
    probe, db = fixture_wasm["queueprobe"], tmp_path / "q.db"
    made = _call(probe, "POST /probe/queue", body='{"call": "enqueue", "type": "probe.work", "payload": {}}', db=db)
    job = json.loads(made.body)["result"]
    assert made.status == 200 and job["created"] is True
    status = _call(probe, "POST /probe/queue", body=json.dumps({"call": "status", "id": job["id"]}), db=db)
    assert json.loads(status.body)["result"]["state"] == "queued"


def test_a_trapping_plugin_is_500_plugin_failed(fixture_wasm: dict[str, Path]) -> None:
    answer = _call(fixture_wasm["trap"], "GET /api/v1/test/trap")
    assert answer.status == 500 and json.loads(answer.body)["code"] == "PLUGIN_FAILED" and answer.exit_code == 1


def test_a_refused_plugin_raises_its_problems_with_their_fixes(fixture_wasm: dict[str, Path]) -> None:
    with pytest.raises(PluginLoadError) as caught:
        _call(fixture_wasm["forbidden"], "GET /x")
    assert any("needs capability 'store'" in str(p) and p.fix for p in caught.value.problems)


def test_an_operator_config_without_the_grant_refuses_notes(tmp_path: Path) -> None:
    request = build_request(NOTES, "GET /api/v1/notes", user="u1", roles="user")
    with pytest.raises(PluginLoadError, match="capability 'store'"):
        asyncio.run(call_plugin(request, ArcanaConfig(grants={"*": ["log"]})))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The command sets up logging for its process: put the test session's back after it."""
    root, plugin = logging.getLogger(), logging.getLogger("arcana.plugin")
    handlers, level, plugin_level = root.handlers[:], root.level, plugin.level
    yield
    root.handlers[:], root.level = handlers, level
    plugin.setLevel(plugin_level)


@pytest.mark.usefixtures("restore_logging")
def test_the_command_prints_the_answer_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugin", "call", str(HELLO), "GET /api/v1/hello/Ada"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP/1.1 200 OK\n") and out.endswith('\n\n{\n  "message": "Hello, Ada!"\n}\n')
    assert cli.main(["plugin", "call", str(NOTES), "GET /api/v1/notes"]) == 1
    assert cli.main(["plugin", "call", str(HELLO), "hello"]) == ExitCode.CONFIG
    assert "not a request line" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_the_command_prints_a_refusal_as_check_does(
    fixture_wasm: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plugin", "call", str(fixture_wasm["forbidden"]), "GET /x"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("FAILED plugin 'forbidden'") and "fix:" in err


def test_call_request_is_what_the_command_line_gave() -> None:
    request = build_request(HELLO, "GET /x", user="u1", roles="a, b,")
    assert request == CallRequest(HELLO, HttpTarget("GET", "/x", {}), b"", {}, "u1", ("a", "b"), None)
