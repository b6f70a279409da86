"""`arcana plugin check` on a real module (plugins/notes on the Extism engine): without operator config the
plugin is judged against its own requests; with one, against its grants; each distinct fix is said once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arcana import cli
from arcana.check import AS_REQUESTED, check_plugin
from arcana.config import load_config

NOTES = Path(__file__).resolve().parents[2] / "plugins" / "notes"


def keeper(folder: Path, drop: str = "") -> Path:
    """plugins/notes under the name 'keeper' (no default grant names it), its manifest without line ``drop``."""
    manifest = (NOTES / "plugin.toml").read_text().replace('name = "notes"', 'name = "keeper"')
    if drop:
        manifest = "\n".join(line for line in manifest.splitlines() if line.strip() != drop)
    (folder / "keeper.toml").write_text(manifest)
    return Path(shutil.copyfile(NOTES / "notes.wasm", folder / "keeper.wasm"))


def test_without_operator_config_a_store_plugin_passes_on_its_own_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_plugin(keeper(tmp_path), load_config(None, environ={}), own_grants=True) == 0
    out = capsys.readouterr().out
    assert f"capability store: {AS_REQUESTED}" in out and f"capability events: {AS_REQUESTED}" in out
    # What the server will need that its defaults do not give ("*" gets log).
    assert "the server's config must grant: grants: {keeper: [events, store]}" in out


def test_without_operator_config_an_import_the_manifest_does_not_request_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_plugin(keeper(tmp_path, drop="store = true"), load_config(None, environ={}), own_grants=True) == 1
    err = capsys.readouterr().err
    assert "import extism:host/user::store_get: needs capability 'store', which the manifest does not request" in err
    assert err.count("fix: add store = true under [capabilities]") == 1


def test_with_operator_config_its_grants_decide_and_each_distinct_fix_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_plugin(keeper(tmp_path), load_config(None, environ={})) == 1
    err = capsys.readouterr().err
    store_imports = [line for line in err.splitlines() if "needs capability 'store'" in line]
    assert len(store_imports) == 4  # store_get, store_put, store_query, store_delete: each problem is listed
    fixes = [line.strip() for line in err.splitlines() if line.strip().startswith("fix:")]
    assert len(fixes) == len(set(fixes)) and len(fixes) == 4  # events, store: as a request and as an import
    assert "fix: grant it in the config (grants: {keeper: [store]}) or remove the import" in fixes


def test_the_cli_judges_against_own_requests_only_when_no_config_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("ARCANA_GRANTS", "ARCANA_GRANTS__KEEPER"):
        monkeypatch.delenv(key, raising=False)
    wasm = keeper(tmp_path)
    assert cli.main(["plugin", "check", str(wasm)]) == 0
    assert AS_REQUESTED in capsys.readouterr().out
    (tmp_path / "operator.yaml").write_text("grants:\n  keeper: [log, store, events]\n")
    assert cli.main(["plugin", "check", str(wasm), "--config", str(tmp_path / "operator.yaml")]) == 0
    out = capsys.readouterr().out
    assert "capability store: granted\n" in out and AS_REQUESTED not in out
    (tmp_path / "arcana.yaml").write_text("grants:\n  '*': [log]\n")  # found as serve would find it
    assert cli.main(["plugin", "check", str(wasm)]) == 1
