"""arcana.testing: the author test harness, on real fixture plugins in a real in-process kernel.

The example plugins' own tests (plugins/*/tests) use it as authors do; here
its helpers are pinned one by one: the principal, gRPC codes, jobs and events
delivered and recorded, logs, the store, refusals, and closing.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from arcana.errors import PluginLoadError
from arcana.testing import (
    EmittedEvent,
    HarnessFactory,
    LogRecord,
    NoHandler,
    PluginHarness,
    harness_factory,
    plugin_file,
)
from conftest import FIXTURES, ROOT, build_cached, build_variant

HELLO = ROOT / "plugins" / "hello" / "hello.wasm"
NOTES = ROOT / "plugins" / "notes" / "notes.wasm"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture plugins these tests use, built (or taken from the shared cache)."""
    names = ("inspect", "jobber", "queueprobe", "storeprobe", "forbidden", "trap")
    wasm = {name: build_cached(FIXTURES / name) for name in names}
    # inspect with its route and gRPC method for admins only.
    workdir = tmp_path_factory.mktemp("variants")
    wasm["inspect_admin"] = build_variant("inspect", workdir, {"public = true": 'roles = ["admin"]'})
    return wasm


def _principal(h: PluginHarness, **call: object) -> object:
    return h.post("/api/v1/test/inspect/1", json={}, **call).json()["principal"]  # type: ignore[arg-type]


# ---- the principal


def test_as_user_mints_a_real_token_per_call(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["inspect"])
    assert _principal(h, as_user="ada", roles=["editor", "user"]) == {"sub": "ada", "roles": ["editor", "user"]}
    assert _principal(h) is None  # the next call is anonymous again


def test_login_sets_the_principal_until_logout_and_as_user_wins(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["inspect"])
    h.login("ada", roles=["editor"])
    assert _principal(h) == {"sub": "ada", "roles": ["editor"]}
    assert _principal(h, as_user="bob") == {"sub": "bob", "roles": []}
    assert _principal(h) == {"sub": "ada", "roles": ["editor"]}
    h.logout()
    assert _principal(h) is None


def test_a_token_from_the_harness_works_in_an_authorization_header(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["inspect"])
    token = h.token("ada", ["user"])
    assert _principal(h, headers={"Authorization": f"Bearer {token}"}) == {"sub": "ada", "roles": ["user"]}
    forged = h.post("/api/v1/test/inspect/1", json={}, headers={"Authorization": f"Bearer {token}x"})
    assert forged.status == 401 and forged.error_code == "UNAUTHORIZED"


def test_roles_without_a_user_is_a_mistake_named_at_once(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["inspect"])
    with pytest.raises(ValueError, match="roles= needs as_user="):
        h.get("/api/v1/test/inspect/1", roles=["admin"])


def test_route_roles_are_the_kernels_rbac(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["inspect_admin"])
    assert h.post("/api/v1/test/inspect/1", json={}).error_code == "UNAUTHORIZED"
    assert h.post("/api/v1/test/inspect/1", json={}, as_user="ada").error_code == "FORBIDDEN"
    assert h.post("/api/v1/test/inspect/1", json={}, as_user="ada", roles=["admin"]).status == 200


def test_the_request_reaches_the_plugin_as_the_edge_sends_it(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["inspect"])
    seen = h.post("/api/v1/test/inspect/a%20b?tag=1&tag=2", body="plain", headers={"X-Trace-Me": "yes"}).json()
    assert (seen["path"], seen["params"], seen["query"]) == (
        "/api/v1/test/inspect/a b",
        {"id": "a b"},
        {"tag": ["1", "2"]},
    )
    assert seen["headers"]["x-trace-me"] == "yes" and seen["headers"]["content-type"].startswith("text/plain")
    assert seen["body_base64"] == "cGxhaW4="  # not JSON: the envelope carries the bytes as they came


# ---- gRPC


