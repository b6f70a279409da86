"""Capability sections take the types the coming sections need: X | None, Literal, enums, tuples, nested types.

Each is parsed through ``ArcanaConfig.section`` as a capability would, from a
file and from the environment; a bad value is a ConfigError naming the key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from arcana.config import ArcanaConfig, ConfigPath, load_config
from arcana.errors import ConfigError


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    backoff_s: float = 0.5


@dataclass(frozen=True)
class QueueLike:
    """A stand-in for the coming queue/Redis/breaker/tracing sections."""

    url: str | None = None
    limit: int | None = None
    durability: Literal["none", "fsync"] = "none"
    mode: Mode = Mode.FAST
    topics: tuple[str, ...] = ()
    window: tuple[int, float] = (10, 0.5)
    retry: Retry = field(default_factory=Retry)
    fallback: Retry | None = None
    ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    cert: ConfigPath | None = None

    def __post_init__(self) -> None:
        if self.limit == 0:
            raise ConfigError("config key 'capabilities.queue.limit' must not be 0 (omit it for no limit)")


def _section(tmp_path: Path, yaml_text: str = "", environ: dict[str, str] | None = None) -> QueueLike:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    return load_config(path, environ=environ or {}).section("queue", QueueLike)


def _refused(tmp_path: Path, yaml_text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as error:
        _section(tmp_path, yaml_text, environ)
    return str(error.value)


def test_a_missing_section_gives_the_dataclass_defaults() -> None:
    assert ArcanaConfig().section("queue", QueueLike) == QueueLike()


def test_optional_fields_take_a_value_or_null(tmp_path: Path) -> None:
    section = _section(tmp_path, "capabilities:\n  queue: {url: redis://r, limit: null}\n")
    assert section.url == "redis://r" and section.limit is None


def test_optional_field_refuses_the_wrong_type_naming_the_key(tmp_path: Path) -> None:
    message = _refused(tmp_path, "capabilities:\n  queue: {limit: many}\n")
    assert "config key 'capabilities.queue.limit' must be int | null, got 'many' (in " in message
    assert "must be int | null, got True" in _refused(tmp_path, "capabilities:\n  queue: {limit: true}\n")


def test_literal_field_takes_a_listed_value_and_refuses_others_listing_them(tmp_path: Path) -> None:
    assert _section(tmp_path, "capabilities:\n  queue: {durability: fsync}\n").durability == "fsync"
    message = _refused(tmp_path, "capabilities:\n  queue: {durability: always}\n")
    assert "'capabilities.queue.durability' must be one of none|fsync, got 'always'" in message


def test_enum_field_takes_a_member_value_and_refuses_others_listing_them(tmp_path: Path) -> None:
    assert _section(tmp_path, "capabilities:\n  queue: {mode: safe}\n").mode is Mode.SAFE
    message = _refused(tmp_path, "capabilities:\n  queue: {mode: reckless}\n")
    assert "'capabilities.queue.mode' must be one of fast|safe, got 'reckless'" in message


def test_tuple_fields_take_a_yaml_list(tmp_path: Path) -> None:
    section = _section(tmp_path, "capabilities:\n  queue: {topics: [a, b], window: [5, 2]}\n")
    assert section.topics == ("a", "b") and section.window == (5, 2.0)


def test_tuple_fields_refuse_a_wrong_item_or_length_naming_the_key(tmp_path: Path) -> None:
    item = _refused(tmp_path, "capabilities:\n  queue: {topics: [a, 1]}\n")
    assert "'capabilities.queue.topics[1]' must be str, got 1" in item
    length = _refused(tmp_path, "capabilities:\n  queue: {window: [5]}\n")
    assert "'capabilities.queue.window' must be a list of length 2, got [5]" in length
    scalar = _refused(tmp_path, "capabilities:\n  queue: {topics: a}\n")
    assert "'capabilities.queue.topics' must be a list, got 'a'" in scalar


def test_nested_and_optional_dataclasses_are_checked_field_by_field(tmp_path: Path) -> None:
    section = _section(tmp_path, "capabilities:\n  queue: {retry: {attempts: 5}, fallback: {backoff_s: 2}}\n")
    assert section.retry == Retry(attempts=5) and section.fallback == Retry(backoff_s=2.0)
    message = _refused(tmp_path, "capabilities:\n  queue: {fallback: {attempts: x}}\n")
    assert "'capabilities.queue.fallback.attempts' must be int, got 'x'" in message
    unknown = _refused(tmp_path, "capabilities:\n  queue: {fallback: {tries: 1}}\n")
    assert "unknown config key 'capabilities.queue.fallback.tries'" in unknown
    assert "known keys: attempts, backoff_s" in unknown


def test_unknown_capability_key_is_refused_listing_the_known_keys(tmp_path: Path) -> None:
    message = _refused(tmp_path, "capabilities:\n  queue: {urll: x}\n")
    assert (
        "unknown config key 'capabilities.queue.urll' (in " in message
        and "c.yaml); known keys: cert, durability" in message
    )


def test_msgspec_meta_constraints_are_enforced_and_explained(tmp_path: Path) -> None:
    message = _refused(tmp_path, "capabilities:\n  queue: {ratio: 1.5}\n")
    assert "'capabilities.queue.ratio' must be float <= 1.0, got 1.5" in message


def test_post_init_checks_stop_start_up_naming_the_source(tmp_path: Path) -> None:
    message = _refused(tmp_path, "capabilities:\n  queue: {limit: 0}\n")
    assert message.startswith("config key 'capabilities.queue.limit' must not be 0") and "c.yaml)" in message


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("URL", "redis://env", {"url": "redis://env"}),
        ("LIMIT", "~", {"limit": None}),
        ("LIMIT", "7", {"limit": 7}),
        ("DURABILITY", "fsync", {"durability": "fsync"}),
        ("MODE", "safe", {"mode": Mode.SAFE}),
        ("TOPICS", "[x, y]", {"topics": ("x", "y")}),
        ("RETRY", "{attempts: 9}", {"retry": Retry(attempts=9)}),
        ("FALLBACK", "null", {"fallback": None}),
    ],
)
def test_environment_overrides_each_type(tmp_path: Path, name: str, value: str, expected: dict[str, object]) -> None:
    env = {f"ARCANA_CAPABILITIES__QUEUE__{name}": value}
    section = _section(tmp_path, "capabilities:\n  queue: {url: redis://file, fallback: {}}\n", env)
    assert {key: getattr(section, key) for key in expected} == expected


def test_environment_overrides_one_key_and_keeps_the_files_others(tmp_path: Path) -> None:
    env = {"ARCANA_CAPABILITIES__QUEUE__LIMIT": "4"}
    section = _section(tmp_path, "capabilities:\n  queue: {url: redis://file}\n", env)
    assert section.url == "redis://file" and section.limit == 4


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("LIMIT", "lots", "'capabilities.queue.limit' must be int | null, got 'lots'"),
        ("DURABILITY", "sometimes", "'capabilities.queue.durability' must be one of none|fsync, got 'sometimes'"),
        ("MODE", "1", "'capabilities.queue.mode' must be one of fast|safe, got 1"),
        ("TOPICS", "x", "'capabilities.queue.topics' must be a list, got 'x'"),
        ("RETRY", "{tries: 1}", "unknown config key 'capabilities.queue.retry.tries'"),
    ],
)
def test_bad_environment_values_name_the_key_and_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    variable = f"ARCANA_CAPABILITIES__QUEUE__{name}"
    refused = _refused(tmp_path, "", {variable: value})
    assert message in refused and f"(in environment variable {variable})" in refused
