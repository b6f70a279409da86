"""Typed operator configuration, parsed once at start-up.

Sources, later wins: the dataclass defaults below (``config/default.yaml``
states the same values and a test keeps the two equal), the YAML file given
with ``--config``, then environment variables ``ARCANA_<SECTION>__<KEY>``
(for example ``ARCANA_SERVER__HTTP_PORT=8081``; deeper keys take more
``__``, e.g. ``ARCANA_CAPABILITIES__STORE__MAX_DOC_BYTES``), whose values are
read as YAML scalars. msgspec converts the merged values into the dataclasses
strictly (an int is not a bool, a string is not a number); unknown keys and
ill-typed values stop start-up with a message naming the key, what it must be,
the value, and the file or variable it came from.

Relative paths are made absolute here, once, so that the rest of the kernel
only sees absolute ones: a path written in a config file is relative to that
file's folder; one from the defaults, the command line or the environment is
relative to the base directory, ``$ARCANA_HOME`` or else the working
directory. Never to the package's location, which is site-packages once
Arcana is installed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import msgspec
import yaml

from arcana.config_convert import (
    ConfigPath,
    DatabaseUrl,
    Key,
    NonNegativeInt,
    Origin,
    Origins,
    PlacedConfigError,
    absolute_path,
    base_dir,
    convert,
    dotted,
    field_hints,
    keys_set,
    resolve_paths,
    unknown_key,
)
from arcana.errors import ConfigError
from arcana.manifest import RATE_RE
from arcana.resilience import BreakerPolicy, RetryPolicy

T = TypeVar("T")
# A count or duration that must be at least 1 (zero threads would run nothing).
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
ENV_PREFIX = "ARCANA_"
# server.workers and `arcana serve --workers`: each worker is a whole kernel (its pools, its watcher,
# its database connections), so a typo such as 1000 must not fork a thousand of them.
MAX_WORKERS = 64


@dataclass(frozen=True)
class TlsConfig:
    """Serve TLS when cert_file and key_file are set; with client_ca_file, require client certificates."""

    cert_file: ConfigPath = ""
    key_file: ConfigPath = ""
    client_ca_file: ConfigPath = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise PlacedConfigError("TLS needs both cert_file and key_file")
        if self.client_ca_file and not self.cert_file:
            raise PlacedConfigError("TLS client_ca_file needs cert_file and key_file too")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: NonNegativeInt = 8080
    grpc_port: NonNegativeInt = 9090
    max_body_bytes: NonNegativeInt = 1_048_576
    # Seconds to let in-flight requests finish on shutdown.
    shutdown_grace_s: float = 5.0
    grpc_tls: TlsConfig = field(default_factory=TlsConfig)
    http_tls: TlsConfig = field(default_factory=TlsConfig)
    # Bounds of the HTTP layer (arcana.edge.http_protocol), each answered in the JSON error model:
    # the request line and headers together (431), the request target alone (414), header fields (431).
    max_header_bytes: NonNegativeInt = 32_768
    max_url_bytes: NonNegativeInt = 8_192
    max_header_count: NonNegativeInt = 100
    # From connecting, or from the end of the previous response, until the request head is complete
    # (408, or a plain close if nothing was sent); an idle keep-alive connection is closed after
    # keepalive_timeout_s (0: no keep-alive), or after header_timeout_s if that is shorter.
    header_timeout_s: float = 10.0
    # From the end of the request head until its whole body has come (408).
    body_timeout_s: float = 30.0
    keepalive_timeout_s: NonNegativeInt = 5
    # Open HTTP connections per process; one more is answered 503 and closed at once.
    max_connections: NonNegativeInt = 1_000
    # Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and -Proto are believed;
    # from anyone else those headers are ignored, so the client address is the socket's peer.
    trusted_proxies: list[str] = field(default_factory=list)
    # /metrics needs a bearer token equal to this environment variable's value (when set, at least
    # 32 bytes) or an admin access token; metrics_public opens it to anyone who can reach the port.
    metrics_token_env: str = "ARCANA_METRICS_TOKEN"
    metrics_public: bool = False
    # Request rate limits (manifest `rate_limit` per route/method and principal, and
    # per_address_limit): counted in this process ("memory") or shared through Redis ("redis").
    rate_limit_backend: Literal["memory", "redis"] = "memory"
    rate_limit_redis_url: str = "redis://127.0.0.1:6379/0"
    # Keys the in-process limiter tracks at most (about 200 bytes each); the least recently used is dropped.
    rate_limit_max_keys: NonNegativeInt = 100_000
    # Plugin calls per client address (IPv6: per /64) before any routing, "N/second|minute|hour|day";
    # "0" (off by default): behind a proxy not listed in trusted_proxies every client shares one address.
    per_address_limit: str = "0"
    # `--role worker` opens no port unless this is set: then it serves /metrics alone on it (same gate as
    # above), so its job metrics can be scraped. 0: none. The api and all roles serve /metrics on http_port.
    metrics_port: NonNegativeInt = 0
    # Redis keys of the limiter start with this: deployments (or test runs) sharing one Redis keep
    # separate budgets under different prefixes, and processes that share a budget use the same one.
    rate_limit_key_prefix: str = "arcana:ratelimit:"
    # Redis not answering: false refuses limited calls with 503 SERVICE_UNAVAILABLE (the limit holds);
    # true lets them through unlimited until Redis is back.
    rate_limit_fail_open: bool = False
    # Plugin calls (REST and gRPC together) running at once in this process; one more is refused at
    # once with 503 / UNAVAILABLE and Retry-After, never queued. The kernel's own routes do not count.
    max_in_flight: NonNegativeInt = 1024
    # Development: check each plugin answer against the schema its route declares for the status
    # ([route.responses]); a mismatch is logged and counted (arcana_response_mismatches_total), never refused.
    validate_responses: bool = False
    # Processes serving the same ports (SO_REUSEPORT), each with its own kernel, pools and watcher;
    # `arcana serve --workers N|auto` wins. At most MAX_WORKERS. With more than one and metrics_port set,
    # worker i also serves /metrics alone on metrics_port + i.
    workers: NonNegativeInt = 1

    def __post_init__(self) -> None:
        # Checked here rather than in the type so that the command line's
        # --http-port (applied with dataclasses.replace) is checked too.
        for key in ("http_port", "grpc_port", "metrics_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise ConfigError(f"config key 'server.{key}' must be a port 0-65535, got {getattr(self, key)}")
        self._check_http_bounds()
        if not (self.per_address_limit == "0" or RATE_RE.match(self.per_address_limit)):
            raise ConfigError(
                f"config key 'server.per_address_limit' must be N/second|minute|hour|day or 0, "
                f"got {self.per_address_limit!r}"
            )
        if self.rate_limit_max_keys < 1:
            raise ConfigError("config key 'server.rate_limit_max_keys' must be at least 1")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"config key 'server.workers' must be 1-{MAX_WORKERS}, got {self.workers}")
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f"config key 'server.trusted_proxies' must list IP addresses or CIDR networks, got {entry!r}"
                ) from None

    def _check_http_bounds(self) -> None:
        # A floor under each bound: below it ordinary clients (a JWT, a few cookies) would be refused.
        floors = {"max_header_bytes": 1024, "max_url_bytes": 256, "max_header_count": 8, "max_connections": 1}
        floors["max_in_flight"] = 1
        for key, floor in floors.items():
            if getattr(self, key) < floor:
                raise ConfigError(f"config key 'server.{key}' must be at least {floor}, got {getattr(self, key)}")
        for key in ("header_timeout_s", "body_timeout_s"):
            if not 0 < getattr(self, key) <= 3600:
                raise ConfigError(f"config key 'server.{key}' must be in (0, 3600], got {getattr(self, key)}")


@dataclass(frozen=True)
class PluginsConfig:
    # Relative to the config file that sets it, else to $ARCANA_HOME or the
    # working directory; `arcana serve --plugins DIR` passes an absolute path.
    dir: ConfigPath = "plugins"
    watch: bool = True
    # watchfiles groups changes that land within this window into one batch.
    reload_debounce_ms: NonNegativeInt = 20
    # How often the watcher checks that the folder itself is still the one it
    # watches (it may be replaced: `mv plugins.new plugins`, a symlink swap);
    # 0 checks only when a change arrives.
    folder_check_ms: NonNegativeInt = 1000
    # A module (or sidecar) larger than this is refused before it is read.
    max_module_bytes: NonNegativeInt = 67_108_864
    # A plugin file that is a symlink resolving outside the folder is refused
    # unless this is true (the folder is then no longer the whole story).
    follow_symlinks_outside: bool = False


@dataclass(frozen=True)
class ExecutorConfig:
    """Where plugin calls run, and what one plugin may hold.

    Each plugin runs its calls on threads of its own (every version of it
    shares them; they start on first use), so a plugin stalled on a slow
    backend holds only its own threads, never another plugin's.
    """

    # The kernel's own pool: loading and compiling plugin files (plugin calls run on their plugin's threads).
    threads: NonNegativeInt = 16
    # Threads one plugin's calls may hold at once, across its versions.
    max_threads_per_plugin: PositiveInt = 8
    # How long a call waits for its plugin's slot or thread before 503 with Retry-After
    # (never longer than the call's own time limit).
    max_queue_wait_ms: PositiveInt = 1000
    # Host functions (the store's database waits) end this long before a call's time limit
    # (at most a tenth of it), so the plugin can still answer with their refusal.
    answer_reserve_ms: NonNegativeInt = 100
    default_memory_mb: NonNegativeInt = 32
    default_timeout_ms: NonNegativeInt = 2000
    default_max_concurrency: NonNegativeInt = 8
    # Operator maxima: a manifest asking for more is refused at load.
    max_memory_mb: NonNegativeInt = 256
    max_timeout_ms: NonNegativeInt = 30_000
    max_concurrency: NonNegativeInt = 64
    # An instance idle this long is dropped, freeing its memory (0: idle instances are kept);
    # the kernel sweeps every pool every half of it (at least once a second, at most every 30 s).
    idle_instance_ttl_s: NonNegativeFloat = 60.0
    # Idle instances each plugin version keeps however long they wait: its next call starts warm.
    min_idle_instances: NonNegativeInt = 1
    # The longest a plugin call may run inline on the event loop, in ms (0: every call runs on its
    # plugin's threads). Only handlers of plugins whose host functions are all quick (log), proven
    # short by ``inline_after_calls`` calls in a row each within half of it, run inline; one that
    # overruns is stopped and runs again on its threads (README, "Performance"; arcana.inline).
    inline_max_ms: Annotated[int, msgspec.Meta(ge=0, le=50)] = 2
    inline_after_calls: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 100
    # Compiled WebAssembly components (Python plugins) are kept here, so a restart loads one in about
    # 0.1 s instead of compiling it for seconds. Deserialized artifacts are trusted code: the folder
    # must be the kernel's own (created 0700; refused when others may write it, or inside the plugins
    # folder). "" keeps no cache.
    artifact_cache_dir: ConfigPath = ".data/artifacts"
    # The cache's bound: the least recently used artifacts go beyond it (one is 2-3x its component).
    artifact_cache_max_mb: PositiveInt = 1024


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


@dataclass(frozen=True)
class DatabaseConfig:
    """The kernel's one database: the store's tables and (later) identity's.

    A SQLAlchemy URL: a SQLite file by default (a relative path follows the
    ``plugins.dir`` rule and is absolute once loaded), PostgreSQL at scale
    (``postgresql+psycopg://user@host/db``; pass a password through the
    environment, ``ARCANA_DATABASE__URL``, never in a committed file).
    """

    url: DatabaseUrl = "sqlite:///.data/arcana.db"
    echo: bool = False
    # Upgrade a SQLite schema when a plugin first needs it; PostgreSQL is
    # upgraded once per deployment with `arcana migrate`.
    auto_migrate: bool = True
    pool_size: NonNegativeInt = 10
    max_overflow: NonNegativeInt = 10
    pool_timeout_s: float = 10.0
    # How long SQLite waits for a competing writer before giving up (a plugin call waits no
    # longer than its own deadline allows).
    busy_timeout_ms: NonNegativeInt = 5000

    def __post_init__(self) -> None:
        scheme = self.url.partition(":")[0].partition("+")[0]
        if scheme not in ("sqlite", "postgresql") or "://" not in self.url:
            raise ConfigError(
                f"config key 'database.url' must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got {self.url.partition('://')[0]!r}"
            )


@dataclass(frozen=True)
class JwtKeyConfig:
    """One signing key for RS256/EdDSA; several keys with distinct kids allow rotation."""

    kid: str = ""
    private_key_file: ConfigPath = ""  # PEM; only the active key needs it
    public_key_file: ConfigPath = ""  # PEM


@dataclass(frozen=True)
class AuthConfig:
    # Dev mode accepts a missing HS256 secret by generating an ephemeral one
    # (tokens then die with the process); production refuses to start.
    dev: bool = True
    algorithm: Literal["HS256", "RS256", "EdDSA"] = "HS256"
    # The HS256 secret is read from this environment variable, never from a file.
    secret_env: str = "ARCANA_JWT_SECRET"
    keys: list[JwtKeyConfig] = field(default_factory=list)
    active_kid: str = ""
    issuer: str = "arcana"
    audience: str = "arcana"
    access_ttl_s: NonNegativeInt = 900
    refresh_ttl_s: NonNegativeInt = 1_209_600
    # Argon2id parameters (OWASP's minimum by default); hashes are upgraded on login when these change.
    argon2_time_cost: NonNegativeInt = 2
    argon2_memory_kib: NonNegativeInt = 19_456
    argon2_parallelism: NonNegativeInt = 1
    # Failed logins allowed per window, per account and per client address (IPv6: per /64); 0 turns one off.
    login_failures_per_account: NonNegativeInt = 5
    login_failures_per_address: NonNegativeInt = 20
    login_window_s: NonNegativeInt = 300
    # Keys each failed-login window tracks at most (about 300-420 bytes each); the least
    # recently failed is dropped when full (why that is safe: arcana.auth.limits).
    login_tracker_max_keys: NonNegativeInt = 50_000
    # How long a process trusts its cached view of a user's revoked tokens: other processes
    # sharing the database refuse a revoked access token within this time (0: read every request).
    revocation_cache_s: float = 1.0
    # A refresh token presented again this soon after its rotation gets a fresh pair in the same
    # family (a double submit); later, it revokes the family (reuse detection). 0 turns grace off.
    refresh_reuse_grace_s: NonNegativeInt = 10

    def __post_init__(self) -> None:
        if self.login_tracker_max_keys < 1:
            raise ConfigError("config key 'auth.login_tracker_max_keys' must be at least 1")
        if not 0 <= self.revocation_cache_s <= 60:
            raise ConfigError(
                f"config key 'auth.revocation_cache_s' must be 0-60 seconds, got {self.revocation_cache_s}"
            )
        if self.algorithm != "HS256" and not self.keys:
            raise ConfigError(f"config key 'auth.keys' must list at least one key for {self.algorithm}")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids) or any(not k for k in kids):
            raise ConfigError("config key 'auth.keys': every key needs a distinct, non-empty kid")
        if self.keys and self.active_kid not in kids:
            raise ConfigError(f"config key 'auth.active_kid' must name one of the keys {kids}")


@dataclass(frozen=True)
class QueueConfig:
    """The job queue (arcana.queue): its backend, delivery rules, workers and bounds."""

    # "sql": the kernel's own database (the embedded default); "redis": redis_url, for scale-out.
    backend: Literal["sql", "redis"] = "sql"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis key starts with this, so several deployments (or test runs) can share one server.
    key_prefix: str = "arcana"
    # A claimed job is leased this long; its worker extends the lease every third of it while the
    # handler runs, and a job whose worker died is handed out again once the lease ran out.
    lease_s: float = 30.0
    # Anti-starvation: one claim in every fair_every takes the longest-waiting jobs whatever their
    # priority (0: strict priority order only).
    fair_every: NonNegativeInt = 10
    # Retries after the first attempt, unless the enqueue says otherwise (at most max_retries_limit).
    default_max_retries: NonNegativeInt = 3
    max_retries_limit: NonNegativeInt = 25
    # Retry n waits min(backoff_max_ms, backoff_base_ms * 2**(n-1)), less up to `backoff_jitter` of it.
    backoff_base_ms: PositiveInt = 1000
    backoff_max_ms: PositiveInt = 300_000
    backoff_jitter: float = 0.5
    # Succeeded jobs (and their results) are kept this long for status queries; dead ones until purged.
    retention_s: PositiveInt = 86_400
    # A job whose type no loaded plugin serves waits (re-checked every unrouted_retry_ms) and is
    # dead-lettered after this long.
    unrouted_dead_after_s: PositiveInt = 3_600
    unrouted_retry_ms: PositiveInt = 2_000
    # Bounds on what a plugin (or client) can put in: payload size, delay, jobs per plugin call.
    max_payload_bytes: PositiveInt = 65_536
    max_delay_s: PositiveInt = 30 * 86_400
    max_enqueues_per_call: PositiveInt = 100
    max_dedupe_key_bytes: PositiveInt = 256
    # Jobs waiting or running, across the whole queue: an enqueue past it is refused with 503 (an
    # event delivery is dropped and logged), so a flood cannot fill the database or Redis. The
    # depth is read from the backend at most every depth_check_s (0: no limit).
    max_depth: NonNegativeInt = 1_000_000
    depth_check_s: float = 1.0
    # Workers: jobs run at once per worker process, and how often an idle worker looks for work.
    worker_concurrency: PositiveInt = 8
    poll_interval_ms: PositiveInt = 200
    # On shutdown, running jobs get this long to finish; the rest are released for another worker.
    shutdown_grace_s: float = 10.0
    # How often the scheduler looks for due [[schedule]] ticks.
    schedule_interval_ms: PositiveInt = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.lease_s <= 3600:
            raise ConfigError(f"config key 'queue.lease_s' must be 1-3600 seconds, got {self.lease_s}")
        if not 0 <= self.backoff_jitter <= 1:
            raise ConfigError(f"config key 'queue.backoff_jitter' must be 0-1, got {self.backoff_jitter}")
        if self.default_max_retries > self.max_retries_limit:
            raise ConfigError("config key 'queue.default_max_retries' must not exceed queue.max_retries_limit")
        if not 0 < self.depth_check_s <= 60:
            raise ConfigError(f"config key 'queue.depth_check_s' must be in (0, 60], got {self.depth_check_s}")
        if not 0 <= self.shutdown_grace_s <= 3600:
            raise ConfigError(f"config key 'queue.shutdown_grace_s' must be 0-3600, got {self.shutdown_grace_s}")


@dataclass(frozen=True)
class BreakerConfig:
    """One kind of circuit breaker (arcana.resilience.breaker): when it opens and how it recovers."""

    # Consecutive failures (traps and timeouts for a plugin; errors for a backend or host) that open it.
    failure_threshold: PositiveInt = 5
    # An open breaker refuses at once, with Retry-After, for this long; then lets probes through.
    cool_down_s: float = 10.0
    # Probes let through at once while half-open; that many successes close it.
    half_open_probes: PositiveInt = 1

    def __post_init__(self) -> None:
        if not 0 < self.cool_down_s <= 3600:
            raise ConfigError(f"a breaker's cool_down_s must be in (0, 3600], got {self.cool_down_s}")

    def policy(self) -> BreakerPolicy:
        return BreakerPolicy(self.failure_threshold, self.cool_down_s, self.half_open_probes)


@dataclass(frozen=True)
class RetryConfig:
    """Retries of the kernel's own backend calls (never of a plugin call): exponential backoff with jitter."""

    # Attempts in all, the first included (1: no retries).
    max_attempts: PositiveInt = 3
    # Retry n waits min(max_delay_ms, base_delay_ms * 2**(n-1)), less up to `jitter` of it.
    base_delay_ms: PositiveInt = 50
    max_delay_ms: PositiveInt = 1000
    # No retry starts later than this after the first attempt (nor after the call's own deadline).
    max_total_ms: PositiveInt = 3000
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 20:
            raise ConfigError(f"config key 'resilience.retry.max_attempts' must be 1-20, got {self.max_attempts}")
        if self.base_delay_ms > self.max_delay_ms:
            raise ConfigError("config key 'resilience.retry.base_delay_ms' must not exceed max_delay_ms")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"config key 'resilience.retry.jitter' must be 0-1, got {self.jitter}")

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts,
            self.base_delay_ms / 1000,
            self.max_delay_ms / 1000,
            self.max_total_ms / 1000,
            self.jitter,
        )


