"""The ``http`` capability: ``http_fetch`` to the hosts a plugin's manifest lists, and nowhere else.

    http_fetch {method?, url, headers?, body? | body_base64?, timeout_ms?}
            -> {status, headers, body | body_base64, truncated, url}

    [capabilities]
    http = ["api.example.com", "*.example.com"]     # grant: http

Each fetch, and each redirect it follows, must go to a granted host
(``hosts``: FORBIDDEN otherwise), whose every resolved address passes the
SSRF rule (``addresses``: FORBIDDEN naming the address and why) unless the
manifest names that host exactly. The kernel connects to the address it
checked. Redirects (301, 302, 303, 307, 308) are followed up to
``capabilities.http.max_redirects``; past it the 3xx itself is the answer.
The answer's headers are lowercase names, repeated ones joined with ", ";
the body is text when it is UTF-8, else ``body_base64``; a body longer than
``max_response_bytes`` is cut there with ``truncated: true``.

Time: ``timeout_ms`` (default ``default_timeout_ms``, at most
``max_timeout_ms``) bounds the whole fetch, retries and redirects included,
and never runs past the plugin call's deadline; running out is
PLUGIN_TIMEOUT (504 / DEADLINE_EXCEEDED, the gateway-timeout of the error
model: the upstream did not answer in time). A host that cannot be reached
or resolved, or that answers with garbage, is SERVICE_UNAVAILABLE.

Resilience: GET, HEAD, OPTIONS, PUT and DELETE are retried under
``resilience.retry`` when the connection failed or dropped before an answer
and on 502, 503 and 504 (the last answer is returned when retries run out);
POST and PATCH never are. Every host has a circuit breaker
(``resilience.http_breaker``): connection failures, timeouts (of attempts
given at least ``BREAKER_MIN_WAIT_S``) and 5xx count against it, any other
answer for it; while it is open a fetch is
SERVICE_UNAVAILABLE with ``retry_after`` at once, without connecting.
"""

from __future__ import annotations

import base64
import logging
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urljoin

from arcana.config import ArcanaConfig
from arcana.errors import (
    ArcanaError,
    ErrorCode,
    Forbidden,
    PayloadTooLarge,
    PluginTimeout,
    ServiceUnavailable,
    ValidationFailed,
)
from arcana.resilience import BreakerBoard, CircuitBreaker, retry_call
from arcana.resilience.service import Resilience
from arcana.types import CallContext, CapabilityRefused, HostFunction, JsonObject, PluginSpec
from arcana_host.http import client, hosts
from arcana_host.http import requests as parse
from arcana_host.http.addresses import Resolver, blocked, resolve
from arcana_host.http.config import HttpConfig
from arcana_host.http.requests import IDEMPOTENT, FetchRequest, Url

