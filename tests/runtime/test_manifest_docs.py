"""docs/manifest.md cannot drift from the validator: its tables against the key sets, its examples parsed."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

from arcana import manifest
from arcana.config import load_config
from arcana_host.catalog import KNOWN_GRANTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "manifest.md"
# A doc heading -> the validator's table it documents ("manifest": the top level).
HEADINGS = {
    "Top level": "manifest",
    "`[plugin]`": "plugin",
    "`[limits]`": "limits",
    "`[breaker]`": "breaker",
    "`[[route]]`": "route",
    "`[[grpc]]`": "grpc",
    "`[[job]]`": "job",
    "`[[subscribe]]`": "subscribe",
    "`[[schedule]]`": "schedule",
}


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text up to the next one."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def first_column(section: str) -> list[str]:
    """The backticked name in the first column of each table row."""
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)


def toml_examples(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.M | re.S)


TEXT = DOC.read_text()
SECTIONS = sections(TEXT)


def test_every_validator_table_has_a_section() -> None:
    assert sorted(HEADINGS.values()) == sorted(manifest.TABLE_KEYS)
    assert set(HEADINGS) | {"`[capabilities]`"} <= set(SECTIONS)


@pytest.mark.parametrize("heading", sorted(HEADINGS))
def test_the_documented_fields_are_the_accepted_ones(heading: str) -> None:
    documented = first_column(SECTIONS[heading])
    assert len(documented) == len(set(documented)), f"{heading}: a field is documented twice"
    assert set(documented) == manifest.TABLE_KEYS[HEADINGS[heading]], heading


def test_the_documented_capabilities_are_the_known_grants() -> None:
    assert set(first_column(SECTIONS["`[capabilities]`"])) == KNOWN_GRANTS


def test_a_field_the_docs_do_not_list_is_refused() -> None:
    with pytest.raises(manifest.ManifestInvalid) as refused:
        manifest.parse_manifest('[plugin]\nname = "a"\nversion = "1.0.0"\ncolour = "red"\n')
    assert [p.field for p in refused.value.problems] == ["plugin.colour"]


def _config_value(key: str) -> Any:
    return functools.reduce(getattr, key.split("."), load_config(None, environ={}))


def test_the_config_keys_the_docs_name_exist_with_the_values_they_give() -> None:
    named = re.findall(r"`((?:executor|resilience)\.[a-z_.]+)` \(([\d.]+)\)", TEXT)
    assert len(named) >= 9
    for key, value in named:
        assert _config_value(key) == float(value), key


def test_the_ceilings_table_names_each_ceiling_the_loader_applies_with_its_default() -> None:
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([\d.]+) \|", SECTIONS["Operator ceilings (config)"], flags=re.M)
    assert {key for key, _ in rows} == {
        "executor.max_memory_mb",
        "executor.max_timeout_ms",
        "executor.max_concurrency",
        "resilience.max_failure_threshold",
        "resilience.max_cool_down_s",
    }
    for key, value in rows:
        assert _config_value(key) == float(value), key


EXAMPLES = toml_examples(TEXT)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_each_example_is_a_valid_manifest(example: str) -> None:
    parsed = manifest.parse_manifest(example)
    assert parsed.name and parsed.version
