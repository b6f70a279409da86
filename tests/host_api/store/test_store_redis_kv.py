"""The kv on Redis beyond the contract suite: its key layout, failures, deadlines and config.

Needs Redis on 127.0.0.1:6379 (``redis_client`` skips loudly without it, fails with CI=true),
except the tests of config alone.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import ConfigError, ServiceUnavailable, ValidationFailed
from arcana.manifest import Manifest
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store.redis_kv import RedisKv
from arcana_host.store.schema import documents
from arcana_host.store.split_backend import SplitStoreBackend
from database_fixtures import REDIS_URL
from host_api.store.conftest import emptied_backend


@pytest.fixture
def redis_kv(redis_client: redis.Redis, redis_prefix: str) -> Iterator[RedisKv]:
    kv = RedisKv.from_config(StoreConfig(kv_backend="redis", kv_redis_url=REDIS_URL, kv_key_prefix=redis_prefix))
    yield kv
    kv.close()


def keys_under(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


HOSTILE = [
    ("a", "b:c"),
    ("a:b", "c"),
    ("a:1:b", "c"),
    ("1:a", "b"),
    ("a", "1:a:b"),
    ("x" * 300, "k"),
    ("x" * 299, "x:k"),
    ("p", "*"),
    ("ключ", "k"),
]


def test_hostile_plugin_names_and_keys_never_meet(redis_kv: RedisKv) -> None:
    for i, (plugin, key) in enumerate(HOSTILE):
        redis_kv.kv_set(plugin, key, i, None)
    assert [redis_kv.kv_get(plugin, key).value for plugin, key in HOSTILE] == list(range(len(HOSTILE)))
    assert len({redis_kv.redis_key(plugin, key) for plugin, key in HOSTILE}) == len(HOSTILE)
    assert redis_kv.kv_delete("a", "b:c") and redis_kv.kv_get("a:b", "c").value == 1


def test_every_key_is_under_the_prefix_and_deleted_keys_leave_nothing(
    redis_kv: RedisKv, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_kv.kv_set("alpha", "k", {"a": 1}, None)
    redis_kv.kv_incr("beta", "n", 3)
    assert keys_under(redis_client, redis_prefix) == {
        f"{redis_prefix}:kv:5:alpha:k".encode(),
        f"{redis_prefix}:kv:4:beta:n".encode(),
    }
    assert redis_client.get(f"{redis_prefix}:kv:5:alpha:k") == b'{"a":1}'
    redis_kv.kv_delete("alpha", "k")
    redis_kv.kv_delete("beta", "n")
    assert keys_under(redis_client, redis_prefix) == set()


def test_a_ttl_is_redis_own_expiry_and_incr_keeps_a_live_one(
    redis_kv: RedisKv, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_kv.kv_set("p", "t", 1, 60)
    redis_kv.kv_incr("p", "t", 1)
    redis_kv.kv_incr("p", "fresh", 1)
    assert 0 < redis_client.pttl(redis_kv.redis_key("p", "t")) <= 60_000
    assert redis_client.pttl(redis_kv.redis_key("p", "fresh")) == -1  # no TTL
    redis_kv.kv_set("p", "gone", 1, 0.01)
    time.sleep(0.05)
    assert keys_under(redis_client, redis_prefix) == {redis_kv.redis_key("p", "t"), redis_kv.redis_key("p", "fresh")}


def test_incr_past_64_bits_is_refused_and_leaves_the_value(redis_kv: RedisKv) -> None:
    redis_kv.kv_set("p", "c", 2**63 - 1, None)
    with pytest.raises(ValidationFailed, match="overflow"):
        redis_kv.kv_incr("p", "c", 1)
    assert redis_kv.kv_get("p", "c").value == 2**63 - 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_redis_down_answers_service_unavailable() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    kv = RedisKv.from_config(StoreConfig(kv_backend="redis", kv_redis_url=url))
    calls = [
        lambda: kv.kv_get("p", "k"),
        lambda: kv.kv_set("p", "k", 1, None),
        lambda: kv.kv_delete("p", "k"),
        lambda: kv.kv_incr("p", "k", 1),
    ]
    for call in calls:
        with pytest.raises(ServiceUnavailable, match="Redis is unavailable") as info:
            call()
        assert info.value.retry_after == 1 and isinstance(info.value.__cause__, redis.ConnectionError)
    kv.close()


def test_a_call_with_no_time_left_sends_nothing(redis_kv: RedisKv) -> None:
    late = CallContext("p", "1.0.0", deadline=time.monotonic() - 1)
    with pytest.raises(ServiceUnavailable, match="no time left"):
        redis_kv.kv_set("p", "k", 1, None, late)
    assert not late.may_have_saved and not redis_kv.kv_get("p", "k").found


def test_writes_mark_the_call_and_a_refused_incr_does_not(redis_kv: RedisKv) -> None:
    call = CallContext("p", "1.0.0", deadline=time.monotonic() + 60)
    redis_kv.kv_get("p", "k", call)
    assert not call.may_have_saved
    redis_kv.kv_set("p", "k", "text", None, call)
    assert call.may_have_saved
    refused = CallContext("p", "1.0.0", deadline=time.monotonic() + 60)
    with pytest.raises(ValidationFailed, match="not an integer"):
        redis_kv.kv_incr("p", "k", 1, refused)
    assert not refused.may_have_saved


def store_config(prefix: str, **store: object) -> ArcanaConfig:
    return ArcanaConfig(
        capabilities={"store": {"kv_backend": "redis", "kv_redis_url": REDIS_URL, "kv_key_prefix": prefix, **store}}
    )


def test_config_puts_the_kv_on_redis_and_documents_on_sql(
    sqlite_store_db: Database, redis_client: redis.Redis, redis_prefix: str
) -> None:
    emptied_backend(sqlite_store_db)
    store = StoreCapability.from_config(store_config(redis_prefix), sqlite_store_db)
    assert isinstance(store.backend, SplitStoreBackend) and isinstance(store.backend.kv, RedisKv)
    functions = link_capability(store, PluginSpec(Manifest("notes", "1.0.0"), frozenset({"store"})))

    def host(name: str, **request: object) -> object:
        return json.loads(functions[name].call(CallContext("notes", "1.0.0"), json.dumps(request).encode()))

    assert host("kv_set", key="k", value=[1, "a"], ttl=60) == {}
    assert host("kv_incr", key="n", by=2) == {"value": 2}
    assert host("kv_get", key="k") == {"found": True, "value": [1, "a"]}
    assert host("store_put", collection="c", id="d", doc={"x": 1})["doc"]["version"] == 1  # type: ignore[index]
    assert keys_under(redis_client, redis_prefix) == {
        f"{redis_prefix}:kv:5:notes:k".encode(),
        f"{redis_prefix}:kv:5:notes:n".encode(),
    }
    with sqlite_store_db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one() == 1
    assert host("kv_delete", key="k") == {"deleted": True}
    store.close()


def test_config_defaults_to_the_sql_kv_and_refuses_unknown_backends() -> None:
    assert ArcanaConfig().section("store", StoreConfig).kv_backend == "sql"
    with pytest.raises(ConfigError, match="kv_backend"):
        ArcanaConfig(capabilities={"store": {"kv_backend": "memcached"}}).section("store", StoreConfig)
    with pytest.raises(ConfigError, match="kv_key_prefix"):
        StoreConfig(kv_key_prefix="")


def test_plugin_check_without_a_database_only_validates() -> None:
    store = StoreCapability.from_config(store_config("unused"), None)
    with pytest.raises(ServiceUnavailable):
        _ = store.backend


def test_redis_chosen_without_the_client_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "arcana_host.store.redis_kv")
    with pytest.raises(ConfigError, match=r"pip install 'arcana\[redis\]'"):
        StoreCapability.from_config(store_config("unused"), None)
