"""Typed operator configuration, parsed once at start-up.

Sources, later wins: the dataclass defaults below (``config/default.yaml``
states the same values and a test keeps the two equal), the YAML file given
with ``--config``, then environment variables ``ARCANA_<SECTION>__<KEY>``
(for example ``ARCANA_SERVER__HTTP_PORT=8081``), whose values are read as YAML
scalars. Unknown keys and ill-typed values stop start-up with a message naming
the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from arcana.errors import ConfigError

T = TypeVar("T")
ENV_PREFIX = "ARCANA_"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TlsConfig:
    """Serve TLS when cert_file and key_file are set; with client_ca_file, require client certificates."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("TLS needs both cert_file and key_file")
        if self.client_ca_file and not self.cert_file:
            raise ConfigError("TLS client_ca_file needs cert_file and key_file too")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 9090
    max_body_bytes: int = 1_048_576
    # Seconds to let in-flight requests finish on shutdown.
    shutdown_grace_s: float = 5.0
    grpc_tls: TlsConfig = field(default_factory=TlsConfig)
    http_tls: TlsConfig = field(default_factory=TlsConfig)

    def __post_init__(self) -> None:
        for key in ("http_port", "grpc_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise ConfigError(f"config key 'server.{key}' must be a port 0-65535, got {getattr(self, key)}")


@dataclass(frozen=True)
class PluginsConfig:
    # Relative paths are resolved against the repository root, so that
    # `arcana serve` serves the example plugins wherever it is started.
    dir: str = "plugins"
    watch: bool = True
    # watchfiles groups changes that land within this window into one batch.
    reload_debounce_ms: int = 20


@dataclass(frozen=True)
class ExecutorConfig:
    threads: int = 16
    default_memory_mb: int = 32
    default_timeout_ms: int = 2000
    default_max_concurrency: int = 8
    # Operator maxima: a manifest asking for more is refused at load.
    max_memory_mb: int = 256
    max_timeout_ms: int = 30_000
    max_concurrency: int = 64


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "json"

    def __post_init__(self) -> None:
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"config key 'logging.level' must be debug|info|warning|error, got {self.level!r}")
        if self.format not in ("json", "text"):
            raise ConfigError(f"config key 'logging.format' must be json|text, got {self.format!r}")


@dataclass(frozen=True)
class DatabaseConfig:
    """The kernel's one database: the store's tables and (later) identity's.

    A SQLAlchemy URL: a SQLite file by default (a relative path is resolved
    against the repository root, like ``plugins.dir``), PostgreSQL at scale
    (``postgresql+psycopg://user@host/db``; pass a password through the
    environment, ``ARCANA_DATABASE__URL``, never in a committed file).
    """

    url: str = "sqlite:///.data/arcana.db"
    echo: bool = False
    # Upgrade a SQLite schema when a plugin first needs it; PostgreSQL is
    # upgraded once per deployment with `arcana migrate`.
    auto_migrate: bool = True
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout_s: float = 10.0
    # How long SQLite waits for a competing writer before giving up.
    busy_timeout_ms: int = 5000

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
    private_key_file: str = ""  # PEM; only the active key needs it
    public_key_file: str = ""  # PEM


@dataclass(frozen=True)
class AuthConfig:
    # Dev mode accepts a missing HS256 secret by generating an ephemeral one
    # (tokens then die with the process); production refuses to start.
    dev: bool = True
    algorithm: str = "HS256"
    # The HS256 secret is read from this environment variable, never from a file.
    secret_env: str = "ARCANA_JWT_SECRET"
    keys: list[JwtKeyConfig] = field(default_factory=list)
    active_kid: str = ""
    issuer: str = "arcana"
    audience: str = "arcana"
    access_ttl_s: int = 900
    refresh_ttl_s: int = 1_209_600
    # Argon2id parameters (OWASP's minimum by default); hashes are upgraded on login when these change.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    # Failed logins allowed per window, per account and per client address.
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_window_s: int = 300

    def __post_init__(self) -> None:
        if self.algorithm not in ("HS256", "RS256", "EdDSA"):
            raise ConfigError(f"config key 'auth.algorithm' must be HS256|RS256|EdDSA, got {self.algorithm!r}")
        if self.algorithm != "HS256" and not self.keys:
            raise ConfigError(f"config key 'auth.keys' must list at least one key for {self.algorithm}")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids) or any(not k for k in kids):
            raise ConfigError("config key 'auth.keys': every key needs a distinct, non-empty kid")
        if self.keys and self.active_kid not in kids:
            raise ConfigError(f"config key 'auth.active_kid' must name one of the keys {kids}")


@dataclass(frozen=True)
class ArcanaConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Capability grants: plugin name (or "*" for every plugin) -> capabilities.
    grants: dict[str, list[str]] = field(default_factory=lambda: {"*": ["log"], "notes": ["store"]})
    # One section per host capability, typed by the capability itself
    # (see ``section``), so adding a capability never edits this file.
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where the values came from, for error messages.
    source: str = field(default="the defaults", compare=False)

    def section(self, name: str, cls: type[T]) -> T:
        """The capability section ``capabilities.<name>`` parsed into ``cls`` (a dataclass)."""
        raw = self.capabilities.get(name, {})
        return _build(cls, raw, f"capabilities.{name}.", {"capabilities": self.source})  # type: ignore[no-any-return]

    def plugins_dir(self) -> Path:
        path = Path(self.plugins.dir)
        return path if path.is_absolute() else REPO_ROOT / path

    def granted(self, plugin: str) -> frozenset[str]:
        return frozenset(self.grants.get("*", [])) | frozenset(self.grants.get(plugin, []))


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> ArcanaConfig:
    """Build the config from defaults, an optional YAML file and the environment."""
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        raw = _read_yaml(path)
        origin = {key: str(path) for key in raw}
    env = os.environ if environ is None else environ
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError(f"{name}: section '{section}' is not a mapping in {origin.get(section)}")
            raw[section][key] = yaml.safe_load(value) if value else value
            origin.setdefault(section, f"environment ({name})")
    raw["source"] = str(path) if path is not None else "the defaults"
    return _build(ArcanaConfig, raw, "", origin)


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


def _build(cls: type, raw: Any, prefix: str, origin: dict[str, str]) -> Any:
    where = origin.get(prefix.split(".")[0], "the defaults") if prefix else "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping (in {where})")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            place = origin.get(prefix.split(".")[0] if prefix else key, "the config")
            raise ConfigError(
                f"unknown config key '{prefix}{key}' (in {place}); known keys: {', '.join(sorted(known))}"
            )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _coerce(hints[f.name], raw[f.name], f"{prefix}{f.name}", origin)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str, origin: dict[str, str]) -> Any:
    where = origin.get(key.split(".")[0], "the config")
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".", origin)
    base = typing.get_origin(hint)
    if base is dict:
        key_type, val_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping (in {where})")
        return {_coerce(key_type, k, key, origin): _coerce(val_type, v, f"{key}.{k}", origin) for k, v in value.items()}
    if base is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list (in {where}), got {value!r}")
        return [_coerce(item_type, v, key, origin) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key '{key}' must be {hint.__name__}, got {value!r} (in {where})")
    if hint is int and value < 0:
        raise ConfigError(f"config key '{key}' must not be negative, got {value} (in {where})")
    return value


# Re-exported for tests that compare config/default.yaml with the defaults.
def defaults_as_dict() -> dict[str, Any]:
    values = dataclasses.asdict(ArcanaConfig())
    del values["source"]
    return values
