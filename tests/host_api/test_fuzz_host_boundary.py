"""Fuzz: every host function of every capability, through the one JSON boundary a plugin calls.

Requests are what a hostile or buggy plugin can pass: random bytes, random
JSON (NaN, infinities, huge integers, lone-surrogate escapes, deep nesting),
and objects with the very fields each function reads filled with random
values. Whatever arrives, the linked function does not raise, answers a
JSON object, and an error in it is in the public model and never INTERNAL
(INTERNAL means the kernel itself broke, and logs a traceback).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arcana.config import ArcanaConfig, DatabaseConfig, QueueConfig
from arcana.database import Database, migrate
from arcana.errors import ErrorCode
from arcana.manifest import Job, Manifest
from arcana.queue.jobs import JobQueue
from arcana.types import CallContext, LinkedFunction, PluginSpec
from arcana_host.auth import AuthCapability
from arcana_host.binding import link_capability
from arcana_host.catalog import CATALOG
from arcana_host.events import EventsCapability
from arcana_host.http import HttpCapability
from arcana_host.log import LogCapability
from arcana_host.queue import QueueCapability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store.sql_backend import SqlStoreBackend
from fuzzing import ANY_TEXT, FINITE_SCALARS, fuzz_settings, json_values
from http_harness import FakeResolver
from http_harness import config as http_config
from queue_fakes import HOST_FUNCTIONS, MemoryQueueBackend, RecordingBus

pytestmark = pytest.mark.fuzz

PLUGIN = "fuzzed"
GRANTS = frozenset({"log", "store", "auth", "auth.issue", "queue", "events", "http"})
# Small queue bounds, so that the fuzz reaches them.
QUEUE = ArcanaConfig(queue=QueueConfig(max_payload_bytes=512, max_delay_s=60, max_retries_limit=5))


class FakeIdentity:
    """The kernel's identity as the auth capability sees it (``arcana_host.auth.Identity``), without Argon2 or keys."""

    def hash_password(self, password: str) -> str:
        return "fake$" + hashlib.sha256(password.encode()).hexdigest()

    def verify_password(self, stored: str, password: str) -> bool:
        return stored == self.hash_password(password)

    def issue_token(self, sub: str, roles: list[str], ttl_s: int) -> tuple[str, int]:
        return "fake." + hashlib.sha256(json.dumps([sub, roles]).encode()).hexdigest(), ttl_s


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LinkedFunction]]:
    """Every host function, linked for one plugin granted everything, the store on a fresh SQLite file."""
    folder: Path = tmp_path_factory.mktemp("fuzz-host")
    database = Database(DatabaseConfig(url=f"sqlite:///{folder / 'store.db'}"))
    migrate(database.engine)
    store = StoreCapability(
        StoreConfig(max_doc_bytes=2048, max_value_bytes=512, max_page_size=50, max_batch_ops=10),
        SqlStoreBackend(database.engine),
    )
    manifest = Manifest(
        PLUGIN,
        "1.0.0",
        capabilities={"events": ("note.*",), "http": ("127.0.0.1", "*.example.com")},
        jobs=(Job("fuzz.work", "work"),),
    )
    spec = PluginSpec(manifest, GRANTS)
    queue = QueueCapability.from_config(QUEUE, JobQueue(QUEUE.queue, MemoryQueueBackend(HOST_FUNCTIONS)))
    events = EventsCapability.from_config(QUEUE, RecordingBus())
    # No network: names resolve to loopback (refused for wildcards), 127.0.0.1 is granted but nothing listens.
    resolver = FakeResolver({"a.example.com": ["127.0.0.1"], "b.example.com": ["93.184.216.34", "10.0.0.1"]})
    http = HttpCapability(http_config({"max_timeout_ms": 2000, "default_timeout_ms": 1000}), resolver=resolver)
    linked: dict[str, LinkedFunction] = {}
    for capability in (LogCapability(), store, AuthCapability(FakeIdentity()), queue, events, http):
        linked |= link_capability(capability, spec)
    yield linked
    http.close()
    store.close()
    database.close()


def test_every_capability_function_is_fuzzed(functions: dict[str, LinkedFunction]) -> None:
    """The fuzz below draws from this table: a new host function must be fuzzed too."""
    assert set(functions) == set(FIELDS) == set(CATALOG)