logger = logging.getLogger("arcana.host.http")
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({502, 503, 504})
# Headers that carry the caller's credentials: not sent on to another origin by a redirect.
CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
# DNS lookups run here so that one that hangs cannot hold a call past its deadline.
DNS_THREADS = 8
# A timeout counts against the host's breaker only when the attempt had at least this long.
BREAKER_MIN_WAIT_S = 1.0
NOT_LISTED = "it matches none of its capabilities.http hosts"
# Methods that change nothing: any other one may have changed something remote once it was sent.
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Scope:
    grant: hosts.HostGrant
    call: CallContext
    fetches: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one hop sends."""

    url: Url
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


class _RetryableStatus(Exception):
    """A 502/503/504 to an idempotent request: retried by ``retry_call``, returned when retries run out."""

    def __init__(self, response: client.Response) -> None:
        super().__init__(f"status {response.status}")
        self.response = response


class HttpCapability:
    name = "http"

    def __init__(
        self,
        config: ArcanaConfig,
        breakers: BreakerBoard | None = None,
        *,
        resolver: Resolver = resolve,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config.section("http", HttpConfig)
        self.retry = config.resilience.retry.policy()
        # The per-host breakers: the kernel's board (shared with its metrics), or one of its own.
        self.breakers = breakers if breakers is not None else Resilience.from_config(config.resilience).http
        self._resolver = resolver
        self._tls = tls
        self._limits = client.Limits(self.config.max_response_bytes, self.config.max_header_bytes)
        self._dns = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="arcana-dns")

    @classmethod
    def from_config(cls, config: ArcanaConfig, breakers: BreakerBoard | None) -> HttpCapability:
        return cls(config, breakers)

    @cached_property
    def tls(self) -> ssl.SSLContext:
        """The system's trust store, loaded on the first https fetch (construction does no I/O)."""
        return self._tls or ssl.create_default_context()

    def configure(self, plugin: PluginSpec) -> hosts.HostGrant:
        patterns = plugin.manifest.capabilities.get("http")
        problems = hosts.problems(patterns)
        if problems:
            raise CapabilityRefused(problems)
        assert isinstance(patterns, tuple)  # problems() refused anything else
        return hosts.compile_grant(plugin.name, patterns)

    def prepare(self, grant: hosts.HostGrant, call: CallContext) -> Scope:
        return Scope(grant, call)

    def close(self) -> None:
        self._dns.shutdown(wait=False, cancel_futures=True)

    def http_fetch(self, scope: Scope, req: JsonObject) -> JsonObject:
        request = parse.fetch(req, self.config)
        self._spend(scope)
        deadline = client.deadline_of(request.timeout_ms, scope.call.deadline)
        try:
            return self._follow(scope, request, deadline)
        except client.TimedOut:
            bound = "the plugin call's deadline" if deadline.by_call else f"timeout_ms {request.timeout_ms}"
            raise PluginTimeout(f"http_fetch of {request.url.host} did not finish in time ({bound})") from None

    def _spend(self, scope: Scope) -> None:
        limit = self.config.max_fetches_per_call
        if scope.fetches >= limit:
            raise ArcanaError(
                f"http_fetch refused: one plugin call may fetch at most {limit} times "
                "(capabilities.http.max_fetches_per_call); enqueue a job that does the rest",
                code=ErrorCode.RATE_LIMITED,
            )
        scope.fetches += 1

    def _follow(self, scope: Scope, request: FetchRequest, deadline: client.Deadline) -> JsonObject:
        grant = scope.grant
        hop = Attempt(request.url, request.method, request.headers, request.body)
        via: Url | None = None
        for redirects in range(self.config.max_redirects + 1):
            addresses = self._vet(grant, hop.url, deadline, via)
            if hop.method not in SAFE:
                scope.call.may_have_saved = True  # a POST may have done its work remotely even if no answer comes
            response = self._send(hop, addresses, deadline)
            location = response.header("location") if response.status in REDIRECTS else None
            target = _redirect_target(hop.url, location)
            if target is None or redirects == self.config.max_redirects:
                return _reply(response, hop.url)
            via, hop = hop.url, _redirected(hop, response.status, target)
        raise AssertionError("unreachable: the loop returns on its last hop")

    def _vet(self, grant: hosts.HostGrant, url: Url, deadline: client.Deadline, via: Url | None) -> list[str]:
        """The addresses to connect to for ``url``, once the grant, the breaker and the SSRF rule allow it."""
        prefix = f"redirect from {via.host} to {url.host} refused: " if via is not None else ""
        literal = hosts.canonical_address(url.host)
        if not grant.allows(url.host):
            raise _not_granted(prefix, grant, url.host, literal, followed=via is not None)
        _refuse_while_open(self._breaker(url.host))
        addresses = [literal] if literal is not None else self._resolve(url, deadline)
        if grant.names_exactly(url.host):
            return addresses
        for address in addresses:
            reason = blocked(address)
            if reason is not None:
                logger.warning("http_fetch refused for plugin %s: %s resolves to %s", grant.plugin, url.host, reason)
                raise Forbidden(
                    f"{prefix}{url.host} resolves to a refused address: {reason}; only an exact "
                    f"capabilities.http entry '{url.host}' allows that, never a wildcard"
                )
        return addresses

    def _resolve(self, url: Url, deadline: client.Deadline) -> list[str]:
        future = self._dns.submit(self._resolver, url.host, url.port)
        try:
            found = list(future.result(timeout=deadline.left()))
        except FutureTimeout:
            future.cancel()
            raise client.TimedOut("resolving") from None
        except OSError as exc:
            raise ServiceUnavailable(f"host {url.host} does not resolve: {exc.strerror or exc}") from None
        if not found:
            raise ServiceUnavailable(f"host {url.host} does not resolve to any address")
        return found

    def _breaker(self, host: str) -> CircuitBreaker:
        return self.breakers.get(host, what=f"host {host}")

    def _send(self, hop: Attempt, addresses: Sequence[str], deadline: client.Deadline) -> client.Response:
        """One hop through the host's breaker, retried when safe; exchange failures become public errors."""
        breaker, host = self._breaker(hop.url.host), hop.url.host
        idempotent = hop.method in IDEMPOTENT

        def attempt() -> client.Response:
            permit = breaker.admit()
            given = deadline.at - time.monotonic()
            try:
                response = client.exchange(
                    hop.url, addresses, hop.method, hop.headers, hop.body, deadline.at, self._limits, self.tls
                )
            except client.HeadersTooLarge:
                permit.success()  # the host answered; the answer is too big for us
                raise
            except client.TimedOut:
                # A plugin that gives a fetch a few milliseconds must not open the host's breaker for everyone.
                (permit.failure if given >= BREAKER_MIN_WAIT_S else permit.release)()
                raise
            except client.ExchangeFailed:
                permit.failure()
                raise
            except BaseException:
                permit.release()
                raise
            (permit.failure if response.status >= 500 else permit.success)()
            if idempotent and response.status in RETRY_STATUSES:
                raise _RetryableStatus(response)
            return response

        def retryable(exc: BaseException) -> bool:
            return idempotent and isinstance(exc, (client.ConnectFailed, client.Dropped, _RetryableStatus))

        try:
            return retry_call(attempt, self.retry, retryable, target="http", deadline=deadline.at)
        except _RetryableStatus as last:
            return last.response
        except client.HeadersTooLarge as exc:
            raise PayloadTooLarge(
                f"host {host} answered with {exc.size} bytes of headers; the limit is "
                f"{self.config.max_header_bytes} (capabilities.http.max_header_bytes)"
            ) from None
        except client.ConnectFailed as exc:
            raise ServiceUnavailable(f"host {host} is unreachable: {exc}") from None
        except client.Dropped:
            raise ServiceUnavailable(f"host {host} closed the connection without answering") from None
        except client.BadResponse as exc:
            raise ServiceUnavailable(f"host {host} sent an invalid HTTP response: {exc}") from None

    functions = (HostFunction("http_fetch", "http", http_fetch),)


