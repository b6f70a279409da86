"""The plugin manifest: TOML in, a frozen validated record out.

Pure data: this module imports nothing from the engine, the edges or the
capabilities. Validation collects every problem (field, message, fix) instead
of stopping at the first, so that `arcana plugin check` can show them all.
Checks that need the outside world (grants, exports, other plugins' routes)
happen in the loader and the registry.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from arcana.errors import ManifestInvalid, PathTemplateError, Problem
from arcana.paths import PathTemplate
from arcana.queue.cron import CronError, Timing, parse_cron, parse_every

# Plugin names: also metric labels, store and kv keys, job targets ("name/handler") and config keys, where
# '-' and '_' are both safe. Never "__": the environment's config keys (ARCANA_GRANTS__<NAME>) split on it.
NAME_RE = re.compile(r"^(?!.*__)[a-z][a-z0-9_-]{0,62}$")
NAME_FIX = (
    "use lowercase letters, digits, '-' and '_' (never two '_' in a row), starting with a letter, at most 63 characters"
)
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
GRPC_METHOD_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*\.[A-Za-z_]\w*/[A-Za-z_]\w*$")
RATE_RE = re.compile(r"^[1-9]\d*/(second|minute|hour|day)$")
TOPIC_RE = re.compile(r"^[a-z0-9_*-]+(\.[a-z0-9_*-]+)*$")
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
RESERVED_PREFIXES = ("/health", "/ready", "/metrics", "/api/v1/auth", "/api/v1/admin", "/openapi.json", "/docs")
ABIS = frozenset({"json", "raw"})
PRIORITIES = ("critical", "high", "normal", "low")
CRON_FIX = 'write minute hour day-of-month month day-of-week, e.g. "*/5 * * * *" or "0 3 * * mon-fri"'
# [config]: the plugin's own settings, read by the guest with Extism's config_get. Bounded, as they sit in
# every instance's memory; "arcana." is the kernel's (what a raw call is told, arcana.raw_config).
# The contract of a route (request, params, query, responses): a schema is a JSON Schema file of the plugin's
# source folder (embedded by `arcana plugin build`) or a protobuf message of the plugin's own descriptors.
PARAM_TYPES = ("string", "integer", "number", "boolean", "uuid")
SCHEMA_FILE_RE = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9_./-]+\.json$")
PROTO_MESSAGE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
SCHEMA_REF_FIX = (
    'write a JSON Schema file of the plugin folder, e.g. "schemas/note.json", '
    'or a protobuf message of its descriptors, e.g. "notes.v1.Note"'
)
CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
CONFIG_KEY_FIX = "use letters, digits, '_', '.' and '-', starting with a letter or '_', at most 128 characters"
RESERVED_CONFIG_PREFIX = "arcana."
MAX_CONFIG_KEYS = 64
MAX_CONFIG_VALUE_BYTES = 4096

# The fields each table accepts; any other is refused. docs/manifest.md documents each one
# (tests/runtime/test_manifest_docs.py compares the two). [capabilities] takes any grant name (the loader checks).
TOP_LEVEL_KEYS = frozenset(
    {"plugin", "capabilities", "config", "limits", "route", "grpc", "job", "subscribe", "schedule", "breaker"}
)
PLUGIN_KEYS = frozenset({"name", "version", "description", "host_abi"})
LIMITS_KEYS = frozenset({"memory_mb", "timeout_ms", "max_concurrency"})
BREAKER_KEYS = frozenset({"failure_threshold", "cool_down_s", "half_open_probes"})
ROUTE_KEYS = frozenset(
    {
        "method",
        "path",
        "handler",
        "roles",
        "public",
        "rate_limit",
        "abi",
        "content_type",
        "request",
        "params",
        "query",
        "required_query",
        "responses",
    }
)
GRPC_KEYS = frozenset({"method", "handler", "roles", "public", "abi", "rate_limit"})
JOB_KEYS = frozenset({"type", "handler"})
SUBSCRIBE_KEYS = frozenset({"topic", "handler"})
SCHEDULE_KEYS = frozenset({"cron", "every", "job", "payload", "priority"})
TABLE_KEYS: dict[str, frozenset[str]] = {
    "manifest": TOP_LEVEL_KEYS,
    "plugin": PLUGIN_KEYS,
    "limits": LIMITS_KEYS,
    "breaker": BREAKER_KEYS,
    "route": ROUTE_KEYS,
    "grpc": GRPC_KEYS,
    "job": JOB_KEYS,
    "subscribe": SUBSCRIBE_KEYS,
    "schedule": SCHEDULE_KEYS,
}


@dataclass(frozen=True)
class Limits:
    memory_mb: int | None = None
    timeout_ms: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class BreakerSettings:
    """A plugin's own ``[breaker]`` settings; None: the operator's ``resilience.plugin_breaker`` value."""

    failure_threshold: int | None = None
    cool_down_s: float | None = None
    half_open_probes: int | None = None


@dataclass(frozen=True)
class SchemaRef:
    """Where a route's schema comes from: ``kind`` "file" (a .json path relative to the plugin folder) or
    "proto" (a full protobuf message name of the plugin's own descriptors)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class QueryParam:
    type: str = "string"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: PathTemplate
    handler: str
    roles: tuple[str, ...] = ()
    public: bool = False
    rate_limit: str | None = None
    abi: str = "json"
    content_type: str = "application/octet-stream"
    # The contract (docs/manifest.md "Schemas"): checked at the edge before the plugin is called.
    request: SchemaRef | None = None
    # Path parameter -> type (one of PARAM_TYPES); a parameter not listed is a string.
    params: dict[str, str] = field(default_factory=dict, hash=False)
    query: dict[str, QueryParam] = field(default_factory=dict, hash=False)
    # HTTP status -> the answer's schema; None: no body.
    responses: dict[int, SchemaRef | None] = field(default_factory=dict, hash=False)

    @property
    def has_contract(self) -> bool:
        return bool(self.request or self.params or self.query or self.responses)

    def schema_refs(self) -> list[SchemaRef]:
        """Every schema this route names, request first."""
        refs = [self.request] if self.request else []
        return refs + [r for _, r in sorted(self.responses.items()) if r is not None]


@dataclass(frozen=True)
class GrpcMethod:
    method: str
    handler: str
    roles: tuple[str, ...] = ()
    public: bool = False
    abi: str = "json"
    rate_limit: str | None = None


@dataclass(frozen=True)
class Job:
    type: str
    handler: str


@dataclass(frozen=True)
class Subscription:
    topic: str
    handler: str


@dataclass(frozen=True)
class Schedule:
    """A ``[[schedule]]``: enqueue ``job`` on every tick of ``timing`` (a cron expression or an ``every`` period)."""

    job: str
    timing: Timing
    # Any TOML value, kept as the JSON it maps to (dates are refused: JSON has none).
    payload: Any = None
    priority: str = "normal"

    @property
    def expression(self) -> str:
        """The cron expression (fields joined by one space) or the period, e.g. ``"30s"``."""
        return self.timing.expression


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str = ""
    capabilities: dict[str, bool | tuple[str, ...]] = field(default_factory=dict)
    limits: Limits = Limits()
    routes: tuple[Route, ...] = ()
    grpc: tuple[GrpcMethod, ...] = ()
    jobs: tuple[Job, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    breaker: BreakerSettings = BreakerSettings()
    # The host ABI the module was built for (arcana.types.HOST_ABI_VERSION; the loader refuses a newer one).
    host_abi: int = 1
    # [config]: key -> default value, given to the guest as Extism config (the operator's plugin_config overrides).
    config: dict[str, str] = field(default_factory=dict)

    def requested_capabilities(self) -> frozenset[str]:
        return frozenset(k for k, v in self.capabilities.items() if v)

    def handlers(self) -> frozenset[str]:
        entries: list[Any] = [*self.routes, *self.grpc, *self.jobs, *self.subscriptions]
        return frozenset(e.handler for e in entries)


def parse_manifest(text: str) -> Manifest:
    """Parse and validate manifest TOML; raise ManifestInvalid listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestInvalid([Problem("manifest", f"not valid TOML: {exc}", "fix the TOML syntax")]) from exc
    v = _Validator()
    manifest = v.manifest(data)
    if v.problems or manifest is None:
        raise ManifestInvalid(v.problems, v.name)
    return manifest


class _Validator:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.name: str | None = None

    def add(self, fld: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(fld, message, fix))

    def table(
        self, data: Any, where: str, allowed: frozenset[str], required: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.add(where, "must be a table", f"write it as [{where}]")
            return {}
        for key in sorted(set(data) - allowed):
            self.add(f"{where}.{key}", "unknown field", f"remove it; allowed fields: {', '.join(sorted(allowed))}")
        for key in sorted(required - set(data)):
            self.add(f"{where}.{key}", "is required", f"add {key} = ...")
        return data

    def typed(self, data: dict[str, Any], where: str, key: str, kind: type, default: Any = None) -> Any:
        value = data.get(key, default)
        if key in data and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            self.add(f"{where}.{key}", f"must be {kind.__name__}, got {value!r}")
            return default
        return value

    def manifest(self, data: dict[str, Any]) -> Manifest | None:
        self.table(data, "manifest", TOP_LEVEL_KEYS, {"plugin"})
        plugin = self.table(data.get("plugin", {}), "plugin", PLUGIN_KEYS, {"name", "version"})
        name = self.typed(plugin, "plugin", "name", str, "")
        if "name" in plugin and isinstance(name, str):
            if NAME_RE.match(name):
                self.name = name
            else:
                self.add(
                    "plugin.name",
                    f"'{name}' is not a valid name",
                    NAME_FIX,
                )
        version = self.typed(plugin, "plugin", "version", str, "")
        if "version" in plugin and isinstance(version, str) and not SEMVER_RE.match(version):
            self.add("plugin.version", f"'{version}' is not a semantic version", "use MAJOR.MINOR.PATCH, e.g. 1.0.0")
        manifest = Manifest(
            name=name or "",
            version=version or "",
            description=self.typed(plugin, "plugin", "description", str, ""),
            host_abi=self.host_abi(plugin),
            capabilities=self.capabilities(data.get("capabilities", {})),
            limits=self.limits(data.get("limits", {})),
            routes=tuple(self.entries(data, "route", self.route)),
            grpc=tuple(self.entries(data, "grpc", self.grpc)),
            jobs=tuple(self.entries(data, "job", self.job)),
            subscriptions=tuple(self.entries(data, "subscribe", self.subscription)),
            schedules=tuple(self.entries(data, "schedule", self.schedule)),
            breaker=self.breaker(data.get("breaker", {})),
            config=self.config(data.get("config", {})),
        )
        self.duplicates(manifest)
        self.scheduled_jobs(data, manifest)
        return manifest

    def host_abi(self, plugin: dict[str, Any]) -> int:
        """``[plugin] host_abi``: an integer >= 1; whether this kernel speaks it is the loader's to check."""
        value = self.typed(plugin, "plugin", "host_abi", int, 1)
        if value < 1:
            self.add(
                "plugin.host_abi",
                f"must be at least 1, got {value}",
                "remove it (the default is 1), or write the ABI the plugin was built for",
            )
            return 1
        return int(value)

    def capabilities(self, data: Any) -> dict[str, bool | tuple[str, ...]]:
        caps: dict[str, bool | tuple[str, ...]] = {}
        if not isinstance(data, dict):
            self.add("capabilities", "must be a table", "write it as [capabilities]")
            return caps
        for key, value in data.items():
            if isinstance(value, bool):
                caps[key] = value
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                caps[key] = tuple(value)
            else:
                self.add(f"capabilities.{key}", f"must be true/false or a list of strings, got {value!r}")
        return caps

    def config(self, data: Any) -> dict[str, str]:
        """``[config]``: string keys to string values, each checked by ``config_problems``."""
        if not isinstance(data, dict):
            self.add("config", "must be a table", 'write it as [config] with key = "value" lines')
            return {}
        self.problems += config_problems(data, "config")
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def limits(self, data: Any) -> Limits:
        table = self.table(data, "limits", LIMITS_KEYS)
        values = {}
        for key in ("memory_mb", "timeout_ms", "max_concurrency"):
            value = self.typed(table, "limits", key, int)
            if value is not None and value <= 0:
                self.add(f"limits.{key}", f"must be positive, got {value}")
                value = None
            values[key] = value
        return Limits(**values)

    def breaker(self, data: Any) -> BreakerSettings:
        """``[breaker]``: positive numbers only; the operator's ceilings are the loader's to check."""
        table = self.table(data, "breaker", BREAKER_KEYS)
        values: dict[str, Any] = {}
        for key in ("failure_threshold", "half_open_probes"):
            value = self.typed(table, "breaker", key, int)
            if value is not None and value <= 0:
                self.add(f"breaker.{key}", f"must be positive, got {value}")
                value = None
            values[key] = value
        cool_down = table.get("cool_down_s")
        if cool_down is not None:
            if isinstance(cool_down, bool) or not isinstance(cool_down, int | float):
                self.add("breaker.cool_down_s", f"must be a number of seconds, got {cool_down!r}")
                cool_down = None
            elif not cool_down > 0:
                self.add("breaker.cool_down_s", f"must be positive, got {cool_down}")
                cool_down = None
        values["cool_down_s"] = None if cool_down is None else float(cool_down)
        return BreakerSettings(**values)

    def entries(self, data: dict[str, Any], key: str, build: Any) -> list[Any]:
        items = data.get(key, [])
        if not isinstance(items, list):
            self.add(key, "must be an array of tables", f"write each entry as [[{key}]]")
            return []
        built = [build(item, f"{key}[{i}]") for i, item in enumerate(items)]
        return [b for b in built if b is not None]

    def handler(self, table: dict[str, Any], where: str) -> str:
        handler = self.typed(table, where, "handler", str, "")
        if handler and not HANDLER_RE.match(handler):
            self.add(f"{where}.handler", f"'{handler}' is not a valid export name", "use letters, digits and '_'")
        return handler or ""

    def access(self, table: dict[str, Any], where: str) -> tuple[tuple[str, ...], bool]:
        roles = table.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            self.add(f"{where}.roles", f"must be a list of role names, got {roles!r}")
            roles = []
        public = self.typed(table, where, "public", bool, False)
        if public and roles:
            self.add(f"{where}.public", "a public entry cannot also require roles", "drop roles or public")
        return tuple(roles), bool(public)

    def abi(self, table: dict[str, Any], where: str) -> str:
        abi = self.typed(table, where, "abi", str, "json")
        if abi not in ABIS:
            self.add(f"{where}.abi", f"unknown abi {abi!r}", 'use "json" (envelopes) or "raw" (body bytes)')
            return "json"
        return str(abi)

    def route(self, item: Any, where: str) -> Route | None:
        table = self.table(item, where, ROUTE_KEYS, {"method", "path", "handler"})
        method = str(self.typed(table, where, "method", str, "")).upper()
        if "method" in table and method not in HTTP_METHODS:
            self.add(
                f"{where}.method",
                f"unknown HTTP method {table['method']!r}",
                f"use one of {', '.join(sorted(HTTP_METHODS))}",
            )
        raw_path = self.typed(table, where, "path", str, "")
        path = None
        if raw_path:
            try:
                path = PathTemplate.parse(raw_path)
            except PathTemplateError as exc:
                self.add(f"{where}.path", str(exc), "use /literal/{param} segments")
            else:
                for prefix in RESERVED_PREFIXES:
                    if raw_path == prefix or raw_path.startswith(prefix + "/"):
                        self.add(
                            f"{where}.path",
                            f"'{raw_path}' is under the reserved prefix {prefix}",
                            "choose a path outside the kernel's prefixes",
                        )
        rate = self.rate_limit(table, where)
        roles, public = self.access(table, where)
        handler, abi = self.handler(table, where), self.abi(table, where)
        content_type = self.typed(table, where, "content_type", str, "application/octet-stream")
        request = self.schema_ref(table.get("request"), f"{where}.request") if "request" in table else None
        if request is not None and method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            fix = "remove request, or use POST, PUT or PATCH"
            self.add(f"{where}.request", f"a {method} request has no body to check", fix)
        params = self.params(table.get("params", {}), where, path)
        query = self.query(table, where)
        responses = self.responses(table.get("responses", {}), where)
        if path is None or not handler or method not in HTTP_METHODS:
            return None
        return Route(method, path, handler, roles, public, rate, abi, content_type, request, params, query, responses)

    def schema_ref(self, value: Any, where: str) -> SchemaRef | None:
        """A schema reference: "dir/x.json" (a file) or "pkg.Message" (a protobuf message)."""
        if not isinstance(value, str) or not value:
            self.add(where, f"must be a schema reference, got {value!r}", SCHEMA_REF_FIX)
            return None
        if "/" in value or value.endswith(".json") or "." not in value:
            if SCHEMA_FILE_RE.match(value):
                return SchemaRef("file", value)
            if value.startswith("/") or ".." in value.split("/"):
                self.add(where, f"{value!r} is outside the plugin folder", "use a path relative to the plugin folder")
            elif not value.endswith(".json"):
                self.add(where, f"{value!r} is not a .json file", "name a JSON Schema file ending in .json")
            else:
                self.add(where, f"{value!r} is not a valid file path", "use letters, digits, '_', '-', '.' and '/'")
            return None
        if PROTO_MESSAGE_RE.match(value):
            return SchemaRef("proto", value)
        self.add(where, f"{value!r} is not a protobuf message name", SCHEMA_REF_FIX)
        return None

    def param_type(self, value: Any, where: str) -> str | None:
        if value in PARAM_TYPES:
            return str(value)
        self.add(where, f"unknown type {value!r}", f"use one of {', '.join(PARAM_TYPES)}")
        return None

    def params(self, data: Any, where: str, path: PathTemplate | None) -> dict[str, str]:
        """``[route.params]``: a type for each path parameter named; each must be in the path template."""
        if not isinstance(data, dict):
            self.add(f"{where}.params", "must be a table", f"write it as [{where.split('[')[0]}.params]")
            return {}
        names = {v for k, v in path.segments if k == "param"} if path is not None else None
        out: dict[str, str] = {}
        for name, value in data.items():
            if names is not None and name not in names:
                listed = f"the path's parameters are {', '.join(sorted(names))}" if names else "the path has none"
                self.add(f"{where}.params.{name}", f"'{name}' is not a parameter of the path", f"remove it; {listed}")
                continue
            kind = self.param_type(value, f"{where}.params.{name}")
            if kind is not None:
                out[name] = kind
        return out

    def query(self, table: dict[str, Any], where: str) -> dict[str, QueryParam]:
        """``[route.query]`` name -> type, and ``required_query`` the names a request must give."""
        data = table.get("query", {})
        if not isinstance(data, dict):
            self.add(f"{where}.query", "must be a table", f"write it as [{where.split('[')[0]}.query]")
            data = {}
        required = table.get("required_query", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.add(f"{where}.required_query", f"must be a list of query parameter names, got {required!r}")
            required = []
        for name in required:
            if name not in data:
                self.add(
                    f"{where}.required_query",
                    f"'{name}' is not a declared query parameter",
                    f'declare it under [route.query], e.g. {name} = "string"',
                )
        out: dict[str, QueryParam] = {}
        for name, value in data.items():
            kind = self.param_type(value, f"{where}.query.{name}")
            if kind is not None:
                out[name] = QueryParam(kind, name in required)
        return out

    def responses(self, data: Any, where: str) -> dict[int, SchemaRef | None]:
        """``[route.responses]``: status -> a schema reference, or "" for an answer without a body."""
        if not isinstance(data, dict):
            self.add(f"{where}.responses", "must be a table", f"write it as [{where.split('[')[0]}.responses]")
            return {}
        out: dict[int, SchemaRef | None] = {}
        for key, value in data.items():
            fld = f"{where}.responses.{key}"
            if not (key.isdigit() and 100 <= int(key) <= 599):
                self.add(fld, f"{key!r} is not an HTTP status", "use a status code from 100 to 599, e.g. 200")
                continue
            out[int(key)] = None if value == "" else self.schema_ref(value, fld)
        return out

    def rate_limit(self, table: dict[str, Any], where: str) -> str | None:
        rate: str | None = self.typed(table, where, "rate_limit", str)
        if rate is not None and not RATE_RE.match(rate):
            self.add(
                f"{where}.rate_limit", f"'{rate}' is not a rate", "write N/second|minute|hour|day, e.g. 100/minute"
            )
        return rate

    def grpc(self, item: Any, where: str) -> GrpcMethod | None:
        table = self.table(item, where, GRPC_KEYS, {"method", "handler"})
        method = self.typed(table, where, "method", str, "")
        if method and not GRPC_METHOD_RE.match(method):
            self.add(f"{where}.method", f"'{method}' is not a full gRPC method name", "write package.Service/Method")
        rate = self.rate_limit(table, where)
        roles, public = self.access(table, where)
        handler, abi = self.handler(table, where), self.abi(table, where)
        return GrpcMethod(method, handler, roles, public, abi, rate) if method and handler else None

    def job(self, item: Any, where: str) -> Job | None:
        table = self.table(item, where, JOB_KEYS, {"type", "handler"})
        job_type = self.typed(table, where, "type", str, "")
        if job_type and not TOPIC_RE.match(job_type):
            self.add(
                f"{where}.type",
                f"'{job_type}' is not a valid job type",
                "use dotted lowercase words, e.g. notes.reindex",
            )
        handler = self.handler(table, where)
        return Job(job_type, handler) if job_type and handler else None

    def subscription(self, item: Any, where: str) -> Subscription | None:
        table = self.table(item, where, SUBSCRIBE_KEYS, {"topic", "handler"})
        topic = self.typed(table, where, "topic", str, "")
        if topic and not TOPIC_RE.match(topic):
            self.add(
                f"{where}.topic",
                f"'{topic}' is not a valid topic pattern",
                "use dotted lowercase words and *, e.g. user.*",
            )
        handler = self.handler(table, where)
        return Subscription(topic, handler) if topic and handler else None

    def schedule(self, item: Any, where: str) -> Schedule | None:
        table = self.table(item, where, SCHEDULE_KEYS, {"job"})
        job = self.typed(table, where, "job", str, "")
        priority = self.typed(table, where, "priority", str, "normal")
        if priority not in PRIORITIES:
            self.add(f"{where}.priority", f"unknown priority {priority!r}", f"use one of {', '.join(PRIORITIES)}")
        payload = table.get("payload")
        if _has_dates(payload):
            self.add(f"{where}.payload", "holds a date or time, which JSON has no type for", "write it as a string")
        timing = self.timing(table, where)
        if not job or timing is None or priority not in PRIORITIES or _has_dates(payload):
            return None
        return Schedule(job, timing, payload, priority)

    def timing(self, table: dict[str, Any], where: str) -> Timing | None:
        if ("cron" in table) == ("every" in table):
            both = "both cron and" if "cron" in table else "neither cron nor"
            self.add(where, f"has {both} every", 'give exactly one: cron = "*/5 * * * *" or every = "30s"')
            return None
        key, parse, fix = ("cron", parse_cron, CRON_FIX) if "cron" in table else ("every", parse_every, "")
        text = self.typed(table, where, key, str)
        if text is None:
            return None
        try:
            return parse(text)
        except CronError as exc:
            self.add(f"{where}.{key}", str(exc), fix)
            return None

    def scheduled_jobs(self, data: dict[str, Any], manifest: Manifest) -> None:
        """Each schedule's job must be one of this plugin's own [[job]] types."""
        declared = {j.type for j in manifest.jobs}
        items = data.get("schedule", [])
        for i, item in enumerate(items if isinstance(items, list) else []):
            job = item.get("job") if isinstance(item, dict) else None
            if isinstance(job, str) and job and job not in declared:
                self.add(
                    f"schedule[{i}].job",
                    f"'{job}' is not a job type this plugin declares",
                    f'add [[job]] type = "{job}" with its handler'
                    + (f", or schedule one of: {', '.join(sorted(declared))}" if declared else ""),
                )

    def duplicates(self, manifest: Manifest) -> None:
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(manifest.routes):
            key = (r.method, r.path.shape)
            if key in seen:
                self.add(
                    f"route[{i}]", f"{r.method} {r.path.raw} is declared twice", "keep one entry per method and path"
                )
            seen.add(key)
        methods = [g.method for g in manifest.grpc]
        for m in sorted({m for m in methods if methods.count(m) > 1}):
            self.add("grpc", f"{m} is declared twice", "keep one entry per method")


def config_problems(values: dict[str, Any], where: str) -> list[Problem]:
    """What is wrong with a plugin's config (the manifest's [config], or the operator's plugin_config.<name>)."""
    problems = []
    if len(values) > MAX_CONFIG_KEYS:
        problems.append(
            Problem(where, f"has {len(values)} keys, more than {MAX_CONFIG_KEYS}", "keep the fewer, larger settings")
        )
    for key, value in values.items():
        if not CONFIG_KEY_RE.match(key):
            problems.append(Problem(f"{where}.{key}", f"{key!r} is not a valid config key", CONFIG_KEY_FIX))
        elif key.startswith(RESERVED_CONFIG_PREFIX):
            problems.append(
                Problem(
                    f"{where}.{key}",
                    f"keys starting with '{RESERVED_CONFIG_PREFIX}' are the kernel's (what a raw call is told)",
                    "choose another name",
                )
            )
        if isinstance(value, dict):  # TOML reads `db.host = "x"` as a table db holding host
            dotted = f"{key}.{next(iter(value), 'name')}"
            problems.append(
                Problem(f"{where}.{key}", "must be a string, got a table", f'quote a dotted key: "{dotted}" = "..."')
            )
        elif not isinstance(value, str):
            shown = str(value).lower() if isinstance(value, bool) else value
            fix = f'quote it: {key} = "{shown}"' if not isinstance(value, list) else "write one string per key"
            problems.append(Problem(f"{where}.{key}", f"must be a string, got {value!r}", fix))
        elif len(value.encode()) > MAX_CONFIG_VALUE_BYTES:
            problems.append(
                Problem(
                    f"{where}.{key}",
                    f"is {len(value.encode())} bytes, more than {MAX_CONFIG_VALUE_BYTES}",
                    "keep settings short; put large data in the plugin's store",
                )
            )
    return problems


def _has_dates(value: Any) -> bool:
    """TOML has dates and times; JSON (a job's payload) does not."""
    if isinstance(value, datetime.date | datetime.time):
        return True
    if isinstance(value, dict):
        return any(_has_dates(v) for v in value.values())
    return isinstance(value, list) and any(_has_dates(v) for v in value)