@dataclass(frozen=True)
class ResilienceConfig:
    """Circuit breakers around plugins, backends and outbound hosts, and retries of backend calls."""

    plugin_breaker: BreakerConfig = field(default_factory=BreakerConfig)
    # Ceilings on a manifest's own [breaker] settings: a plugin may tune its breaker, not switch it off.
    max_failure_threshold: PositiveInt = 100
    max_cool_down_s: float = 600.0
    backend_breaker: BreakerConfig = field(default_factory=lambda: BreakerConfig(cool_down_s=5.0))
    http_breaker: BreakerConfig = field(default_factory=lambda: BreakerConfig(cool_down_s=30.0))
    # Outbound hosts tracked at once (one breaker each); past it the least recently used closed one goes.
    max_http_breakers: PositiveInt = 10_000
    retry: RetryConfig = field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        if not 0 < self.max_cool_down_s <= 3600:
            raise ConfigError(
                f"config key 'resilience.max_cool_down_s' must be in (0, 3600], got {self.max_cool_down_s}"
            )


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry tracing (arcana.tracing): spans for requests, plugin calls, host calls and jobs."""

    # none: no span is made at all (a W3C traceparent still passes through to plugins and jobs);
    # otlp: OTLP/HTTP to otlp_endpoint (the `otlp` extra); console: spans as JSON on stdout (debugging).
    exporter: Literal["none", "otlp", "console"] = "none"
    # The collector's traces URL; "" lets the exporter read OTEL_EXPORTER_OTLP_* (default localhost:4318).
    otlp_endpoint: str = ""
    service_name: str = "arcana"
    # Share of new traces recorded (0-1); a request that arrives with a traceparent follows its sampled flag.
    sample_ratio: float = 1.0
    # Finished spans wait in a queue of at most max_queue_size for the exporter (past it they are
    # dropped, never kept: a slow collector cannot grow the process), sent in batches of max_export_batch_size.
    max_queue_size: PositiveInt = 2048
    max_export_batch_size: PositiveInt = 512
    # One export's limit, and the longest a stopping server waits for the spans still queued.
    export_timeout_ms: PositiveInt = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.sample_ratio <= 1:
            raise ConfigError(f"config key 'tracing.sample_ratio' must be 0-1, got {self.sample_ratio}")
        if self.max_export_batch_size > self.max_queue_size:
            raise ConfigError("config key 'tracing.max_export_batch_size' must not exceed tracing.max_queue_size")
        if not self.service_name:
            raise ConfigError("config key 'tracing.service_name' must not be empty")


@dataclass(frozen=True)
class ArcanaConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    # Capability grants: plugin name (or "*" for every plugin) -> capabilities.
    grants: dict[str, list[str]] = field(
        default_factory=lambda: {"*": ["log"], "notes": ["store", "events"], "audit-log": ["store", "events.kernel"]}
    )
    # Plugin config: plugin name -> {key: value}, over the defaults of the manifest's [config] table (every
    # key must be one it declares: the loader refuses the plugin otherwise). The guest reads it with config_get.
    plugin_config: dict[str, dict[str, str]] = field(default_factory=dict)
    # One section per host capability, typed by the capability itself
    # (see ``section``), so adding a capability never edits this file.
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    # Bookkeeping, not sections: the config file (or "the defaults"), and
    # which source wrote each key, for messages and for ``section``'s paths.
    source: str = field(default="the defaults", compare=False)
    origins: Origins = field(default_factory=Origins.of_defaults, compare=False, repr=False)

    def section(self, name: str, cls: type[T]) -> T:
        """The capability section ``capabilities.<name>`` parsed into ``cls`` (a dataclass), its paths absolute.

        Parsed on demand because only the capability knows its type; the
        messages and path rules are those of the kernel's own sections.
        """
        key: Key = ("capabilities", name)
        parsed = convert(cls, self.capabilities.get(name, {}), key, self.origins)
        return cast(T, resolve_paths(parsed, cls, key, self.origins))

    def plugins_dir(self) -> Path:
        """The plugin folder: absolute once loaded; a hand-built config resolves against the base directory."""
        return Path(absolute_path(self.plugins.dir, self.origins.defaults.base))

    def granted(self, plugin: str) -> frozenset[str]:
        return frozenset(self.grants.get("*", [])) | frozenset(self.grants.get(plugin, []))


_BOOKKEEPING = ("source", "origins")


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> ArcanaConfig:
    """Build the config from defaults, an optional YAML file and the environment (``os.environ`` if None)."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    written: dict[Key, Origin] = {}
    if path is not None:
        raw = _read_yaml(path)
        in_file = Origin(str(path), Path(os.path.abspath(path)).parent)
        written.update({key: in_file for key in keys_set(raw)})
    home = base_dir(env)
    _overlay_environment(raw, written, env, home)
    origins = Origins(Origin("the defaults", home), written)
    return _build_config(raw, origins, str(path) if path is not None else "the defaults")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _overlay_environment(raw: dict[str, Any], written: dict[Key, Origin], env: Mapping[str, str], home: Path) -> None:
    """Write each ``ARCANA_<SECTION>__<KEY>[__<KEY>...]`` variable into ``raw``, recording it as the key's source."""
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        key = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        target = raw
        for depth, part in enumerate(key[:-1]):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                where = Origins(Origin("the defaults", home), written).of(key[: depth + 1]).label
                raise ConfigError(f"{name}: config key '{dotted(key[: depth + 1])}' is not a mapping (in {where})")
        target[key[-1]] = _environment_value(name, value)
        written[key] = Origin(f"environment variable {name}", home)


def _environment_value(name: str, value: str) -> Any:
    # An empty value stays the empty string: YAML would read it as null.
    if not value:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not a valid YAML value: {exc}") from exc


def _build_config(raw: dict[str, Any], origins: Origins, source: str) -> ArcanaConfig:
    hints = field_hints(ArcanaConfig)
    sections = [name for name in hints if name not in _BOOKKEEPING]
    for name in raw:
        if name not in sections:
            raise unknown_key((str(name),), sections, origins)
    converted = {name: convert(hints[name], value, (name,), origins) for name, value in raw.items()}
    config = ArcanaConfig(**converted, source=source, origins=origins)
    # Every section, not only those in raw: the defaults' paths are relative too.
    resolved = {name: resolve_paths(getattr(config, name), hints[name], (name,), origins) for name in sections}
    return dataclasses.replace(config, **resolved)


# Re-exported for tests that compare config/default.yaml with the defaults.
def defaults_as_dict() -> dict[str, Any]:
    values = dataclasses.asdict(ArcanaConfig())
    for name in _BOOKKEEPING:
        del values[name]
    return values