def _not_granted(prefix: str, grant: hosts.HostGrant, host: str, literal: str | None, followed: bool) -> Forbidden:
    # A literal address is only ever granted exactly (a wildcard never matches one): say why that matters.
    why = blocked(literal) if literal is not None else None
    reason = f"{why}, and no capabilities.http entry names it exactly" if why else NOT_LISTED
    tail = "; the redirect was not followed" if followed else ""
    return Forbidden(f"{prefix}plugin '{grant.plugin}' may not fetch {host}: {reason}{tail}")


def _refuse_while_open(breaker: CircuitBreaker) -> None:
    """Fail fast, before resolving or connecting, while the host's breaker is open."""
    wait = breaker.retry_after()
    if wait > 0:
        raise ServiceUnavailable(
            f"{breaker.what} is failing; calls are refused for now (circuit open)", retry_after=wait
        )


def _redirect_target(url: Url, location: str | None) -> Url | None:
    """Where a 3xx points, or None when it points nowhere a fetch can go (its answer is then returned as is)."""
    if location is None:
        return None
    try:
        return parse.parse_url(urljoin(url.text, location))
    except ValidationFailed:
        return None


def _redirected(hop: Attempt, status: int, target: Url) -> Attempt:
    """The next hop: 303 (and 301/302 after a POST) turn into a GET without a body, as browsers do."""
    method, body, headers = hop.method, hop.body, hop.headers
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-type")
    if target.origin != hop.url.origin:
        headers = tuple((k, v) for k, v in headers if k.lower() not in CREDENTIALS)
    return Attempt(target, method, headers, body)


def _reply(response: client.Response, url: Url) -> JsonObject:
    headers: dict[str, str] = {}
    for name, value in response.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    reply: JsonObject = {
        "status": response.status,
        "headers": headers,
        "truncated": response.truncated,
        "url": url.text,
    }
    try:
        reply["body"] = response.body.decode("utf-8")
    except UnicodeDecodeError:
        reply["body_base64"] = base64.b64encode(response.body).decode("ascii")
    return reply
