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
import enum
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import msgspec
import yaml
from sqlalchemy.engine import make_url

from arcana.errors import ConfigError

T = TypeVar("T")
ENV_PREFIX = "ARCANA_"
HOME_ENV = "ARCANA_HOME"
# Going away: only arcana.edge.grpc still imports it (for the kernel's protos),
# and that is being replaced. Config paths never resolve against it.
REPO_ROOT = Path(__file__).resolve().parent.parent

# A key as a path through the config: section, field names, list indices.
Key = tuple[str | int, ...]


@dataclass(frozen=True)
class PathRule:
    """``Annotated`` metadata: this str field names a file; ``load_config`` makes it absolute."""

    resolve: Callable[[str, Path], str]


def _absolute_path(path: str, base: Path) -> str:
    # Lexical normalisation, not Path.resolve(): the operator's folder as
    # written, even when it is reached through a symlink.
    return os.path.normpath(base / path)


def _absolute_sqlite_url(url: str, base: Path) -> str:
    parsed = make_url(url)
    path = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return url
    if Path(path).is_absolute():
        return url
    return parsed.set(database=_absolute_path(path, base)).render_as_string(hide_password=False)


NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
# A file or folder: relative to the config file that names it, else to the base directory.
ConfigPath = Annotated[str, PathRule(_absolute_path)]
# A SQLAlchemy URL whose SQLite file path follows the ConfigPath rule.
DatabaseUrl = Annotated[str, PathRule(_absolute_sqlite_url)]


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where relative paths from the defaults and the environment start: ``$ARCANA_HOME``, else the working dir."""
    env = os.environ if environ is None else environ
    return Path(os.path.abspath(env.get(HOME_ENV) or os.curdir))


@dataclass(frozen=True)
class Origin:
    """One source of values: how messages name it, and the folder its relative paths start from."""

    label: str
    base: Path


@dataclass(frozen=True)
class Origins:
    """Which source wrote each key: messages name it, and relative paths resolve against its folder."""

    defaults: Origin
    written: Mapping[Key, Origin] = field(default_factory=dict)

    @classmethod
    def of_defaults(cls) -> Origins:
        return cls(Origin("the defaults", base_dir()))

    def of(self, key: Key) -> Origin:
        """The source of the value at ``key``: whoever wrote its longest written prefix."""
        for end in range(len(key), 0, -1):
            if (origin := self.written.get(key[:end])) is not None:
                return origin
        return self.defaults

    def within(self, key: Key) -> str:
        """The sources of everything at or under ``key``, for a message about all of it."""
        over = [self.written[key[:end]] for end in range(len(key), 0, -1) if key[:end] in self.written][:1]
        under = [origin for k, origin in self.written.items() if len(k) > len(key) and k[: len(key)] == key]
        labels = [origin.label for origin in over + under] or [self.defaults.label]
        return " and ".join(dict.fromkeys(labels))


class _PlacedConfigError(ConfigError, ValueError):
    """For a check that cannot name its own key: msgspec reports a ValueError with where it happened."""


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
            raise _PlacedConfigError("TLS needs both cert_file and key_file")
        if self.client_ca_file and not self.cert_file:
            raise _PlacedConfigError("TLS client_ca_file needs cert_file and key_file too")


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

    def __post_init__(self) -> None:
        # Checked here rather than in the type so that the command line's
        # --http-port (applied with dataclasses.replace) is checked too.
        for key in ("http_port", "grpc_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise ConfigError(f"config key 'server.{key}' must be a port 0-65535, got {getattr(self, key)}")


@dataclass(frozen=True)
class PluginsConfig:
    # Relative to the config file that sets it, else to $ARCANA_HOME or the
    # working directory; `arcana serve --plugins DIR` passes an absolute path.
    dir: ConfigPath = "plugins"
    watch: bool = True
    # watchfiles groups changes that land within this window into one batch.
    reload_debounce_ms: NonNegativeInt = 20


@dataclass(frozen=True)
class ExecutorConfig:
    threads: NonNegativeInt = 16
    default_memory_mb: NonNegativeInt = 32
    default_timeout_ms: NonNegativeInt = 2000
    default_max_concurrency: NonNegativeInt = 8
    # Operator maxima: a manifest asking for more is refused at load.
    max_memory_mb: NonNegativeInt = 256
    max_timeout_ms: NonNegativeInt = 30_000
    max_concurrency: NonNegativeInt = 64


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
    # How long SQLite waits for a competing writer before giving up.
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
    # Failed logins allowed per window, per account and per client address.
    login_failures_per_account: NonNegativeInt = 5
    login_failures_per_address: NonNegativeInt = 20
    login_window_s: NonNegativeInt = 300

    def __post_init__(self) -> None:
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
        parsed = _convert(cls, self.capabilities.get(name, {}), key, self.origins)
        return cast(T, _resolve_paths(parsed, cls, key, self.origins))

    def plugins_dir(self) -> Path:
        """The plugin folder: absolute once loaded; a hand-built config resolves against the base directory."""
        return Path(_absolute_path(self.plugins.dir, self.origins.defaults.base))

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
        written.update({key: in_file for key in _keys_set(raw)})
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


def _keys_set(data: Mapping[Any, Any], prefix: Key = ()) -> Iterator[Key]:
    """The keys a file sets a value at: not a mapping it only opens, or the mapping's unset keys would be the file's."""
    for name, value in data.items():
        key = (*prefix, str(name))
        if isinstance(value, dict) and value:
            yield from _keys_set(value, key)
        else:
            yield key


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
                raise ConfigError(f"{name}: config key '{_dotted(key[: depth + 1])}' is not a mapping (in {where})")
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
    hints = _field_hints(ArcanaConfig)
    sections = [name for name in hints if name not in _BOOKKEEPING]
    for name in raw:
        if name not in sections:
            raise _unknown_key((str(name),), sections, origins)
    converted = {name: _convert(hints[name], value, (name,), origins) for name, value in raw.items()}
    config = ArcanaConfig(**converted, source=source, origins=origins)
    # Every section, not only those in raw: the defaults' paths are relative too.
    resolved = {name: _resolve_paths(getattr(config, name), hints[name], (name,), origins) for name in sections}
    return dataclasses.replace(config, **resolved)


def _convert(hint: Any, value: Any, key: Key, origins: Origins) -> Any:
    """``value`` as ``hint``, strictly; a failure names the key, what it must be, the value and its source."""
    _refuse_unknown_keys(hint, value, key, origins)
    try:
        return msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), hint, value, key, origins) from exc
    except ConfigError as exc:
        # A __post_init__ check: it says what is wrong; add where the values came from.
        raise ConfigError(f"{exc} (in {origins.within(key)})") from exc


def _refuse_unknown_keys(hint: Any, value: Any, key: Key, origins: Origins) -> None:
    """msgspec ignores unknown fields of a dataclass; in a config they are typos and must stop start-up."""
    hint = _unannotated(hint)
    base, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = _field_hints(cast(type, hint))
        for name, item in value.items():
            if name not in hints:
                raise _unknown_key((*key, str(name)), list(hints), origins)
            _refuse_unknown_keys(hints[name], item, (*key, name), origins)
    elif base in (list, tuple) and isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_unknown_keys(_item_hint(hint, index), item, (*key, index), origins)
    elif base is dict and isinstance(value, dict):
        for name, item in value.items():
            _refuse_unknown_keys(args[1], item, (*key, name), origins)
    elif _is_union(hint):
        for arm in args:
            _refuse_unknown_keys(arm, value, key, origins)


def _unknown_key(key: Key, known: list[str], origins: Origins) -> ConfigError:
    return ConfigError(
        f"unknown config key '{_dotted(key)}' (in {origins.within(key)}); known keys: {', '.join(sorted(known))}"
    )


# msgspec's messages end with where the error is: " - at `$.server.http_port`",
# or " - at `key` in `$.grants`" when a mapping's key (not its value) is wrong.
_AT = re.compile(r"^(?P<message>.*) - at (?:(?P<is_key>`key` in )?)`(?P<path>\$[^`]*)`$", re.DOTALL)
_STEP = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<index>\d+)\]|(?P<entry>\[\.\.\.\])")
_MISSING = object()
# msgspec names JSON types; the operator writes YAML.
_TYPE_WORDS = {"array": "a list", "object": "a mapping"}


def _explain(text: str, hint: Any, value: Any, key: Key, origins: Origins) -> ConfigError:
    """A ConfigError for msgspec's ``text``, naming the full key, the expectation, the value and its source."""
    found = _AT.match(text)
    message, path, is_key = (found["message"], found["path"], bool(found["is_key"])) if found else (text, "$", False)
    suffix, hint, value = _locate(hint, value, path)
    full = (*key, *suffix)
    if is_key and isinstance(value, dict):
        bad = [k for k in value if _fails(k, typing.get_args(_unannotated(hint))[0])]
        expected, value = f"have keys that are {_expected(message)}", bad[0] if bad else _MISSING
    elif (allowed := _allowed_values(hint)) is not None:
        # Both "Invalid enum value" and a wrong type: the listed values say more.
        expected = f"be one of {'|'.join(allowed)}"
    elif message.startswith("Expected "):
        expected = f"be {_expected(message)}"
    else:  # a ValueError from a __post_init__, a missing required field, ...
        return ConfigError(f"config key '{_dotted(full)}': {message} (in {origins.within(full)})")
    got = "" if value is _MISSING else f", got {value!r}"
    return ConfigError(f"config key '{_dotted(full)}' must {expected}{got} (in {origins.within(full)})")


