"""The manifest's [config]: string settings within bounds, the kernel's arcana.* names kept out; the docs agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arcana.errors import Problem
from arcana.manifest import (
    MAX_CONFIG_KEYS,
    MAX_CONFIG_VALUE_BYTES,
    ManifestInvalid,
    config_problems,
    parse_manifest,
)

HEAD = '[plugin]\nname = "greeter"\nversion = "1.0.0"\n\n[config]\n'
DOC = (Path(__file__).resolve().parents[2] / "docs" / "manifest.md").read_text()


def test_config_keys_map_to_their_string_values_dotted_keys_quoted() -> None:
    m = parse_manifest(HEAD + 'greeting = "hello"\n"upstream.url" = "https://x"\n_flag = ""\n')
    assert m.config == {"greeting": "hello", "upstream.url": "https://x", "_flag": ""}


def test_a_manifest_without_config_has_none() -> None:
    assert parse_manifest(HEAD.removesuffix("\n[config]\n")).config == {}


def test_a_value_may_be_as_long_as_the_bound_and_no_longer() -> None:
    assert parse_manifest(HEAD + f'v = "{"é" * (MAX_CONFIG_VALUE_BYTES // 2)}"\n').config  # bytes, not characters
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(HEAD + f'v = "{"x" * MAX_CONFIG_VALUE_BYTES}y"\n')
    assert [str(p) for p in refused.value.problems] == [
        f"config.v: is {MAX_CONFIG_VALUE_BYTES + 1} bytes, more than {MAX_CONFIG_VALUE_BYTES}"
        " (fix: keep settings short; put large data in the plugin's store)"
    ]


def test_more_keys_than_the_bound_are_refused_once() -> None:
    lines = [f'k{i} = "v"\n' for i in range(MAX_CONFIG_KEYS + 1)]
    assert len(parse_manifest(HEAD + "".join(lines[:-1])).config) == MAX_CONFIG_KEYS
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(HEAD + "".join(lines))
    assert refused.value.problems == [
        Problem(
            "config", f"has {MAX_CONFIG_KEYS + 1} keys, more than {MAX_CONFIG_KEYS}", "keep the fewer, larger settings"
        )
    ]


def test_a_key_may_not_take_the_kernels_prefix_whatever_follows() -> None:
    for key in ("arcana.method", "arcana.param.id", "arcana.x"):
        (problem,) = config_problems({key: "v"}, "config")
        assert problem.field == f"config.{key}" and "the kernel's" in problem.message
    assert config_problems({"arcana": "v", "arcanaX": "v"}, "config") == []  # only the dotted prefix is kept


def test_the_docs_state_the_bounds_the_validator_applies() -> None:
    section = DOC.split("## `[config]`", 1)[1].split("\n## ", 1)[0]
    assert f"at most {MAX_CONFIG_VALUE_BYTES} bytes" in section
    assert f"At most {MAX_CONFIG_KEYS} keys" in section
    assert "at most 128 characters" in section and re.search(r"starting with `arcana\.` are refused", section)
