"""The bookmarks plugin (Python), on the author test harness (docs/testing.md): CRUD per signed-in user,
admins see all, validation names the field, versions guard updates, the store holds the bookmarks.

The component is built from this folder (about 18 MB, so it is not committed), once per source
hash: the build is kept in ARCANA_TEST_CACHE (or .cache/test-plugins) keyed by the sha256 of the
plugin's sources and of the Python SDK it bundles, so CI and a second run skip componentize-py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from arcana.testing import HarnessFactory, PluginHarness

PLUGIN = Path(__file__).resolve().parent.parent
REPO = PLUGIN.parent.parent

pytestmark = pytest.mark.toolchain


def _sources_hash() -> str:
    digest = hashlib.sha256()
    sdk = REPO / "sdk"
    files = [
        PLUGIN / "app.py",
        PLUGIN / "plugin.toml",
        *sorted((sdk / "python").rglob("*.py")),
        sdk / "wit" / "arcana.wit",
    ]
    for path in files:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def bookmarks_wasm() -> Path:
    from arcana_sdk.build import build_plugin

    cache = Path(os.environ.get("ARCANA_TEST_CACHE", REPO / ".cache" / "test-plugins"))
    built = cache / f"bookmarks-py-{_sources_hash()}.wasm"
    if not built.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = built.with_name(f".{built.name}.{os.getpid()}.part")
        build_plugin(PLUGIN, partial)
        partial.replace(built)
    return built


@pytest.fixture
def bookmarks(arcana_plugin: HarnessFactory, bookmarks_wasm: Path) -> PluginHarness:
    return arcana_plugin(bookmarks_wasm)


def test_every_route_needs_a_signed_in_user(bookmarks: PluginHarness) -> None:
    for method, path in [
        ("GET", "/api/v1/bookmarks"),
        ("POST", "/api/v1/bookmarks"),
        ("DELETE", "/api/v1/bookmarks/b"),
    ]:
        r = bookmarks.request(method, path, json={"url": "https://a.example"} if method == "POST" else None)
        assert (r.status, r.error_code) == (401, "UNAUTHORIZED")


def test_create_then_read_update_and_delete(bookmarks: PluginHarness) -> None:
    bookmarks.login("ada", roles=["user"])
    made = bookmarks.post("/api/v1/bookmarks", json={"url": "https://arcana.example/docs", "tags": ["b", "a", "b"]})
    mark = made.json()
    assert made.status == 201 and made.headers["location"] == f"/api/v1/bookmarks/{mark['id']}"
    assert (mark["url"], mark["title"], mark["tags"], mark["owner"], mark["version"]) == (
        "https://arcana.example/docs",
        "https://arcana.example/docs",  # the title defaults to the url
        ["a", "b"],  # tags are a set, sorted
        "ada",
        1,
    )
    assert bookmarks.get(f"/api/v1/bookmarks/{mark['id']}").json() == mark
    updated = bookmarks.put(
        f"/api/v1/bookmarks/{mark['id']}", json={"url": mark["url"], "title": " Docs ", "version": 1}
    )
    assert updated.status == 200 and (updated.json()["title"], updated.json()["version"]) == ("Docs", 2)
    stale = bookmarks.put(f"/api/v1/bookmarks/{mark['id']}", json={"url": mark["url"], "version": 1})
    assert (stale.status, stale.error_code) == (409, "CONFLICT")
    assert bookmarks.delete(f"/api/v1/bookmarks/{mark['id']}?version=1").error_code == "CONFLICT"
    deleted = bookmarks.delete(f"/api/v1/bookmarks/{mark['id']}?version=2")
    assert (deleted.status, deleted.body) == (204, b"")
    assert bookmarks.get(f"/api/v1/bookmarks/{mark['id']}").error_code == "NOT_FOUND"


def test_a_bookmark_is_kept_in_the_store_under_its_owner_whatever_the_body_says(bookmarks: PluginHarness) -> None:
    r = bookmarks.post("/api/v1/bookmarks", json={"url": "http://kept.example", "title": "kept"}, as_user="ada")
    assert r.status == 201
    stored = bookmarks.store.get("bookmarks", r.json()["id"])
    assert stored is not None and (stored["title"], stored["owner"]) == ("kept", "ada")
    forged = bookmarks.post("/api/v1/bookmarks", json={"url": "http://x.example", "owner": "bob"}, as_user="ada")
    assert (forged.status, forged.error_code) == (400, "VALIDATION_FAILED")
    assert "unknown field 'owner'" in forged.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "no url"}, "url"),
        ({"url": "ftp://files.example"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://a.example/" + "x" * 2048}, "url"),
        ({"url": "https://a.example/a b"}, "url"),
        ({"url": "https://a.example", "title": ""}, "title"),
        ({"url": "https://a.example", "title": "t" * 201}, "title"),
        ({"url": "https://a.example", "tags": "a,b"}, "tags"),
        ({"url": "https://a.example", "tags": [str(i) for i in range(11)]}, "tags"),
        ({"url": "https://a.example", "tags": [""]}, "tag"),
        ({"url": "https://a.example", "tags": [" padded"]}, "tag"),
        ({"url": "https://a.example", "version": 1}, "version"),
    ],
)
def test_bad_input_is_refused_naming_the_field(bookmarks: PluginHarness, body: dict[str, object], field: str) -> None:
    r = bookmarks.post("/api/v1/bookmarks", json=body, as_user="ada")
    assert (r.status, r.error_code) == (400, "VALIDATION_FAILED")
    assert field in r.json()["message"]
    assert bookmarks.store.query("bookmarks") == []


def test_a_body_that_is_not_a_json_object_is_refused(bookmarks: PluginHarness) -> None:
    bookmarks.login("ada")
    assert bookmarks.post("/api/v1/bookmarks", json=["https://a.example"]).error_code == "VALIDATION_FAILED"
    no_json = bookmarks.request("POST", "/api/v1/bookmarks", body=b"url=x", headers={"content-type": "text/plain"})
    assert (no_json.status, no_json.error_code) == (400, "VALIDATION_FAILED")


def test_an_update_needs_the_current_version(bookmarks: PluginHarness) -> None:
    bookmarks.store.put("bookmarks", "b-ada", {"url": "https://a.example", "title": "a", "tags": [], "owner": "ada"})
    bookmarks.login("ada")
    for version in (None, 0, "1", True):
        body = {"url": "https://a.example"} | ({} if version is None else {"version": version})
        assert bookmarks.put("/api/v1/bookmarks/b-ada", json=body).error_code == "VALIDATION_FAILED"


def test_seeded_bookmarks_are_listed_for_their_owner_only_and_others_are_as_if_absent(bookmarks: PluginHarness) -> None:
    bookmarks.store.put("bookmarks", "b-ada", {"url": "https://a.example", "title": "a", "tags": ["x"], "owner": "ada"})
    bookmarks.store.put("bookmarks", "b-bob", {"url": "https://b.example", "title": "b", "tags": ["x"], "owner": "bob"})
    listed = bookmarks.get("/api/v1/bookmarks", as_user="ada").json()
    assert [b["id"] for b in listed["items"]] == ["b-ada"] and listed["total"] == 1
    assert bookmarks.get("/api/v1/bookmarks/b-bob", as_user="ada").error_code == "NOT_FOUND"
    assert bookmarks.delete("/api/v1/bookmarks/b-bob", as_user="ada").error_code == "NOT_FOUND"
    assert bookmarks.store.get("bookmarks", "b-bob") is not None


def test_an_admin_sees_and_edits_every_bookmark_and_the_owner_stays(bookmarks: PluginHarness) -> None:
    bookmarks.store.put("bookmarks", "b-bob", {"url": "https://b.example", "title": "b", "tags": [], "owner": "bob"})
    bookmarks.store.put("bookmarks", "b-eve", {"url": "https://e.example", "title": "e", "tags": [], "owner": "eve"})
    bookmarks.login("root", roles=["admin"])
    assert {b["id"] for b in bookmarks.get("/api/v1/bookmarks").json()["items"]} == {"b-bob", "b-eve"}
    edited = bookmarks.put("/api/v1/bookmarks/b-bob", json={"url": "https://b.example/v2", "version": 1}).json()
    assert (edited["url"], edited["owner"]) == ("https://b.example/v2", "bob")


def test_tag_filter_newest_first_and_pages(bookmarks: PluginHarness) -> None:
    bookmarks.login("ada")
    for n, tags in enumerate([["work"], ["work", "home"], ["home"]]):
        assert bookmarks.post("/api/v1/bookmarks", json={"url": f"https://{n}.example", "tags": tags}).status == 201
    work = bookmarks.get("/api/v1/bookmarks?tag=work").json()
    assert [b["url"] for b in work["items"]] == ["https://1.example", "https://0.example"]
    second = bookmarks.get("/api/v1/bookmarks?size=2&page=2").json()
    assert ([b["url"] for b in second["items"]], second["total"], second["page"]) == (["https://0.example"], 3, 2)
    for query in ("size=0", "size=101", "page=x", "page=-1"):
        assert bookmarks.get(f"/api/v1/bookmarks?{query}").error_code == "VALIDATION_FAILED", query


def test_changes_are_logged_with_the_bookmarks_id(bookmarks: PluginHarness) -> None:
    made = bookmarks.post("/api/v1/bookmarks", json={"url": "https://log.example"}, as_user="ada").json()
    assert bookmarks.delete(f"/api/v1/bookmarks/{made['id']}", as_user="ada").status == 204
    lines = [(r.message, r.fields.get("id")) for r in bookmarks.logs]
    assert ("bookmark created", made["id"]) in lines and ("bookmark deleted", made["id"]) in lines


def test_an_unknown_method_on_a_bookmark_is_not_allowed(bookmarks: PluginHarness) -> None:
    r = bookmarks.request("PATCH", "/api/v1/bookmarks/b1", json={}, as_user="ada")
    assert r.status == 405