def _expected(message: str) -> str:
    """'Expected `array` of length 2, got 1' -> 'a list of length 2'."""
    wanted = re.sub(r", got .*$", "", message.removeprefix("Expected "), flags=re.DOTALL)

    def words(match: re.Match[str]) -> str:
        return " | ".join(_TYPE_WORDS.get(word, word) for word in match[1].split(" | "))

    return re.sub(r"`([^`]*)`", words, wanted)


def _locate(hint: Any, value: Any, path: str) -> tuple[Key, Any, Any]:
    """Follow msgspec's path through ``value``: the key suffix, and the type and value found there.

    msgspec writes a mapping's entry as ``[...]``; the entry is found by
    converting each one alone, the first that fails being the one it meant.
    """
    suffix: list[str | int] = []
    steps = list(_STEP.finditer(path))
    while steps:
        step = steps.pop(0)
        if step["entry"] is not None:
            item_hint = _child_hint(hint, None)
            failure = _first_failing_entry(value, item_hint) if isinstance(value, dict) else None
            if failure is None:
                return tuple(suffix), Any, _MISSING
            name, inner = failure
            suffix.append(name)
            hint, value = item_hint, value[name]
            steps = list(_STEP.finditer(inner))
            continue
        part: str | int = step["name"] if step["name"] is not None else int(step["index"])
        suffix.append(part)
        hint = _child_hint(hint, part)
        value = _child_value(value, part)
    return tuple(suffix), hint, value