# The fields each function reads, with values that pass its checks (so the fuzz reaches the database); the
# "mixed" requests below put anything at all in any of them.
COLLECTIONS = st.sampled_from(["notes", "n", "a.b-c_1", "Z" * 64])
IDS = st.sampled_from(["n1", "n2", "_x", "a:b~c.d-e", "9" * 128])
FIELD_NAMES = st.sampled_from(["title", "tags", "n", "a.b", "owner", "id", "version", "created_at", "updated_at"])
OPERATORS = st.sampled_from(["$eq", "$gt", "$gte", "$lt", "$lte", "$in", "$prefix", "$contains", "$ne", "eq"])
CONDITION_VALUES = st.one_of(
    FINITE_SCALARS, st.lists(FINITE_SCALARS, max_size=4), st.sampled_from(["%", "_", "\\", "'", '"', "n%"])
)
FILTERS = st.dictionaries(
    FIELD_NAMES, st.one_of(CONDITION_VALUES, st.dictionaries(OPERATORS, CONDITION_VALUES, max_size=3)), max_size=4
)
DOCS = st.dictionaries(st.sampled_from(["title", "tags", "n", "a", "owner"]), json_values(FINITE_SCALARS), max_size=5)
VERSIONS = st.one_of(st.none(), st.integers(0, 5))
KEYS = st.sampled_from(["k", "counter", "a" * 256, "\u00e9\U0001f600"])
PAGES = st.integers(1, 3)
PUT_FIELDS = {"collection": COLLECTIONS, "id": IDS, "doc": DOCS, "expected_version": VERSIONS}
DELETE_FIELDS = {"collection": COLLECTIONS, "id": IDS, "expected_version": VERSIONS}


def _put_or_delete(fields: st.SearchStrategy[dict[str, Any]], op: str) -> st.SearchStrategy[dict[str, Any]]:
    return fields.map(lambda f: {"op": op, **f})


FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "log": {
        "level": st.sampled_from(["debug", "info", "warn", "warning", "error", "INFO"]),
        "message": ANY_TEXT,
        "fields": st.dictionaries(st.text(max_size=10), json_values(FINITE_SCALARS), max_size=3),
    },
    "store_get": {"collection": COLLECTIONS, "id": IDS},
    "store_put": PUT_FIELDS,
    "store_delete": DELETE_FIELDS,
    "store_query": {
        "collection": COLLECTIONS,
        "filter": FILTERS,
        "sort": FIELD_NAMES,
        "order": st.sampled_from(["asc", "desc"]),
        "page": PAGES,
        "size": PAGES,
    },
    "store_batch": {
        "ops": st.lists(
            st.one_of(
                _put_or_delete(st.fixed_dictionaries(PUT_FIELDS), "put"),
                _put_or_delete(st.fixed_dictionaries(DELETE_FIELDS), "delete"),
                json_values(),
            ),
            max_size=12,
        )
    },
    "kv_get": {"key": KEYS},
    "kv_set": {"key": KEYS, "value": json_values(FINITE_SCALARS), "ttl": st.one_of(st.none(), st.floats(0.001, 1e8))},
    "kv_delete": {"key": KEYS},
    "kv_incr": {"key": KEYS, "by": st.one_of(st.none(), st.integers(-3, 3), st.integers(2**62, 2**63 - 1))},
    "auth_hash_password": {"password": st.text(min_size=1, max_size=1024)},
    "auth_verify_password": {"password": st.text(min_size=1), "hash": st.sampled_from(["fake$", "$argon2id$v=19$"])},
    "auth_check_role": {"role": st.one_of(st.sampled_from(["admin", "user"]), st.text(min_size=1, max_size=64))},
    "auth_issue_token": {
        "sub": st.text(min_size=1, max_size=256),
        "roles": st.lists(st.text(max_size=10), max_size=3),
        "ttl_s": st.integers(1, 3600),
    },
    "queue_enqueue": {
        "type": st.sampled_from(["fuzz.work", "other.work", ""]),
        "payload": json_values(FINITE_SCALARS),
        "priority": st.sampled_from(["critical", "high", "normal", "low", "HIGH", "urgent"]),
        "delay_ms": st.one_of(st.integers(-1, 70_000), st.integers(2**62, 2**64)),
        "max_retries": st.integers(-1, 30),
        "dedupe_key": st.one_of(ANY_TEXT, st.sampled_from(["k", "k" * 300, "\u00e9" * 200])),
    },
    "queue_status": {"id": st.one_of(st.sampled_from(["j1", "j2", "", "x" * 200]), ANY_TEXT)},
    "http_fetch": {
        "method": st.sampled_from(["GET", "post", "HEAD", "TRACE", "", "CONNECT"]),
        "url": st.one_of(
            st.sampled_from(
                [
                    "http://127.0.0.1:9/",
                    "https://127.0.0.1:9/x?y=1",
                    "http://a.example.com/",
                    "http://b.example.com/",
                    "http://c.example.com/",
                    "http://169.254.169.254/",
                    "http://[::ffff:127.0.0.1]/",
                    "ftp://127.0.0.1/",
                    "http://u:p@127.0.0.1/",
                    "http://127.0.0.1:99999/",
                    "http://127.0.0.1/\r\n",
                    "//127.0.0.1/",
                ]
            ),
            ANY_TEXT,
        ),
        "headers": st.dictionaries(
            st.sampled_from(["Accept", "Host", "X-A", "bad name", "Transfer-Encoding", "é"]),
            st.one_of(ANY_TEXT, st.sampled_from(["x", "a\r\nb"])),
            max_size=3,
        ),
        "body": ANY_TEXT,
        "body_base64": st.sampled_from(["", "AAEC", "***", "YQ="]),
        "timeout_ms": st.one_of(st.integers(-1, 3000), st.sampled_from([2**63, 0])),
    },
    "event_emit": {
        "topic": st.sampled_from(["note.created", "note.a.b", "auth.login", "other.x", "note.*", "Note.X", ""]),
        "payload": st.one_of(
            st.dictionaries(st.text(max_size=10), json_values(FINITE_SCALARS), max_size=4), json_values()
        ),
    },
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(host function name, request bytes): all of its fields plausible, some of them anything, or junk."""
    name = draw(st.sampled_from(sorted(FIELDS)))
    plausible = st.fixed_dictionaries(FIELDS[name])
    anything = {k: st.one_of(v, json_values(), ANY_TEXT) for k, v in FIELDS[name].items()}
    mixed = st.fixed_dictionaries({}, optional=anything)
    depth = st.integers(1, 20_000)
    junk = st.one_of(
        json_values().map(_dumps),
        st.binary(max_size=200),
        st.sampled_from([b"", b"NaN", b"-Infinity", b"1e999", b'{"a":1}x', b'"\\ud800"', b'{"\xff":1}', b"{" * 3]),
        depth.map(lambda n: b"[" * n + b"]" * n),
        depth.map(lambda n: b'{"ops":' + b"[" * n + b"]" * n + b"}"),
        st.integers(4290, 4400).map(lambda n: b'{"by":' + b"9" * n + b"}"),
    )
    return name, draw(st.one_of(plausible.map(_dumps), plausible.map(_dumps), mixed.map(_dumps), junk))


def _dumps(value: Any) -> bytes:
    """JSON text the way a careless guest writes it: NaN and Infinity spelled out, surrogates escaped."""
    return json.dumps(value).encode()


PRINCIPALS = st.one_of(
    st.none(),
    st.fixed_dictionaries({"sub": st.text(max_size=20), "roles": st.lists(st.sampled_from(["admin", "user", ""]))}),
)


@fuzz_settings(max_examples=400)
@given(request=requests(), principal=PRINCIPALS)
def test_host_functions_answer_any_request_with_a_json_object_never_internal(
    functions: dict[str, LinkedFunction], request: tuple[str, bytes], principal: dict[str, Any] | None
) -> None:
    name, data = request
    reply = functions[name].call(CallContext(PLUGIN, "1.0.0", "fuzz-request", principal), data)
    assert isinstance(reply, bytes)
    answer = json.loads(reply)
    assert isinstance(answer, dict), answer
    event(f"{name}: {answer['error']['message'][:50] if 'error' in answer else 'ok'}")
    if "error" in answer:
        error = answer["error"]
        assert set(error) - {"retry_after"} == {"code", "message"} and isinstance(error["message"], str), error
        assert error["code"] in set(ErrorCode) and error["code"] != ErrorCode.INTERNAL, (name, data[:300], error)
