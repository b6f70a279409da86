"""``http_fetch`` requests, checked field by field before anything is resolved or sent.

    {"method": "GET", "url": "https://api.example.com/v1/x?q=1",
     "headers": {"accept": "application/json"}, "body": "...", "timeout_ms": 5000}

``method`` is GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS;
``body`` is text (sent as UTF-8) or ``body_base64`` bytes, not both. The
kernel owns the framing headers: a request that sets Host, Content-Length,
Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Expect or
Proxy-Connection is refused (VALIDATION_FAILED), since letting a plugin set
them would let it smuggle a second request or reach another virtual host;
so is Accept-Encoding: the kernel asks for ``identity`` and never
decompresses, so the response bound is the bytes on the wire.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from arcana.errors import PayloadTooLarge, ValidationFailed
from arcana.types import JsonObject
from arcana_host.http.config import HttpConfig
from arcana_host.http.hosts import normalize_host
from arcana_host.queue.requests import refuse_unknown

FETCH_FIELDS = frozenset({"method", "url", "headers", "body", "body_base64", "timeout_ms"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Safe to send twice: a retry of these cannot do a thing twice that once would not.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KERNEL_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-connection",
        "accept-encoding",
    }
)
MAX_URL_CHARS = 8192
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class Url:
    """An absolute http(s) URL, split as a fetch needs it."""

    text: str
    scheme: str
    host: str  # normalized (hosts.normalize_host)
    port: int
    target: str  # path and query, as sent on the request line

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    method: str
    url: Url
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout_ms: int


def parse_url(text: Any) -> Url:
    """VALIDATION_FAILED unless ``text`` is an absolute http or https URL with a host and no credentials."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_URL_CHARS:
        raise ValidationFailed(f"'url' must be an absolute http(s) URL of at most {MAX_URL_CHARS} characters")
    shown = text[:200]
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationFailed(f"'url' {shown!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed(f"'url' {shown!r}: only http and https URLs can be fetched")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed(f"'url' {shown!r} holds credentials; send them in a header (e.g. authorization)")
    host = normalize_host(parts.hostname or "")
    if host is None:
        raise ValidationFailed(
            f"'url' {shown!r} has no valid host (a DNS name in ASCII, xn-- for international names, or an address)"
        )
    target = _target(parts)
    if _BAD_TARGET.search(target):
        raise ValidationFailed(f"'url' {shown!r} has spaces or control characters; percent-encode them")
    default = 443 if parts.scheme == "https" else 80
    return Url(text, parts.scheme, host, port if port is not None else default, target)


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _headers(value: Any, config: HttpConfig) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValidationFailed("'headers' must be an object of header names to string values")
    size = sum(len(k.encode()) + len(v.encode()) if isinstance(v, str) else 0 for k, v in value.items())
    if size > config.max_header_bytes:
        raise PayloadTooLarge(
            f"the request headers are {size} bytes; the limit is {config.max_header_bytes} "
            "(capabilities.http.max_header_bytes)"
        )
    headers = []
    for name, text in value.items():
        if not _TOKEN.match(name):
            raise ValidationFailed(f"header name {name[:60]!r} is not a valid HTTP header name")
        if not isinstance(text, str) or _BAD_VALUE.search(text):
            raise ValidationFailed(f"header {name[:60]!r} must be a string without CR, LF or NUL")
        if name.lower() in KERNEL_HEADERS:
            raise ValidationFailed(
                f"header {name[:60]!r} is set by the kernel, not the plugin "
                f"(refused: {', '.join(sorted(KERNEL_HEADERS))})"
            )
        headers.append((name, text))
    return tuple(headers)


def _body(req: JsonObject, config: HttpConfig) -> bytes | None:
    text, encoded = req.get("body"), req.get("body_base64")
    if text is not None and encoded is not None:
        raise ValidationFailed("give 'body' or 'body_base64', not both")
    if text is not None and not isinstance(text, str):
        raise ValidationFailed("'body' must be a string (sent as UTF-8); use 'body_base64' for bytes")
    if encoded is not None and not isinstance(encoded, str):
        raise ValidationFailed("'body_base64' must be a base64 string")
    if text is None and encoded is None:
        return None
    # Each base64 character is at most one byte of the body: refuse a huge one before decoding it.
    if len(text or encoded or "") > 4 * config.max_request_bytes:
        raise _too_large(len(text or encoded or ""), config)
    try:
        body = text.encode() if text is not None else base64.b64decode(encoded or "", validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValidationFailed(f"the request body cannot be encoded: {exc}") from None
    if len(body) > config.max_request_bytes:
        raise _too_large(len(body), config)
    return body


def _too_large(size: int, config: HttpConfig) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is {size} bytes; the limit is {config.max_request_bytes} "
        "(capabilities.http.max_request_bytes)"
    )


def _timeout(value: Any, config: HttpConfig) -> int:
    if value is None:
        return config.default_timeout_ms
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= config.max_timeout_ms:
        raise ValidationFailed(
            f"'timeout_ms' must be an integer of 1-{config.max_timeout_ms} (capabilities.http.max_timeout_ms)"
        )
    return value


def fetch(req: JsonObject, config: HttpConfig) -> FetchRequest:
    refuse_unknown("http_fetch", req, FETCH_FIELDS)
    method = req.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValidationFailed(f"'method' must be one of {', '.join(sorted(METHODS))}")
    return FetchRequest(
        method=method.upper(),
        url=parse_url(req.get("url")),
        headers=_headers(req.get("headers"), config),
        body=_body(req, config),
        timeout_ms=_timeout(req.get("timeout_ms"), config),
    )