def _first_failing_entry(value: dict[Any, Any], item_hint: Any) -> tuple[Any, str] | None:
    for name, item in value.items():
        try:
            msgspec.convert(item, item_hint, strict=True)
        except msgspec.ValidationError as exc:
            found = _AT.match(str(exc))
            return name, found["path"] if found else "$"
    return None


def _fails(value: Any, hint: Any) -> bool:
    try:
        msgspec.convert(value, hint, strict=True)
    except (msgspec.ValidationError, ConfigError):
        return True
    return False


def _child_value(value: Any, part: str | int) -> Any:
    if isinstance(value, dict) and part in value:
        return value[part]
    if isinstance(value, list) and isinstance(part, int) and part < len(value):
        return value[part]
    return _MISSING


def _child_hint(hint: Any, part: str | int | None) -> Any:
    """The type of ``hint``'s field or item ``part``, or of its mapping entries for None (Any when it does not say)."""
    hint = _unannotated(hint)
    if _is_union(hint):
        arms = [arm for arm in typing.get_args(hint) if _child_hint(arm, part) is not Any]
        return _child_hint(arms[0], part) if arms else Any
    base, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(part, str):
        return _field_hints(cast(type, hint)).get(part, Any)
    if base in (list, tuple) and isinstance(part, int):
        return _item_hint(hint, part)
    if base is dict:
        return args[1]
    return Any


def _item_hint(hint: Any, index: int) -> Any:
    """The type of item ``index`` of ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return args[index] if index < len(args) else Any
    return args[0] if args else Any


def _allowed_values(hint: Any) -> list[str] | None:
    """The values a Literal or an enum (or a union of them and None) allows, as written in YAML; else None."""
    hint = _unannotated(hint)
    if _is_union(hint):
        arms = [_allowed_values(arm) for arm in typing.get_args(hint)]
        return None if any(arm is None for arm in arms) else [value for arm in arms for value in arm or []]
    if typing.get_origin(hint) is Literal:
        return [str(value) for value in typing.get_args(hint)]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [str(member.value) for member in hint]
    return ["null"] if hint is type(None) else None


def _resolve_paths(value: Any, hint: Any, key: Key, origins: Origins) -> Any:
    """``value`` with every ``PathRule`` field made absolute against the folder of the source that wrote it."""
    rule = _path_rule(hint)
    if rule is not None:
        return rule.resolve(value, origins.of(key).base) if isinstance(value, str) and value else value
    hint = _unannotated(hint)
    base, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for name, field_hint in _field_hints(type(value)).items():
            old = getattr(value, name)
            if (new := _resolve_paths(old, field_hint, (*key, name), origins)) != old:
                changed[name] = new
        return dataclasses.replace(value, **changed) if changed else value
    if base in (list, tuple) and isinstance(value, list | tuple):
        items = [_resolve_paths(item, _item_hint(hint, i), (*key, i), origins) for i, item in enumerate(value)]
        return type(value)(items)
    if base is dict and isinstance(value, dict):
        return {name: _resolve_paths(item, args[1], (*key, name), origins) for name, item in value.items()}
    if _is_union(hint):
        for arm in args:
            runtime = typing.get_origin(_unannotated(arm)) or _unannotated(arm)
            if isinstance(runtime, type) and isinstance(value, runtime):
                return _resolve_paths(value, arm, key, origins)
    return value


def _path_rule(hint: Any) -> PathRule | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((meta for meta in hint.__metadata__ if isinstance(meta, PathRule)), None)


def _unannotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _field_hints(cls: type) -> dict[str, Any]:
    """The init fields of a dataclass and their resolved types, Annotated metadata kept (msgspec's Meta, PathRule)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _dotted(key: Key) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in key).lstrip(".")


# Re-exported for tests that compare config/default.yaml with the defaults.
def defaults_as_dict() -> dict[str, Any]:
    values = dataclasses.asdict(ArcanaConfig())
    for name in _BOOKKEEPING:
        del values[name]
    return values
