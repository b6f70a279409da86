"""`arcana plugin build` stamps the SDK's host ABI into the embedded manifest when plugin.toml does not set it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arcana.manifest import parse_manifest
from arcana.types import HOST_ABI_VERSION
from arcana_sdk.build import HOST_ABI, BuildError, build_plugin, stamp_host_abi
from arcana_sdk.wasm_sections import MANIFEST_SECTION, read_custom_section

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "plugins"


def test_the_sdk_builds_for_the_abi_the_kernel_speaks() -> None:
    assert HOST_ABI == HOST_ABI_VERSION


@pytest.mark.parametrize(
    ("raw", "stamped"),
    [
        (b'[plugin]\nname = "a"\n', b'[plugin]\nhost_abi = 1\nname = "a"\n'),
        (b'# c\r\n[plugin]  # who\r\nname = "a"\r\n', b'# c\r\n[plugin]  # who\r\nhost_abi = 1\r\nname = "a"\r\n'),
        (b'[limits]\n[ plugin ]\nname = "a"', b'[limits]\n[ plugin ]\nhost_abi = 1\nname = "a"'),
        (b'name = "x"\n[plugin]', b'name = "x"\n[plugin]\nhost_abi = 1\n'),
        (b'plugin.name = "a"\n[limits]\n', b'plugin.host_abi = 1\nplugin.name = "a"\n[limits]\n'),
    ],
)
def test_the_stamp_is_one_line_under_the_plugin_header(raw: bytes, stamped: bytes) -> None:
    assert stamp_host_abi(Path("p"), raw) == stamped.replace(b"host_abi = 1", f"host_abi = {HOST_ABI}".encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'[plugin]\nname = "a"\nhost_abi = 1\n',  # the author's own, even the same value
        b"[plugin]\nhost_abi = 7\n",  # a newer one: the kernel judges it
        b'[plugin]\nhost_abi = "x"\n',  # a wrong one: the kernel reports it
        b"[limits]\nmemory_mb = 1\n",  # no [plugin]: the kernel reports it
    ],
)
def test_a_manifest_that_sets_host_abi_or_has_no_plugin_table_is_kept_verbatim(raw: bytes) -> None:
    assert stamp_host_abi(Path("p"), raw) == raw


def test_an_inline_plugin_table_cannot_be_stamped_and_says_how_to_fix_it() -> None:
    with pytest.raises(BuildError, match=r"write \[plugin\] as a table, or set host_abi = 1 in it"):
        stamp_host_abi(Path("p"), b'plugin = { name = "a", version = "1.0.0" }\n')


def test_a_header_inside_a_string_is_not_taken_for_the_table() -> None:
    raw = b'[plugin]\ndescription = """\n[plugin]\n"""\nname = "a"\n'
    stamped = stamp_host_abi(Path("p"), raw)
    assert stamped == raw.replace(b"[plugin]\n", b"[plugin]\nhost_abi = 1\n", 1)


@pytest.mark.toolchain
def test_a_built_module_carries_the_stamped_manifest_which_the_kernel_reads(tmp_path: Path) -> None:
    src = shutil.copytree(FIXTURES / "slow", tmp_path / "slow")
    source = (src / "plugin.toml").read_bytes()
    assert b"host_abi" not in source
    embedded = read_custom_section(build_plugin(src, tmp_path / "slow.wasm").read_bytes(), MANIFEST_SECTION)
    assert embedded == stamp_host_abi(src, source)
    assert parse_manifest(embedded.decode()).host_abi == HOST_ABI
