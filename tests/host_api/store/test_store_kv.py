"""Contract: the key-value space (get, set with TTL, delete, atomic incr) on every backend, Redis included."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from arcana.errors import ValidationFailed
from arcana_host.store.backend import KvBackend
from arcana_host.store.schema import kv
from arcana_host.store.sql_backend import SqlStoreBackend
from arcana_host.store.sql_kv import PURGE_EVERY


@pytest.mark.parametrize(
    "value", [1, -(2**63), 2**63 - 1, 2**64, 1.5, "text", "", None, True, [1, "a"], {"a": {"b": []}}]
)
def test_set_and_get_any_json_value(kv_backend: KvBackend, value: object) -> None:
    kv_backend.kv_set("p", "k", value, None)
    entry = kv_backend.kv_get("p", "k")
    assert entry.found and entry.value == value and type(entry.value) is type(value)


def test_missing_key_and_delete(kv_backend: KvBackend) -> None:
    assert not kv_backend.kv_get("p", "k").found
    assert kv_backend.kv_delete("p", "k") is False
    kv_backend.kv_set("p", "k", "v", None)
    assert kv_backend.kv_delete("p", "k") is True and not kv_backend.kv_get("p", "k").found


def test_ttl_expires_and_set_replaces_the_ttl(kv_backend: KvBackend) -> None:
    kv_backend.kv_set("p", "short", "v", 0.05)
    kv_backend.kv_set("p", "long", "v", 60)
    kv_backend.kv_set("p", "kept", "v", 0.05)
    kv_backend.kv_set("p", "kept", "v2", None)
    # Only what must hold however slow the machine: past its TTL "short" is gone, the others are not.
    time.sleep(0.08)
    assert not kv_backend.kv_get("p", "short").found and kv_backend.kv_get("p", "long").found
    assert kv_backend.kv_get("p", "kept").value == "v2"
    assert kv_backend.kv_delete("p", "short") is False


def test_incr_counts_from_zero_and_by_any_step(kv_backend: KvBackend) -> None:
    assert kv_backend.kv_incr("p", "c", 1) == 1
    assert kv_backend.kv_incr("p", "c", 41) == 42
    assert kv_backend.kv_incr("p", "c", -50) == -8
    kv_backend.kv_set("p", "c", 100, None)
    assert kv_backend.kv_incr("p", "c", 1) == 101 and kv_backend.kv_get("p", "c").value == 101


def test_incr_of_an_expired_key_starts_again_without_the_ttl(kv_backend: KvBackend) -> None:
    kv_backend.kv_set("p", "c", 7, 0.03)
    time.sleep(0.05)
    assert kv_backend.kv_incr("p", "c", 2) == 2
    time.sleep(0.05)
    assert kv_backend.kv_get("p", "c").value == 2


@pytest.mark.parametrize("value", ["7", 1.5, {"n": 1}, True, 2**64])
def test_incr_refuses_a_non_integer_and_leaves_it(kv_backend: KvBackend, value: object) -> None:
    kv_backend.kv_set("p", "c", value, None)
    with pytest.raises(ValidationFailed, match="not an integer"):
        kv_backend.kv_incr("p", "c", 1)
    assert kv_backend.kv_get("p", "c").value == value


def test_two_plugins_never_see_each_others_keys(kv_backend: KvBackend) -> None:
    kv_backend.kv_set("alpha", "k", "alpha's", None)
    kv_backend.kv_incr("alpha", "n", 5)
    assert not kv_backend.kv_get("beta", "k").found and kv_backend.kv_incr("beta", "n", 1) == 1
    assert kv_backend.kv_delete("beta", "k") is False
    kv_backend.kv_set("beta", "k", "beta's", None)
    assert kv_backend.kv_get("alpha", "k").value == "alpha's" and kv_backend.kv_get("alpha", "n").value == 5


def test_incr_from_many_threads_loses_no_update(kv_backend: KvBackend) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: kv_backend.kv_incr("p", "c", 1), range(200)))
    assert kv_backend.kv_get("p", "c").value == 200


def test_expired_keys_are_purged_by_later_sets(backend: SqlStoreBackend) -> None:
    backend.kv_set("p", "gone", 1, 0.001)
    time.sleep(0.01)
    for i in range(PURGE_EVERY):
        backend.kv_set("p", f"k{i % 3}", i, None)
    with backend._engine.connect() as conn:
        keys = {r.key for r in conn.execute(sa.select(kv.c.key).where(kv.c.plugin == "p"))}
    assert keys == {"k0", "k1", "k2"}
