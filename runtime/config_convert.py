"""Strict conversion of raw configuration values into typed sections.

The machinery behind ``arcana.config``: which source wrote each key
(``Origins``), msgspec's strict conversion with messages that name the dotted
key, what it must be, the value and its source, unknown keys refused with the
known ones listed, and the path rule (``ConfigPath``, ``DatabaseUrl``):
relative paths become absolute against the folder of the file that wrote
them, else against the base directory (``$ARCANA_HOME`` or the working
directory).
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
from typing import Annotated, Any, Literal, cast

import msgspec
from sqlalchemy.engine import make_url

from arcana.errors import ConfigError

HOME_ENV = "ARCANA_HOME"

# A key as a path through the config: section, field names, list indices.
Key = tuple[str | int, ...]


@dataclass(frozen=True)
class PathRule:
    """``Annotated`` metadata: this str field names a file; ``load_config`` makes it absolute."""

    resolve: Callable[[str, Path], str]


def absolute_path(path: str, base: Path) -> str:
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
    return parsed.set(database=absolute_path(path, base)).render_as_string(hide_password=False)


NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
# A file or folder: relative to the config file that names it, else to the base directory.
ConfigPath = Annotated[str, PathRule(absolute_path)]
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


class PlacedConfigError(ConfigError, ValueError):
    """For a check that cannot name its own key: msgspec reports a ValueError with where it happened."""


def keys_set(data: Mapping[Any, Any], prefix: Key = ()) -> Iterator[Key]:
    """The keys a file sets a value at: not a mapping it only opens, or the mapping's unset keys would be the file's."""
    for name, value in data.items():
        key = (*prefix, str(name))
        if isinstance(value, dict) and value:
            yield from keys_set(value, key)
        else:
            yield key


def convert(hint: Any, value: Any, key: Key, origins: Origins) -> Any:
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
        hints = field_hints(cast(type, hint))
        for name, item in value.items():
            if name not in hints:
                raise unknown_key((*key, str(name)), list(hints), origins)
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


def unknown_key(key: Key, known: list[str], origins: Origins) -> ConfigError:
    return ConfigError(
        f"unknown config key '{dotted(key)}' (in {origins.within(key)}); known keys: {', '.join(sorted(known))}"
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
        return ConfigError(f"config key '{dotted(full)}': {message} (in {origins.within(full)})")
    got = "" if value is _MISSING else f", got {value!r}"
    return ConfigError(f"config key '{dotted(full)}' must {expected}{got} (in {origins.within(full)})")


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
        return field_hints(cast(type, hint)).get(part, Any)
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


def resolve_paths(value: Any, hint: Any, key: Key, origins: Origins) -> Any:
    """``value`` with every ``PathRule`` field made absolute against the folder of the source that wrote it."""
    rule = _path_rule(hint)
    if rule is not None:
        return rule.resolve(value, origins.of(key).base) if isinstance(value, str) and value else value
    hint = _unannotated(hint)
    base, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for name, field_hint in field_hints(type(value)).items():
            old = getattr(value, name)
            if (new := resolve_paths(old, field_hint, (*key, name), origins)) != old:
                changed[name] = new
        return dataclasses.replace(value, **changed) if changed else value
    if base in (list, tuple) and isinstance(value, list | tuple):
        items = [resolve_paths(item, _item_hint(hint, i), (*key, i), origins) for i, item in enumerate(value)]
        return type(value)(items)
    if base is dict and isinstance(value, dict):
        return {name: resolve_paths(item, args[1], (*key, name), origins) for name, item in value.items()}
    if _is_union(hint):
        for arm in args:
            runtime = typing.get_origin(_unannotated(arm)) or _unannotated(arm)
            if isinstance(runtime, type) and isinstance(value, runtime):
                return resolve_paths(value, arm, key, origins)
    return value


def _path_rule(hint: Any) -> PathRule | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((meta for meta in hint.__metadata__ if isinstance(meta, PathRule)), None)


def _unannotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def field_hints(cls: type) -> dict[str, Any]:
    """The init fields of a dataclass and their resolved types, Annotated metadata kept (msgspec's Meta, PathRule)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def dotted(key: Key) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in key).lstrip(".")