def test_grpc_ok_carries_the_reply_and_metadata_reaches_the_plugin(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["inspect"])
    reply = h.grpc("inspect.v1.Inspect/Envelope", {}, metadata={"X-Probe": "p1"}, as_user="ada")
    assert reply.ok and reply.error is None
    seen = json.loads(reply.message["json"])
    assert (seen["metadata"]["x-probe"], seen["principal"]) == ("p1", {"sub": "ada", "roles": []})


def test_grpc_errors_carry_the_status_name_and_the_error_model(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["inspect_admin"])
    anonymous = h.grpc("inspect.v1.Inspect/Envelope", {})
    assert anonymous.code == "UNAUTHENTICATED" and anonymous.message == {}
    assert anonymous.error is not None and anonymous.error["code"] == "UNAUTHORIZED"
    assert h.grpc("inspect.v1.Inspect/Envelope", {}, as_user="ada").code == "PERMISSION_DENIED"
    assert h.grpc("inspect.v1.Inspect/Envelope", {}, as_user="ada", roles=["admin"]).ok
    assert h.grpc("inspect.v1.Inspect/Nope", {}).code == "UNIMPLEMENTED"
    with pytest.raises(ValueError, match="not a gRPC method"):
        h.grpc("Envelope", {})


def test_a_grpc_message_that_does_not_fit_is_invalid_argument(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    wrong = h.grpc("greeter.v1.Greeter/SayHello", {"nom": "Ada"})
    assert wrong.code == "INVALID_ARGUMENT" and wrong.error is not None
    assert wrong.error["code"] == "VALIDATION_FAILED"


# ---- jobs


def test_run_job_gives_the_handlers_result_or_its_error(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["jobber"])
    done = h.run_job("jobber.echo_result", {"n": 1})
    assert (done.ok, done.result, done.error, done.handler) == (True, {"n": 1}, None, "echo_result")
    failed = h.run_job("jobber.fail")
    assert not failed.ok and failed.error_code == "CONFLICT" and failed.error is not None
    assert failed.error["message"] == "jobber was asked to fail"
    trapped = h.run_job("jobber.trap")
    assert not trapped.ok and trapped.error_code == "PLUGIN_FAILED"


def test_run_job_of_an_undeclared_type_names_the_declared_ones(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["jobber"])
    with pytest.raises(NoHandler, match=r"no \[\[job\]\] of type 'jobber\.nope'.*'jobber\.echo_result'"):
        h.run_job("jobber.nope")


def test_the_job_envelope_is_the_workers(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["queueprobe"])
    seen = h.run_job("probe.work", {"x": 1}, priority="high", attempt=2).result
    assert (seen["type"], seen["payload"], seen["priority"], seen["attempt"]) == ("probe.work", {"x": 1}, "high", 2)


def _probe(h: PluginHarness, **call: object) -> dict[str, object]:
    r = h.post("/probe/queue", json=call)
    assert r.status == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_jobs_lists_what_the_plugin_enqueued_until_it_runs(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["queueprobe"])
    assert h.jobs == []
    made = _probe(h, call="enqueue", type="probe.work", payload={"n": 1}, priority="low", dedupe_key="k1")["result"]
    [job] = h.jobs
    assert (job.id, job.type, job.payload, job.priority, job.state) == (
        made["id"],
        "probe.work",
        {"n": 1},
        "low",
        "queued",
    )  # type: ignore[index]
    assert job.dedupe_key == "plugin:queueprobe:k1" and job.attempts == 0
    _probe(h, call="enqueue", type="probe.work", payload={"n": 1}, dedupe_key="k1")  # deduped: nothing new
    assert len(h.jobs) == 1
    [outcome] = h.run_queued()
    assert outcome.ok and outcome.result["payload"] == {"n": 1} and outcome.handler == "work"
    assert h.jobs == []  # it ran
    status = _probe(h, call="status", id=made["id"])["result"]  # type: ignore[index]
    assert status["state"] == "succeeded"  # type: ignore[index]


def test_a_failed_queued_job_waits_for_its_retry_as_the_worker_leaves_it(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["queueprobe"])
    # An event delivery to the plugin's own subscriber, whose answer ({"result": ...}) an event handler may not give.
    _probe(h, call="emit", topic="probe.hello", payload={"a": 1})
    [outcome] = h.run_queued()
    assert not outcome.ok and outcome.error_code == "PLUGIN_FAILED" and outcome.handler == "seen"
    stats = h.kernel.jobs.stats()  # failed with retries left: waiting for its retry, neither dead nor succeeded
    assert (sum(stats.ready.values()) + stats.delayed, stats.dead, stats.succeeded) == (1, 0, 0)


def test_events_lists_what_the_plugin_emitted(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["queueprobe"])
    _probe(h, call="emit", topic="probe.one", payload={"a": 1})
    h.post("/probe/queue", json={"call": "emit", "topic": "probe.two"}, as_user="ada")
    assert [(e.topic, e.payload, e.principal, e.source) for e in h.events] == [
        ("probe.one", {"a": 1}, None, "queueprobe"),
        ("probe.two", {}, "ada", "queueprobe"),
    ]
    assert all(isinstance(e, EmittedEvent) and e.id for e in h.events)
    assert h.jobs == []  # deliveries to subscribers are the bus's jobs, not the plugin's


def test_an_emit_the_manifest_does_not_allow_is_forbidden_and_not_recorded(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["queueprobe"])
    r = h.post("/probe/queue", json={"call": "emit", "topic": "other.topic"})
    assert r.error_code == "FORBIDDEN" and h.events == []


def test_publish_delivers_to_matching_subscribers_only(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["queueprobe"])
    [done] = h.publish("probe.x", {"done": True})
    assert done.ok and done.result is None and done.handler == "seen"
    [refused] = h.publish("probe.x", {"a": 1})  # the probe answers a result, which an event handler may not
    assert refused.error_code == "PLUGIN_FAILED"
    assert h.publish("elsewhere.x", {}) == []


def test_clear_forgets_the_records_not_the_queue(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    h = arcana_plugin(built["queueprobe"])
    made = _probe(h, call="enqueue", type="probe.work")["result"]
    _probe(h, call="emit", topic="probe.one")
    h.clear()
    assert (h.jobs, h.events) == ([], [])
    assert _probe(h, call="status", id=made["id"])["result"]["state"] == "queued"  # type: ignore[index]


# ---- logs


def test_logs_keep_the_plugins_lines_at_every_level_with_their_fields(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(NOTES)
    note = h.post("/api/v1/notes", json={"title": "t"}, as_user="ada").json()
    assert h.logs == [LogRecord("info", "note created", {"id": note["id"]})]
    echo = arcana_plugin(ROOT / "plugins" / "echo" / "echo.wasm")
    echo.post("/api/v1/echo", json={})
    assert echo.logs == [LogRecord("debug", "echoing request body", {})]  # debug too, whatever the log level
    assert h.logs == [LogRecord("info", "note created", {"id": note["id"]})]  # each harness its own plugin's


# ---- the store


def _store_probe(h: PluginHarness, **call: object) -> object:
    r = h.post("/probe/zig", json=call)
    assert r.status == 200, r.text
    return r.json()["result"]


def test_seeded_documents_and_keys_are_what_the_plugin_reads(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["storeprobe"])
    seeded = h.store.put("things", "t1", {"name": "one"})
    assert (seeded["id"], seeded["version"], seeded["name"]) == ("t1", 1, "one")
    assert _store_probe(h, call="get", collection="things", id="t1") == seeded
    h.kv.set("count", 41)
    assert _store_probe(h, call="kv_incr", key="count") == 42


def test_what_the_plugin_writes_is_what_the_store_helpers_read(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    h = arcana_plugin(built["storeprobe"])
    _store_probe(h, call="put", collection="things", id="t2", doc={"name": "two"})
    _store_probe(h, call="kv_set", key="flag", value={"on": True})
    stored = h.store.get("things", "t2")
    assert stored is not None and stored["name"] == "two"
    assert [d["id"] for d in h.store.query("things", {"name": "two"})] == ["t2"]
    assert h.kv.get("flag") == {"on": True} and h.kv.get("missing", "default") == "default"
    assert h.store.delete("things", "t2") and h.store.get("things", "t2") is None and not h.store.delete("things", "t2")


def test_each_harness_has_a_fresh_store_unless_given_a_db(
    arcana_plugin: HarnessFactory, built: dict[str, Path], tmp_path: Path
) -> None:
    first = arcana_plugin(built["storeprobe"], db=tmp_path / "kept.db")
    first.kv.set("k", 1)
    first.close()
    assert arcana_plugin(built["storeprobe"]).kv.get("k") is None
    assert arcana_plugin(built["storeprobe"], db=tmp_path / "kept.db").kv.get("k") == 1


# ---- grants, refusals, building


def test_grants_replace_what_the_manifest_requests(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    with pytest.raises(PluginLoadError) as refused:
        arcana_plugin(built["storeprobe"], grants=["log"])
    assert "capabilities.store: requested but not granted" in str(refused.value)


def test_a_refused_plugin_raises_every_problem_with_its_fix(
    arcana_plugin: HarnessFactory, built: dict[str, Path]
) -> None:
    with pytest.raises(PluginLoadError) as refused:
        arcana_plugin(built["forbidden"])
    assert refused.value.plugin == "forbidden"
    assert any("needs capability 'store'" in str(p) and p.fix for p in refused.value.problems)
    assert str(refused.value).startswith(f"plugin 'forbidden' ({built['forbidden']}) refused:")


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no plugin file or folder"):
        PluginHarness(tmp_path / "nope.wasm")


def test_a_trap_is_500_plugin_failed(arcana_plugin: HarnessFactory, built: dict[str, Path]) -> None:
    r = arcana_plugin(built["trap"]).get("/api/v1/test/trap")
    assert r.status == 500 and r.error_code == "PLUGIN_FAILED"


@pytest.mark.toolchain
def test_a_source_folder_is_built_once_per_process() -> None:
    first = plugin_file(FIXTURES / "trap")
    assert first.suffix == ".wasm" and plugin_file(FIXTURES / "trap") == first


# ---- closing


def _loop_threads() -> int:
    return sum(t.name == "arcana-testing-loop" for t in threading.enumerate())


def test_the_factory_closes_every_harness_it_made() -> None:
    plugin_logger = logging.getLogger("arcana.plugin")
    level, threads = plugin_logger.level, _loop_threads()
    with harness_factory() as make:
        harnesses = [make(HELLO), make(NOTES)]
        folders = [h.kernel.plugins_dir for h in harnesses]
        assert all(f.is_dir() for f in folders) and _loop_threads() == threads + 2
    assert not any(f.exists() for f in folders)  # the temporary plugin folders and databases are gone
    assert _loop_threads() == threads and plugin_logger.level == level
    for h in harnesses:
        with pytest.raises(RuntimeError, match="the harness is closed"):
            h.get("/api/v1/hello/Ada")
        h.close()  # a second close does nothing


def test_the_pytest_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("arcana")


def test_closing_in_any_order_gives_the_plugin_logger_its_level_back() -> None:
    plugin_logger = logging.getLogger("arcana.plugin")
    level = plugin_logger.level
    first, second = PluginHarness(HELLO), PluginHarness(HELLO)
    assert plugin_logger.isEnabledFor(logging.DEBUG)
    first.close()
    assert plugin_logger.isEnabledFor(logging.DEBUG)  # the second still records every level
    second.close()
    assert plugin_logger.level == level


def test_the_docs_name_every_helper() -> None:
    import arcana.testing

    text = (ROOT / "docs" / "testing.md").read_text()
    helpers = [name for name in dir(PluginHarness) if not name.startswith("_")]
    missing = [n for n in [*arcana.testing.__all__, *helpers] if n not in text]
    assert missing == []


def test_every_exported_name_imports_from_the_package() -> None:
    import arcana.testing

    assert all(getattr(arcana.testing, name) is not None for name in arcana.testing.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        arcana.testing.Nope  # noqa: B018
