"""A plain Extism module (no Arcana section, a sidecar manifest) over real HTTP: it reads its request and its
settings through Extism's config_get, the operator's plugin_config over the sidecar's [config]."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from arcana_sdk.wasm_sections import MANIFEST_SECTION, read_custom_section, remove_custom_sections
from conftest import FIXTURES, build_cached
from e2e.server import ArcanaServer, mint

SIDECAR = """[plugin]
name = "greeter"
version = "2.0.0"

[config]
greeting = "hi"
colour = "blue"

[[route]]
method = "POST"
path = "/greet/{name}"
handler = "probe"
public = true
abi = "raw"
content_type = "text/plain"

[[route]]
method = "POST"
path = "/greet-signed-in/{name}"
handler = "probe"
abi = "raw"
content_type = "text/plain"
"""


def read(response: httpx.Response) -> dict[str, str | None]:
    """The module's answer: ``key=value`` for each key it found, ``key!`` for each it did not."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain"
    found: dict[str, str | None] = {}
    for line in response.text.splitlines():
        key, eq, value = line.partition("=")
        found[key.removesuffix("!")] = value if eq else None
    return found


def test_a_plain_extism_module_with_a_sidecar_reads_its_request_and_config_over_http(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    plain = remove_custom_sections(build_cached(FIXTURES / "rawconfig").read_bytes(), MANIFEST_SECTION)
    assert read_custom_section(plain, MANIFEST_SECTION) is None  # nothing of Arcana's left in the module
    (folder / "greeter.wasm").write_bytes(plain)
    (folder / "greeter.toml").write_text(SIDECAR)
    server = start_server(folder, {"plugin_config": {"greeter": {"colour": "red"}}})

    keys = "arcana.method\narcana.route\narcana.param.name\narcana.query.tag\narcana.principal.sub\ngreeting\ncolour\n"
    signed_in = {"authorization": f"Bearer {mint('u-e2e', ['user'])}", "x-request-id": "rid-e2e-1"}
    first = httpx.post(f"{server.url}/greet-signed-in/ada?tag=a&tag=b", content=keys, headers=signed_in)
    assert read(first) == {
        "arcana.method": "POST",
        "arcana.route": "/greet-signed-in/{name}",
        "arcana.param.name": "ada",
        "arcana.query.tag": "a",
        "arcana.principal.sub": "u-e2e",
        "greeting": "hi",  # the sidecar's default
        "colour": "red",  # the operator's value over it
    }
    assert first.headers["x-request-id"] == "rid-e2e-1"

    # The next call, anonymous, by the public route, without a query, on the instance the first one used
    # (calls one at a time reuse the most recent): nothing of the first call's is left.
    second = httpx.post(f"{server.url}/greet/bob", content=keys)
    assert read(second) == {
        "arcana.method": "POST",
        "arcana.route": "/greet/{name}",
        "arcana.param.name": "bob",
        "arcana.query.tag": None,
        "arcana.principal.sub": None,
        "greeting": "hi",
        "colour": "red",
    }
