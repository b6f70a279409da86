"""The store's host functions as a plugin calls them: JSON in, JSON out, scoped, validated."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from arcana.config import DatabaseConfig
from arcana.database import UNAVAILABLE_RETRY_AFTER_S, Database, create_db_engine
from arcana.manifest import Manifest
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store.schema import documents, kv
from arcana_host.store.sql_backend import SqlStoreBackend

Host = Callable[..., dict[str, Any]]


def error_code(reply: dict[str, Any]) -> str | None:
    return reply.get("error", {}).get("code")


def test_crud_round_trip_through_json(host: Host) -> None:
    created = host("store_put", collection="notes", doc={"title": "t", "tags": ["a"]})["doc"]
    assert set(created) == {"title", "tags", "id", "version", "created_at", "updated_at"}
    assert host("store_get", collection="notes", id=created["id"]) == {"doc": created}
    updated = host("store_put", collection="notes", id=created["id"], doc={"title": "u"}, expected_version=1)["doc"]
    assert updated["version"] == 2 and updated["created_at"] == created["created_at"]
    stale = host("store_put", collection="notes", id=created["id"], doc={"title": "x"}, expected_version=1)
    assert error_code(stale) == "CONFLICT" and "version 2" in stale["error"]["message"]
    page = host("store_query", collection="notes", filter={"title": "u"}, sort="title", order="desc", size=5)
    assert page == {"items": [updated], "total": 1, "page": 1, "size": 5}
    assert host("store_delete", collection="notes", id=created["id"], expected_version=2) == {"deleted": True}
    assert error_code(host("store_get", collection="notes", id=created["id"])) == "NOT_FOUND"


def test_kv_round_trip_through_json(host: Host) -> None:
    assert host("kv_get", key="k") == {"found": False, "value": None}
    assert host("kv_set", key="k", value={"a": [1]}, ttl=60) == {}
    assert host("kv_get", key="k") == {"found": True, "value": {"a": [1]}}
    assert host("kv_incr", key="n") == {"value": 1} and host("kv_incr", key="n", by=9) == {"value": 10}
    assert host("kv_delete", key="k") == {"deleted": True} and host("kv_delete", key="k") == {"deleted": False}
    assert error_code(host("kv_incr", key="n", by=1.5)) == "VALIDATION_FAILED"


def test_batch_through_json_is_atomic(host: Host) -> None:
    host("store_put", collection="c", id="keep", doc={"v": 1})
    ok = host(
        "store_batch",
        ops=[
            {"op": "put", "collection": "c", "id": "n", "doc": {}},
            {"op": "delete", "collection": "c", "id": "keep", "expected_version": 1},
        ],
    )
    assert [list(r) for r in ok["results"]] == [["doc"], ["deleted"]]
    failed = host(
        "store_batch",
        ops=[
            {"op": "put", "collection": "c", "id": "m", "doc": {}},
            {"op": "put", "collection": "c", "id": "n", "doc": {}, "expected_version": 5},
        ],
    )
    assert error_code(failed) == "CONFLICT" and failed["error"]["message"].startswith("ops[1]: ")
    assert error_code(host("store_get", collection="c", id="m")) == "NOT_FOUND"
    bad = host("store_batch", ops=[{"op": "put", "collection": "c", "doc": {}}, {"op": "upsert"}])
    assert error_code(bad) == "VALIDATION_FAILED" and bad["error"]["message"].startswith("ops[1]: ")
    assert (
        error_code(host("store_batch", ops=[{"op": "delete", "collection": "c", "id": "x"}] * 11))
        == "VALIDATION_FAILED"
    )


def test_two_plugins_with_the_same_names_see_different_data(host: Host) -> None:
    host("store_put", plugin="alpha", collection="notes", id="n1", doc={"who": "alpha"})
    host("kv_set", plugin="alpha", key="k", value="alpha")
    assert error_code(host("store_get", plugin="beta", collection="notes", id="n1")) == "NOT_FOUND"
    assert host("store_query", plugin="beta", collection="notes")["total"] == 0
    assert host("kv_get", plugin="beta", key="k")["found"] is False
    assert error_code(host("store_delete", plugin="beta", collection="notes", id="n1")) == "NOT_FOUND"
    host("store_put", plugin="beta", collection="notes", id="n1", doc={"who": "beta"})
    assert host("store_get", plugin="alpha", collection="notes", id="n1")["doc"]["who"] == "alpha"
    assert host("store_get", plugin="beta", collection="notes", id="n1")["doc"]["version"] == 1


INJECTIONS = [
    "x'; DROP TABLE store_documents; --",
    'x" OR 1=1 --',
    "notes/../other",
    "$.title",
    "a b",
    "ünïcode",
    "",
    "x" * 65,
    "1notes",
    "notes;",
    "notes\x00",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_collection_names_are_validated(host: Host, name: str) -> None:
    for fn, extra in (("store_put", {"doc": {}}), ("store_get", {"id": "a"}), ("store_query", {})):
        reply = host(fn, collection=name, **extra)
        assert error_code(reply) == "VALIDATION_FAILED" and "collection" in reply["error"]["message"]


@pytest.mark.parametrize("doc_id", ["a/b", "../x", "' OR '1'='1", "", "-lead", "x" * 129, "a b"])
def test_ids_are_validated(host: Host, doc_id: str) -> None:
    assert error_code(host("store_get", collection="c", id=doc_id)) == "VALIDATION_FAILED"
    assert error_code(host("store_put", collection="c", id=doc_id, doc={})) == "VALIDATION_FAILED"


@pytest.mark.parametrize("key", ["'; DELETE FROM store_kv; --", "k' OR '1'='1", "%", "_", "a\\b", "ключ", "x" * 256])
def test_any_printable_key_is_plain_data(host: Host, database: Database, key: str) -> None:
    host("kv_set", key="other", value=1)
    assert host("kv_set", key=key, value="v") == {}
    assert host("kv_get", key=key) == {"found": True, "value": "v"}
    assert host("kv_incr", key="other") == {"value": 2}
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(kv)).scalar_one() == 2


@pytest.mark.parametrize("key", ["", "x" * 257, "new\nline", "tab\t", "\x7f"])
def test_bad_keys_are_refused(host: Host, key: str) -> None:
    assert error_code(host("kv_set", key=key, value=1)) == "VALIDATION_FAILED"


@pytest.mark.parametrize(
    "filter",
    [
        {"title') OR 1=1 --": 1},
        {"a..b": 1},
        {".a": 1},
        {"a[0]": 1},
        {"a'": 1},
        {"a.b.c.d.e.f.g.h.i": 1},
        {"title": {"$where": "1=1"}},
        {"title": {"$regex": ".*"}},
        {"title": {}},
        {"title": {"$in": []}},
        {"title": {"$in": "x"}},
        {"title": {"$gt": True}},
        {"title": {"$prefix": 1}},
        {"title": [1]},
        {"title": {"$contains": None}},
        {"version": "1"},
        {"id": 3},
        {"id": {"$contains": "x"}},
        {"version": {"$prefix": "1"}},
        "title = 1",
        ["title"],
        {"n": {"$in": list(range(101))}},
        {"n": 2**64},
        {"s": "x" * 1025},
    ],
)
def test_bad_filters_are_refused(host: Host, filter: object) -> None:
    reply = host("store_query", collection="c", filter=filter)
    assert error_code(reply) == "VALIDATION_FAILED", reply


@pytest.mark.parametrize("sort", ["title; DROP TABLE x", "title DESC", "a..b", "", "(select 1)", "a'"])
def test_bad_sort_fields_and_orders_are_refused(host: Host, sort: str) -> None:
    assert error_code(host("store_query", collection="c", sort=sort)) == "VALIDATION_FAILED"
    assert error_code(host("store_query", collection="c", order=sort)) == "VALIDATION_FAILED"


def test_hostile_values_are_stored_as_data(host: Host, database: Database) -> None:
    evil = "x'); DROP TABLE store_documents; --"
    host("store_put", collection="c", id="e", doc={"title": evil, evil.replace(" ", "_")[:30]: 1})
    page = host("store_query", collection="c", filter={"title": evil}, sort="title")
    assert page["total"] == 1 and page["items"][0]["title"] == evil
    assert host("store_query", collection="c", filter={"title": {"$prefix": "x'"}})["total"] == 1
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one() == 1


@pytest.mark.parametrize(
    "request_, code",
    [
        ({"collection": "c", "doc": {"x": "y" * 3000}}, "PAYLOAD_TOO_LARGE"),
        ({"collection": "c", "doc": {"id": "mine"}}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": {"version": 3}}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": [1]}, "VALIDATION_FAILED"),
        ({"collection": "c"}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": {"s": "nul\x00"}}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": {"n": float("nan")}}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": {}, "expected_version": -1}, "VALIDATION_FAILED"),
        ({"collection": "c", "doc": {}, "expected_version": "1"}, "VALIDATION_FAILED"),
        ({"collection": 5, "doc": {}}, "VALIDATION_FAILED"),
    ],
)
def test_put_bounds_and_shapes(host: Host, request_: dict[str, object], code: str) -> None:
    reply = host("store_put", **request_)
    assert error_code(reply) == code, reply


def test_size_limits_are_clear(host: Host) -> None:
    big = host("store_put", collection="c", doc={"x": "y" * 3000})
    assert big["error"]["message"] == "doc is 3008 bytes; the most a document may hold is 2048 bytes"
    page = host("store_query", collection="c", size=51)
    assert page["error"] == {"code": "VALIDATION_FAILED", "message": "size must be between 1 and 50, got 51"}
    assert error_code(host("store_query", collection="c", page=0)) == "VALIDATION_FAILED"
    assert error_code(host("kv_set", key="k", value="v" * 600)) == "PAYLOAD_TOO_LARGE"
    assert error_code(host("kv_set", key="k", value=1, ttl=0)) == "VALIDATION_FAILED"
    assert error_code(host("kv_set", key="k")) == "VALIDATION_FAILED"


def test_calls_are_counted_by_plugin_function_and_outcome(host: Host) -> None:
    def count(outcome: str) -> float:
        labels = {"plugin": "metered", "capability": "store", "function": "store_get", "outcome": outcome}
        return REGISTRY.get_sample_value("arcana_host_calls_total", labels) or 0.0

    before_ok, before_missing = count("ok"), count("not_found")
    host("store_put", plugin="metered", collection="c", id="a", doc={})
    host("store_get", plugin="metered", collection="c", id="a")
    host("store_get", plugin="metered", collection="c", id="b")
    assert (count("ok") - before_ok, count("not_found") - before_missing) == (1, 1)


def test_a_database_that_is_down_is_service_unavailable_not_a_crash() -> None:
    down = create_db_engine(DatabaseConfig(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    store = StoreCapability(StoreConfig(), SqlStoreBackend(down))
    fn = link_capability(store, PluginSpec(Manifest("p", "1.0.0"), frozenset({"store"})))
    for name, request in (
        ("store_get", {"collection": "c", "id": "a"}),
        ("kv_incr", {"key": "k"}),
        ("store_query", {"collection": "c"}),
    ):
        reply = json.loads(fn[name].call(CallContext("p", "1.0.0"), json.dumps(request).encode()))
        assert reply == {
            "error": {
                "code": "SERVICE_UNAVAILABLE",
                "message": "store: the database is unavailable; try again later",
                "retry_after": UNAVAILABLE_RETRY_AFTER_S,
            }
        }
    down.dispose()
