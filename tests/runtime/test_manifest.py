"""The manifest: valid ones parse into frozen records; invalid ones list every problem (golden files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arcana.manifest import NAME_FIX, ManifestInvalid, parse_manifest

GOLDEN = Path(__file__).parent / "manifests"

FULL = """
[plugin]
name = "notes"
version = "1.2.0"

[capabilities]
store = true
events = ["note.*"]

[limits]
memory_mb = 16
timeout_ms = 500

[[route]]
method = "get"
path = "/api/v1/notes/{id}"
handler = "get_note"
roles = ["user"]
rate_limit = "100/minute"

[[route]]
method = "POST"
path = "/api/v1/notes/raw"
handler = "raw"
public = true
abi = "raw"
content_type = "text/plain"

[[grpc]]
method = "notes.v1.NoteService/GetNote"
handler = "get_note"

[[job]]
type = "notes.reindex"
handler = "reindex"

[[subscribe]]
topic = "user.*"
handler = "on_user_event"
"""


def test_full_manifest_parses_every_section() -> None:
    m = parse_manifest(FULL)
    assert (m.name, m.version) == ("notes", "1.2.0")
    assert m.requested_capabilities() == {"store", "events"}
    assert m.capabilities["events"] == ("note.*",)
    assert (m.limits.memory_mb, m.limits.timeout_ms, m.limits.max_concurrency) == (16, 500, None)
    get, raw = m.routes
    assert get.method == "GET" and get.path.raw == "/api/v1/notes/{id}" and get.roles == ("user",)
    assert raw.abi == "raw" and raw.public and raw.content_type == "text/plain"
    assert m.grpc[0].method == "notes.v1.NoteService/GetNote"
    assert m.jobs[0].type == "notes.reindex" and m.subscriptions[0].topic == "user.*"
    assert m.handlers() == {"get_note", "raw", "reindex", "on_user_event"}


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.toml")))
def test_invalid_manifest_reports_each_problem_with_its_fix(case: str) -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest((GOLDEN / f"{case}.toml").read_text())
    expected = (GOLDEN / f"{case}.expected").read_text().strip().splitlines()
    assert [str(p) for p in info.value.problems] == expected


SCHEDULES = """
[plugin]
name = "notes"
version = "1.0.0"

[[job]]
type = "notes.reindex"
handler = "reindex"

[[schedule]]
cron = "*/5  9-17 * * MON-FRI"
job = "notes.reindex"
payload = { full = true, shards = [1, 2] }
priority = "low"

[[schedule]]
every = "30s"
job = "notes.reindex"
"""


def test_schedules_parse_into_timings_with_payload_and_priority() -> None:
    cron, every = parse_manifest(SCHEDULES).schedules
    assert (cron.job, cron.expression, cron.priority) == ("notes.reindex", "*/5 9-17 * * MON-FRI", "low")
    assert cron.payload == {"full": True, "shards": [1, 2]}
    assert cron.timing.next_after(0) == 9 * 3600  # 1970-01-01 was a Thursday
    assert (every.expression, every.payload, every.priority) == ("30s", None, "normal")
    assert every.timing.next_after(29.5) == 30


def test_a_manifest_without_schedules_has_none() -> None:
    assert parse_manifest(FULL).schedules == ()


def test_schedule_must_be_an_array_of_tables() -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest('schedule = "0 3 * * *"\n' + SCHEDULES.split("[[schedule]]")[0])
    assert [str(p) for p in info.value.problems] == [
        "schedule: must be an array of tables (fix: write each entry as [[schedule]])"
    ]


def test_plugin_check_lists_schedules_with_their_next_tick_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from arcana.check import check_plugin
    from arcana.config import load_config

    hello = Path(__file__).resolve().parents[2] / "plugins" / "hello"
    shutil.copyfile(hello / "hello.wasm", tmp_path / "hello.wasm")
    base = (hello / "plugin.toml").read_text() + '\n[[job]]\ntype = "hello.tidy"\nhandler = "hello"\n'
    config = load_config(None, environ={})
    (tmp_path / "hello.toml").write_text(base + '[[schedule]]\ncron = "0 3 * * *"\njob = "hello.tidy"\n')
    assert check_plugin(tmp_path / "hello.wasm", config) == 0
    assert "schedule 0 3 * * * -> job hello.tidy (normal; next " in capsys.readouterr().out
    (tmp_path / "hello.toml").write_text(base + '[[schedule]]\ncron = "0 3 * *"\njob = "hello.tidy"\n')
    assert check_plugin(tmp_path / "hello.wasm", config) == 1
    assert "schedule[0].cron: '0 3 * *' has 4 fields, not 5" in capsys.readouterr().err


def _named(name: str) -> str:
    return f'[plugin]\nname = "{name}"\nversion = "1.0.0"\n'


@pytest.mark.parametrize("name", ["count_vowels", "a", "notes-v2", "my_app-2", "x_", "a" * 63])
def test_plugin_names_take_lowercase_letters_digits_dashes_and_underscores(name: str) -> None:
    assert parse_manifest(_named(name)).name == name


@pytest.mark.parametrize("name", ["Count_vowels", "_vowels", "9lives", "count__vowels", "a.b", "a b", "a" * 64, ""])
def test_other_plugin_names_are_refused_saying_what_a_name_may_hold(name: str) -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse_manifest(_named(name))
    (problem,) = info.value.problems
    assert (problem.field, problem.message) == ("plugin.name", f"'{name}' is not a valid name")
    assert problem.fix == NAME_FIX


def test_the_readmes_plain_extism_manifest_is_valid_and_raw() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Drop a plugin in", 1)[1]
    snippet = section.split("```toml\n", 1)[1].split("```", 1)[0]
    m = parse_manifest(snippet)
    assert m.name == "count_vowels" and [r.abi for r in m.routes] == ["raw"]
