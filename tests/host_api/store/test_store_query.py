"""Contract: store_query filters, sorts and pages the same way on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from arcana_host.store import requests as parse
from arcana_host.store.backend import StoreBackend
from arcana_host.store.config import StoreConfig
from arcana_host.store.types import PutOp

DOCS: dict[str, dict[str, Any]] = {
    "a": {"title": "Apple pie", "n": 3, "tags": ["food", "sweet"], "meta": {"author": "ann", "stars": 5}},
    "b": {"title": "banana", "n": 1.5, "tags": ["food"], "meta": {"author": "bob"}, "done": True},
    "c": {"title": "Cherry", "n": "3", "tags": "sweet", "done": False},
    "d": {"title": "apple", "n": -2, "tags": [], "meta": {"author": "ann", "stars": 2}, "done": None},
    "e": {"title": "Äpfel", "n": 10, "meta": {"author": "cy", "stars": 3}},
    "f": {"title": "", "n": [3], "tags": ["Sweet"]},
}


@pytest.fixture
def seeded(backend: StoreBackend) -> StoreBackend:
    for id, body in DOCS.items():
        backend.put("p", PutOp("recipes", body, id=id))
    backend.put("p", PutOp("elsewhere", {"title": "Apple pie"}, id="z"))
    backend.put("q", PutOp("recipes", {"title": "Apple pie"}, id="y"))
    return backend


def ids(backend: StoreBackend, **request: Any) -> list[str]:
    page = backend.query("p", parse.query({"collection": "recipes", **request}, StoreConfig()))
    assert page.total >= len(page.items)
    return [d.id for d in page.items]


@pytest.mark.parametrize(
    "filter, expected",
    [
        ({"title": "apple"}, ["d"]),  # equality is exact and case-sensitive
        ({"n": 3}, ["a"]),  # the number 3, not the string "3" nor [3]
        ({"n": "3"}, ["c"]),
        ({"n": 1.5}, ["b"]),
        ({"done": True}, ["b"]),
        ({"done": False}, ["c"]),
        ({"done": None}, ["a", "d", "e", "f"]),  # null or missing
        ({"meta.author": "ann"}, ["a", "d"]),  # nested paths
        ({"meta.stars": {"$gte": 3}}, ["a", "e"]),
        ({"meta.stars": {"$gt": 2, "$lt": 5}}, ["e"]),  # several operators: all must hold
        ({"n": {"$lte": 1.5}}, ["b", "d"]),  # ranges on numbers skip non-numbers
        ({"title": {"$gte": "a", "$lt": "b"}}, ["d"]),  # upper case sorts before lower case
        ({"title": {"$lt": "B"}}, ["a", "f"]),  # byte order: "" < "Apple" < "B"
        ({"title": {"$in": ["apple", "Cherry", "nope"]}}, ["c", "d"]),
        ({"n": {"$in": [3, "3", None]}}, ["a", "c"]),  # null in $in: none of these lack n
        ({"title": {"$prefix": "App"}}, ["a"]),  # case-sensitive prefix
        ({"title": {"$prefix": "Ä"}}, ["e"]),
        ({"title": {"$prefix": "%"}}, []),  # no LIKE wildcards
        ({"title": {"$prefix": "_pple"}}, []),
        ({"tags": {"$contains": "sweet"}}, ["a", "c"]),  # arrays holding it, or the value itself
        ({"tags": {"$contains": "food"}, "meta.author": "bob"}, ["b"]),
        ({"n": {"$contains": 3}}, ["a", "f"]),
        ({"id": {"$in": ["a", "c", "zz"]}}, ["a", "c"]),  # metadata fields
        ({"id": {"$prefix": "b"}}, ["b"]),
        ({"version": 1, "id": {"$gt": "d"}}, ["e", "f"]),
        ({"created_at": {"$gte": "2000-01-01"}}, ["a", "b", "c", "d", "e", "f"]),
        ({"missing.deeply.nested": 1}, []),
    ],
)
def test_filters(seeded: StoreBackend, filter: dict[str, Any], expected: list[str]) -> None:
    assert ids(seeded, filter=filter, sort="id") == expected


def test_sort_orders_json_types_then_values_byte_wise(seeded: StoreBackend) -> None:
    # missing/null < booleans < numbers < strings < arrays/objects; ties by id
    assert ids(seeded, sort="n") == ["d", "b", "a", "e", "c", "f"]
    assert ids(seeded, sort="title") == ["f", "a", "c", "d", "b", "e"]
    assert ids(seeded, sort="title", order="desc") == ["e", "b", "d", "c", "a", "f"]
    assert ids(seeded, sort="done") == ["a", "d", "e", "f", "c", "b"]
    assert ids(seeded, sort="meta.stars", order="desc") == ["a", "e", "d", "f", "c", "b"]
    assert ids(seeded, sort="id", order="desc") == ["f", "e", "d", "c", "b", "a"]
    assert ids(seeded) == ["a", "b", "c", "d", "e", "f"]  # default: created_at, then id


def test_pages_and_totals(seeded: StoreBackend) -> None:
    config = StoreConfig()
    first = seeded.query("p", parse.query({"collection": "recipes", "sort": "id", "size": 4}, config))
    second = seeded.query("p", parse.query({"collection": "recipes", "sort": "id", "size": 4, "page": 2}, config))
    beyond = seeded.query("p", parse.query({"collection": "recipes", "sort": "id", "size": 4, "page": 9}, config))
    assert [d.id for d in first.items] == ["a", "b", "c", "d"] and [d.id for d in second.items] == ["e", "f"]
    assert (first.total, second.total, beyond.total, beyond.items) == (6, 6, 6, [])
    assert second.to_json()["page"] == 2 and second.to_json()["size"] == 4
    filtered = seeded.query(
        "p", parse.query({"collection": "recipes", "filter": {"meta.author": "ann"}, "size": 1}, config)
    )
    assert filtered.total == 2 and len(filtered.items) == 1


def test_query_sees_only_the_callers_collection(seeded: StoreBackend) -> None:
    page = seeded.query("q", parse.query({"collection": "recipes"}, StoreConfig()))
    assert [d.id for d in page.items] == ["y"] and page.total == 1
