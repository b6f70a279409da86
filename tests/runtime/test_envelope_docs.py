"""docs/envelopes.md cannot drift: each documented shape against the one the kernel's own functions build or accept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from arcana.envelopes import (
    HttpRequest,
    grpc_envelope,
    http_envelope,
    parse_grpc_output,
    parse_http_output,
    plugin_error,
)
from arcana.errors import ArcanaError, ErrorCode, PluginFailed
from arcana.events import EventBus
from arcana.manifest import parse_manifest
from arcana.queue import dispatch
from arcana.queue.types import Job, JobState, Priority

DOC = Path(__file__).resolve().parents[2] / "docs" / "envelopes.md"
TEXT = DOC.read_text()


def examples() -> dict[str, Any]:
    """``### heading`` -> the JSON example under it."""
    parts = re.split(r"^### (.+)$", TEXT, flags=re.M)
    found = {}
    for i in range(1, len(parts), 2):
        block = re.search(r"^```json\n(.*?)^```", parts[i + 1], flags=re.M | re.S)
        if block is not None:
            found[parts[i].split(" (")[0].strip()] = json.loads(block[1])
    return found


DOCUMENTED = examples()


def test_every_shape_has_an_example() -> None:
    assert set(DOCUMENTED) == {
        "http",
        "grpc",
        "job",
        "event",
        "http response",
        "grpc reply",
        "job result",
        "error",
    }


def _job(target: str = "", payload: Any = None) -> Job:
    return Job("j-1", "notes.reindex", payload, Priority.NORMAL, JobState.RUNNING, 1, 3, 0.0, 0.0, 0.0, target=target)


def test_the_http_envelope() -> None:
    doc = DOCUMENTED["http"]
    req = HttpRequest(
        doc["method"], doc["path"], doc["query"], doc["headers"], json.dumps(doc["body"]).encode(), "rid", "tp"
    )
    built = json.loads(http_envelope(req, doc["route"], doc["params"], doc["principal"]))
    assert set(built) == set(doc)
    assert {k: v for k, v in built.items() if k not in ("request_id", "traceparent")} == {
        k: v for k, v in doc.items() if k not in ("request_id", "traceparent")
    }
    binary = json.loads(http_envelope(HttpRequest("POST", "/x", {}, {}, b"\x00", "rid"), "/x", {}))
    assert set(binary) == set(doc) - {"body"} | {"body_base64"}  # the documented alternative


def test_the_grpc_envelope() -> None:
    doc = DOCUMENTED["grpc"]
    built = json.loads(grpc_envelope(doc["method"], doc["message"], doc["metadata"], "rid", "", doc["principal"]))
    assert set(built) == set(doc)


def test_the_job_envelope() -> None:
    doc = DOCUMENTED["job"]
    built = json.loads(dispatch.envelope(_job(payload={"all": True}), "job", "j-1.1"))
    assert set(built) == set(doc)
    assert set(built["job"]) == set(doc["job"])
    assert built["job"]["priority"] == doc["job"]["priority"]


def test_the_event_envelope() -> None:
    doc = DOCUMENTED["event"]
    bus, heard = EventBus(), []
    bus.subscribe(heard.append)
    bus.emit("note.created", {"id": "n1"}, source="notes", principal="u-1")
    built = json.loads(dispatch.envelope(_job("audit-log/on_event", heard[0]), "event", "j-2.1"))
    assert set(built) == set(doc)
    assert set(built["event"]) == set(doc["event"])


def test_the_http_response_is_accepted_with_each_documented_field() -> None:
    doc = DOCUMENTED["http response"]
    response = parse_http_output("p", json.dumps(doc).encode())
    assert response.status == doc["status"]
    assert json.loads(response.body) == doc["body"]
    table = re.findall(r"^\| `([a-z_0-9]+)` \|", TEXT.split("### http response", 1)[1].split("###", 1)[0], re.M)
    assert set(table) == {"status", "headers", "body", "body_base64"}
    assert parse_http_output("p", b'{"body_base64": "AA=="}').body == b"\x00"
    with pytest.raises(PluginFailed):  # "Any other field makes the answer malformed."
        parse_http_output("p", b'{"status": 200, "extra": 1}')


def test_the_grpc_reply() -> None:
    doc = DOCUMENTED["grpc reply"]
    assert parse_grpc_output("p", json.dumps(doc).encode()) == doc["message"]


def test_the_job_result() -> None:
    doc = DOCUMENTED["job result"]
    assert dispatch.parse_output("p", "job", json.dumps(doc).encode(), 1 << 20) == doc["result"]
    assert dispatch.parse_output("p", "event", b"{}", 1 << 20) is None


def test_the_error() -> None:
    doc = DOCUMENTED["error"]
    with pytest.raises(ArcanaError) as raised:
        parse_http_output("p", json.dumps(doc).encode())
    assert raised.value.code == ErrorCode(doc["error"]["code"])
    assert raised.value.message == doc["error"]["message"]
    assert plugin_error("p", {"code": "NOT_FOUND"}).message == "NOT_FOUND"  # "default: the code"


def test_the_raw_example_is_a_valid_manifest_with_a_raw_route() -> None:
    (example,) = re.findall(r"^```toml\n(.*?)^```", TEXT, flags=re.M | re.S)
    route = parse_manifest(example).routes[0]
    assert route.abi == "raw"
