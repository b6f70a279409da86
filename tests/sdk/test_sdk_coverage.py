"""Every host function of the kernel has a typed binding in each guest SDK (Zig, AssemblyScript, C).

``BINDINGS`` declares, per SDK, the binding of each function of
``arcana_host.catalog.CATALOG``: the source file and the qualified name of
the function that calls it. The tests check the declaration against the
catalogue (a host function added to the kernel without a binding in every SDK
fails here), then read each SDK's sources: the binding exists, its body calls
that host function, and it hands errors back as values (``Result`` in Zig and
AssemblyScript, the reply buffer and its length in C). ``log`` is the one
binding with no result: logging never fails a handler. The bindings running
against the real host: tests/e2e/test_c_bindings.py (C),
tests/e2e/test_store_sdks.py, tests/e2e/test_auth.py,
tests/e2e/test_sdk_routers.py, tests/sdk/test_queue_events_sdk.py and
tests/e2e/test_http_fetch.py (all three).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arcana_host.catalog import CATALOG

SDK = Path(__file__).resolve().parents[2] / "sdk"

# SDK -> host function -> (file under sdk/, qualified name of its typed binding).
BINDINGS: dict[str, dict[str, tuple[str, str]]] = {
    "zig": {
        "log": ("zig/arcana.zig", "logFields"),
        "auth_hash_password": ("zig/auth.zig", "hashPassword"),
        "auth_verify_password": ("zig/auth.zig", "verifyPassword"),
        "auth_check_role": ("zig/auth.zig", "checkRole"),
        "auth_issue_token": ("zig/auth.zig", "issueToken"),
        "store_get": ("zig/store.zig", "get"),
        "store_put": ("zig/store.zig", "put"),
        "store_delete": ("zig/store.zig", "delete"),
        "store_query": ("zig/store.zig", "query"),
        "store_batch": ("zig/store.zig", "batch"),
        "kv_get": ("zig/store.zig", "kv.get"),
        "kv_set": ("zig/store.zig", "kv.set"),
        "kv_delete": ("zig/store.zig", "kv.delete"),
        "kv_incr": ("zig/store.zig", "kv.incr"),
        "queue_enqueue": ("zig/queue.zig", "enqueue"),
        "queue_status": ("zig/queue.zig", "status"),
        "event_emit": ("zig/events.zig", "emit"),
        "http_fetch": ("zig/http.zig", "fetch"),
    },
    "assemblyscript": {
        "log": ("assemblyscript/assembly/index.ts", "log"),
        "auth_hash_password": ("assemblyscript/assembly/auth.ts", "auth.hashPassword"),
        "auth_verify_password": ("assemblyscript/assembly/auth.ts", "auth.verifyPassword"),
        "auth_check_role": ("assemblyscript/assembly/auth.ts", "auth.checkRole"),
        "auth_issue_token": ("assemblyscript/assembly/auth.ts", "auth.issueToken"),
        "store_get": ("assemblyscript/assembly/store.ts", "store.get"),
        "store_put": ("assemblyscript/assembly/store.ts", "store.put"),
        "store_delete": ("assemblyscript/assembly/store.ts", "store.remove"),
        "store_query": ("assemblyscript/assembly/store.ts", "store.query"),
        "store_batch": ("assemblyscript/assembly/store.ts", "store.batch"),
        "kv_get": ("assemblyscript/assembly/store.ts", "kv.get"),
        "kv_set": ("assemblyscript/assembly/store.ts", "kv.set"),
        "kv_delete": ("assemblyscript/assembly/store.ts", "kv.remove"),
        "kv_incr": ("assemblyscript/assembly/store.ts", "kv.incr"),
        "queue_enqueue": ("assemblyscript/assembly/queue.ts", "queue.enqueue"),
        "queue_status": ("assemblyscript/assembly/queue.ts", "queue.status"),
        "event_emit": ("assemblyscript/assembly/events.ts", "events.emit"),
        "http_fetch": ("assemblyscript/assembly/http.ts", "http.fetch"),
    },
    "c": {
        "log": ("c/arcana.h", "arcana_log_fields"),
        "auth_hash_password": ("c/arcana.h", "arcana_auth_hash_password"),
        "auth_verify_password": ("c/arcana.h", "arcana_auth_verify_password"),
        "auth_check_role": ("c/arcana.h", "arcana_auth_check_role"),
        "auth_issue_token": ("c/arcana.h", "arcana_auth_issue_token"),
        "store_get": ("c/arcana.h", "arcana_store_get"),
        "store_put": ("c/arcana.h", "arcana_store_put"),
        "store_delete": ("c/arcana.h", "arcana_store_delete"),
        "store_query": ("c/arcana.h", "arcana_store_query"),
        "store_batch": ("c/arcana.h", "arcana_store_batch"),
        "kv_get": ("c/arcana.h", "arcana_kv_get"),
        "kv_set": ("c/arcana.h", "arcana_kv_set"),
        "kv_delete": ("c/arcana.h", "arcana_kv_delete"),
        "kv_incr": ("c/arcana.h", "arcana_kv_incr"),
        "queue_enqueue": ("c/arcana.h", "arcana_queue_enqueue"),
        "queue_status": ("c/arcana.h", "arcana_queue_status"),
        "event_emit": ("c/arcana.h", "arcana_event_emit"),
        "http_fetch": ("c/arcana.h", "arcana_http_fetch"),
    },
}

# How each SDK's source names a call of host function `fn` inside a binding's body.
CALLS = {
    "zig": lambda fn: rf'\bhost(?:Request|CallValue|Call)\(\s*\w+\s*,\s*"{fn}"',
    "assemblyscript": lambda fn: rf"\bhost_{fn}\b",
    "c": lambda fn: rf"\barcana_host_{fn}\b",
}
# What a binding returning its error as a value looks like in its signature (everything before its body).
RESULTS = {
    "zig": r"\)\s*Result\(",
    "assemblyscript": r"\)\s*:\s*Result<",
    "c": r"^static inline uint64_t arcana_\w+\(.*\bchar \*reply, uint64_t cap\)$",
}
# Where a container (Zig struct, AssemblyScript namespace) and a function start, by name.
CONTAINERS = {"zig": r"pub const {name} = struct \{{", "assemblyscript": r"export namespace {name} \{{"}
FUNCTIONS = {
    "zig": r"pub fn {name}\(",
    "assemblyscript": r"export function {name}\(",
    "c": r"static inline \w+ {name}\(",
}


def _skip_literal(text: str, at: int) -> int:
    """The index past the string, character literal or comment starting at ``at`` (``at`` + 1 when none)."""
    if text.startswith("//", at):
        end = text.find("\n", at)
        return len(text) if end < 0 else end
    if text.startswith("/*", at):
        return text.index("*/", at) + 2
    quote = text[at]
    if quote not in "\"'`":
        return at + 1
    at += 1
    while text[at] != quote:
        at += 2 if text[at] == "\\" else 1
    return at + 1


def _block(text: str, open_at: int) -> str:
    """The text between the brace at ``open_at`` and its match, skipping braces in literals and comments."""
    depth, at = 0, open_at
    while at < len(text):
        char = text[at]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : at]
        at = _skip_literal(text, at)
    raise AssertionError("unbalanced braces")


def binding(sdk: str, file: str, qualified: str) -> tuple[str, str] | None:
    """(signature, body) of binding ``qualified`` (``container.name`` or ``name``) in ``file``; None when absent."""
    text = (SDK / file).read_text()
    *containers, name = qualified.split(".")
    for container in containers:
        found = re.search(CONTAINERS[sdk].format(name=re.escape(container)), text)
        if found is None:
            return None
        text = _block(text, found.end() - 1)
    found = re.search(FUNCTIONS[sdk].format(name=re.escape(name)), text)
    if found is None:
        return None
    open_at = found.end()
    while text[open_at] != "{":  # past the parameters (a default may be "{}") and the result type
        open_at = _skip_literal(text, open_at)
    line_start = text.rfind("\n", 0, found.start()) + 1
    signature = " ".join(text[line_start:open_at].split())
    return signature, _block(text, open_at)


@pytest.mark.parametrize("sdk", BINDINGS)
def test_each_sdk_declares_a_binding_for_every_host_function_of_the_kernel(sdk: str) -> None:
    assert sorted(BINDINGS[sdk]) == sorted(CATALOG), "add the new host function's binding to this SDK and here"


@pytest.mark.parametrize("sdk", BINDINGS)
def test_each_declared_binding_exists_and_calls_its_host_function(sdk: str) -> None:
    wrong = []
    for fn, (file, name) in BINDINGS[sdk].items():
        found = binding(sdk, file, name)
        if found is None:
            wrong.append(f"{fn}: no {name} in sdk/{file}")
        elif not re.search(CALLS[sdk](fn), found[1]):
            wrong.append(f"{fn}: {name} in sdk/{file} does not call it")
    assert wrong == []


@pytest.mark.parametrize("sdk", BINDINGS)
def test_each_binding_but_log_returns_the_hosts_errors_as_values(sdk: str) -> None:
    signatures = {fn: binding(sdk, file, name) for fn, (file, name) in BINDINGS[sdk].items() if fn != "log"}
    assert [fn for fn, found in signatures.items() if found is None or not re.search(RESULTS[sdk], found[0])] == []


@pytest.mark.parametrize("sdk", BINDINGS)
def test_log_ignores_its_reply_in_each_sdk(sdk: str) -> None:
    file, name = BINDINGS[sdk]["log"]
    found = binding(sdk, file, name)
    assert found is not None
    assert re.search(r"\bvoid\b", found[0]), found[0]


def test_the_reader_finds_a_binding_inside_its_container_only() -> None:
    # kv.get and store.get are two bindings of one file: each is found in its own container.
    kv_get, store_get = binding("zig", "zig/store.zig", "kv.get"), binding("zig", "zig/store.zig", "get")
    assert kv_get is not None and store_get is not None
    assert '"kv_get"' in kv_get[1] and '"store_get"' in store_get[1]
    assert binding("assemblyscript", "assemblyscript/assembly/store.ts", "kv.batch") is None
    assert binding("c", "c/arcana.h", "arcana_kv_get_all") is None
