"""bookmarks: a user's bookmarks in the store, written in Python on the arcana_plugin SDK.

    GET    /api/v1/bookmarks            list (?tag=, ?page=, ?size=; newest first)
    POST   /api/v1/bookmarks            {"url", "title"?, "tags"?} -> 201 + location
    GET    /api/v1/bookmarks/{id}
    PUT    /api/v1/bookmarks/{id}       {"url", "title"?, "tags"?, "version"} (the version read last)
    DELETE /api/v1/bookmarks/{id}       ?version= optional -> 204

A bookmark belongs to the user who created it (``owner``, set by the plugin from the verified
principal, never from the body); someone else's bookmark answers 404 as if absent, and a user
with role ``admin`` sees and changes all. Bad input is 400 VALIDATION_FAILED naming the field; a
stale version is 409 CONFLICT (the store checks it, so read-then-write races are safe).
"""

from __future__ import annotations

from typing import Any

from arcana_plugin import Code, Fail, HttpRequest, Plugin, Principal, created, log, no_content, store

app = Plugin()

COLLECTION = "bookmarks"
FIELDS = frozenset({"url", "title", "tags"})
MAX_URL = 2048
MAX_TITLE = 200
MAX_TAGS = 10
MAX_TAG = 32
MAX_PAGE_SIZE = 100


# ---------------------------------------------------------------- validation


def _caller(req: HttpRequest) -> Principal:
    # Every route needs a token (no `public` in plugin.toml): the kernel refuses anonymous calls first.
    if req.principal is None:
        raise Fail(Code.UNAUTHORIZED, "sign in to use bookmarks")
    return req.principal


def _bookmark(body: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a request body, checked: VALIDATION_FAILED names the first bad field."""
    unknown = sorted(set(body) - FIELDS - {"version"})
    if unknown:
        raise Fail(Code.VALIDATION_FAILED, f"unknown field {unknown[0]!r}; a bookmark has url, title and tags")
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise Fail(Code.VALIDATION_FAILED, "url must be an http:// or https:// address")
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        raise Fail(Code.VALIDATION_FAILED, f"url must be at most {MAX_URL} characters, without spaces")
    title = body.get("title", url)
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise Fail(Code.VALIDATION_FAILED, f"title must be a non-empty string of at most {MAX_TITLE} characters")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise Fail(Code.VALIDATION_FAILED, f"tags must be a list of at most {MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG or tag != tag.strip():
            raise Fail(
                Code.VALIDATION_FAILED, f"each tag must be a string of 1 to {MAX_TAG} characters, no edge spaces"
            )
    return {"url": url, "title": title.strip(), "tags": sorted(set(tags))}


def _positive(req: HttpRequest, name: str, default: int, most: int | None = None) -> int:
    raw = req.query_first(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1 or (most is not None and int(raw) > most):
        limit = f" up to {most}" if most is not None else ""
        raise Fail(Code.VALIDATION_FAILED, f"{name} must be a positive integer{limit}")
    return int(raw)


def _visible(doc: dict[str, Any], caller: Principal) -> bool:
    return caller.has_role("admin") or doc.get("owner") == caller.sub


def _load(req: HttpRequest, caller: Principal) -> dict[str, Any]:
    """The bookmark ``{id}`` if the caller may see it; someone else's is NOT_FOUND, as if absent."""
    bookmark_id = req.param("id")
    found = store.get(COLLECTION, bookmark_id)
    if found.error is not None and found.error.code != Code.NOT_FOUND:
        found.error.fail()  # the store is down, or the id is malformed: the client gets that code
    doc = found.value
    if doc is None or not _visible(doc, caller):
        raise Fail(Code.NOT_FOUND, f"no bookmark {bookmark_id}")
    return doc


# ---------------------------------------------------------------- routes


@app.route("GET", "/api/v1/bookmarks")
def list_bookmarks(req: HttpRequest) -> dict[str, Any]:
    caller = _caller(req)
    conditions: dict[str, Any] = {} if caller.has_role("admin") else {"owner": caller.sub}
    tag = req.query_first("tag")
    if tag is not None:
        conditions["tags"] = {"$contains": tag}
    page = store.query(
        COLLECTION,
        filter=conditions or None,
        sort="created_at",
        order="desc",
        page=_positive(req, "page", 1),
        size=_positive(req, "size", 20, MAX_PAGE_SIZE),
    ).unwrap()
    return {key: page[key] for key in ("items", "total", "page", "size")}


@app.route("POST", "/api/v1/bookmarks")
def create_bookmark(req: HttpRequest) -> Any:
    caller = _caller(req)
    body = req.json_object()
    if "version" in body:
        raise Fail(Code.VALIDATION_FAILED, "a new bookmark has no version")
    doc = store.put(COLLECTION, {**_bookmark(body), "owner": caller.sub}).unwrap()
    log.info("bookmark created", id=doc["id"])
    return created(doc, location=f"/api/v1/bookmarks/{doc['id']}")


@app.route("GET", "/api/v1/bookmarks/{id}")
def get_bookmark(req: HttpRequest) -> dict[str, Any]:
    return _load(req, _caller(req))


@app.route("PUT", "/api/v1/bookmarks/{id}")
def update_bookmark(req: HttpRequest) -> dict[str, Any]:
    caller = _caller(req)
    body = req.json_object()
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Fail(Code.VALIDATION_FAILED, "version must be the bookmark's current version (a positive integer)")
    fields = _bookmark(body)
    current = _load(req, caller)
    # The owner never changes, even when an admin edits; the version check makes read-then-write safe.
    saved = store.put(COLLECTION, {**fields, "owner": current["owner"]}, id=current["id"], expected_version=version)
    return saved.unwrap()


@app.route("DELETE", "/api/v1/bookmarks/{id}")
def delete_bookmark(req: HttpRequest) -> Any:
    caller = _caller(req)
    version = _positive(req, "version", 0) if req.query_first("version") is not None else None
    current = _load(req, caller)
    store.delete(COLLECTION, current["id"], expected_version=version).unwrap()
    log.info("bookmark deleted", id=current["id"])
    return no_content()
