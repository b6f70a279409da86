"""Contract: documents (put, get, delete, versions, batches) on every backend."""

from __future__ import annotations

import re

import pytest

from arcana.errors import Conflict, NotFound, VersionConflict
from arcana_host.store.backend import StoreBackend
from arcana_host.store.types import DeleteOp, PutOp

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_put_generates_an_id_and_every_document_carries_its_metadata(backend: StoreBackend) -> None:
    doc = backend.put("p", PutOp("notes", {"title": "a", "nested": {"x": [1, 2.5, None, True]}}))
    assert re.match(r"^[0-9a-f]{32}$", doc.id) and doc.version == 1
    assert STAMP.match(doc.created_at) and doc.created_at == doc.updated_at
    got = backend.get("p", "notes", doc.id)
    assert got == doc
    assert got.to_json() == {
        "title": "a",
        "nested": {"x": [1, 2.5, None, True]},
        "id": doc.id,
        "version": 1,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
    }


def test_upsert_bumps_the_version_and_keeps_created_at(backend: StoreBackend) -> None:
    first = backend.put("p", PutOp("notes", {"v": 1}, id="n1"))
    second = backend.put("p", PutOp("notes", {"v": 2}, id="n1"))
    assert (second.version, second.created_at, second.body) == (2, first.created_at, {"v": 2})
    assert second.updated_at >= first.updated_at
    assert backend.get("p", "notes", "n1").body == {"v": 2}


def test_stale_expected_version_is_a_conflict_and_changes_nothing(backend: StoreBackend) -> None:
    backend.put("p", PutOp("notes", {"v": 1}, id="n1"))
    assert backend.put("p", PutOp("notes", {"v": 2}, id="n1", expected_version=1)).version == 2
    with pytest.raises(VersionConflict, match="at version 2, not 1"):  # CONFLICT; gRPC: ABORTED
        backend.put("p", PutOp("notes", {"v": "stale"}, id="n1", expected_version=1))
    with pytest.raises(VersionConflict):
        backend.delete("p", DeleteOp("notes", "n1", expected_version=1))
    current = backend.get("p", "notes", "n1")
    assert (current.version, current.body) == (2, {"v": 2})


def test_expected_version_zero_creates_only(backend: StoreBackend) -> None:
    assert backend.put("p", PutOp("notes", {"v": 1}, id="n1", expected_version=0)).version == 1
    with pytest.raises(Conflict, match="already exists") as caught:
        backend.put("p", PutOp("notes", {"v": 2}, id="n1", expected_version=0))
    assert not isinstance(caught.value, VersionConflict)  # gRPC: ALREADY_EXISTS
    assert backend.get("p", "notes", "n1").body == {"v": 1}


def test_missing_documents_are_not_found(backend: StoreBackend) -> None:
    with pytest.raises(NotFound, match="no document 'x' in collection 'notes'"):
        backend.get("p", "notes", "x")
    with pytest.raises(NotFound):
        backend.put("p", PutOp("notes", {}, id="x", expected_version=3))
    with pytest.raises(NotFound):
        backend.delete("p", DeleteOp("notes", "x"))


def test_delete_with_and_without_a_version(backend: StoreBackend) -> None:
    backend.put("p", PutOp("notes", {}, id="a"))
    backend.put("p", PutOp("notes", {}, id="b"))
    backend.delete("p", DeleteOp("notes", "a", expected_version=1))
    backend.delete("p", DeleteOp("notes", "b"))
    for id in ("a", "b"):
        with pytest.raises(NotFound):
            backend.get("p", "notes", id)


def test_plugins_and_collections_are_separate_spaces(backend: StoreBackend) -> None:
    backend.put("alpha", PutOp("notes", {"owner": "alpha"}, id="same"))
    backend.put("beta", PutOp("notes", {"owner": "beta"}, id="same"))
    backend.put("alpha", PutOp("other", {"owner": "alpha/other"}, id="same"))
    assert backend.get("alpha", "notes", "same").body == {"owner": "alpha"}
    assert backend.get("beta", "notes", "same").body == {"owner": "beta"}
    backend.delete("beta", DeleteOp("notes", "same"))
    assert backend.get("alpha", "notes", "same").version == 1
    backend.kv_set("alpha", "k", 1, None)
    assert not backend.kv_get("beta", "k").found and backend.kv_incr("beta", "k", 5) == 5
    assert backend.kv_get("alpha", "k").value == 1


def test_batch_applies_every_operation_in_order(backend: StoreBackend) -> None:
    backend.put("p", PutOp("notes", {"v": 1}, id="old"))
    results = backend.batch(
        "p",
        [
            PutOp("notes", {"v": 1}, id="a"),
            PutOp("notes", {"v": 2}, id="a"),
            DeleteOp("notes", "old", expected_version=1),
            PutOp("notes", {"gen": True}),
        ],
    )
    assert [r.version if r else None for r in results] == [1, 2, None, 1]
    assert backend.get("p", "notes", "a").body == {"v": 2}
    assert backend.get("p", "notes", results[3].id).body == {"gen": True}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "failing",
    [
        DeleteOp("notes", "absent"),
        PutOp("notes", {"v": 9}, id="keep", expected_version=7),
        PutOp("notes", {}, id="keep", expected_version=0),
    ],
)
def test_batch_is_all_or_nothing(backend: StoreBackend, failing: PutOp | DeleteOp) -> None:
    backend.put("p", PutOp("notes", {"v": 1}, id="keep"))
    with pytest.raises((NotFound, Conflict), match=r"^ops\[2\]: "):
        backend.batch("p", [PutOp("notes", {"v": 2}, id="keep"), PutOp("notes", {}, id="new"), failing])
    assert backend.get("p", "notes", "keep").body == {"v": 1} and backend.get("p", "notes", "keep").version == 1
    with pytest.raises(NotFound):
        backend.get("p", "notes", "new")
