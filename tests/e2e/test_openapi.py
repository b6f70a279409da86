"""The live OpenAPI document and the docs page against a real `arcana serve`.

- openapi-spec-validator reads the served document as OpenAPI 3.1;
- schemathesis (a third-party property-based tester) runs its checks against the live server from
  that document alone: no 500s, every answer's status, content type, headers and body as documented;
- a hot reload changes the document (a new route and a changed schema, a new info.version) and the
  validation with it, without a restart;
- the docs page loads in headless Chromium (Debian's `chromium`, driven over the DevTools protocol)
  without console errors, lists the routes, and a user authorizes with a token and tries a route.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from websockets.sync.client import ClientConnection, connect

from arcana.openapi_kernel import KERNEL_OPERATIONS
from conftest import ROOT, build_variant, install
from e2e.server import ArcanaServer, free_port, mint

EXAMPLES = ("notes", "hello")
CONFIG = {"grants": {"*": ["log"], "notes": ["store", "events"]}}
TOKEN = mint("docs-user", ["admin", "user"])
# schemathesis' checks that compare answers with the document. Its data checks (a schema-valid request
# must be accepted, an invalid one refused) need every rule of a route in its schemas: the kernel's
# routes pass the first below and both by hand (`st run URL/openapi.json --checks all
# --include-tag-regex arcana`; what an address may be is not all a pattern can say), notes does not yet, as a query
# parameter has a type but no enum or minimum in the manifest (sort, order, page) and the plugin also
# refuses NUL in text and a PUT without a version.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,ignored_auth,unsupported_method,allow_header_conformance"
)


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in EXAMPLES:
        shutil.copyfile(ROOT / "plugins" / name / f"{name}.wasm", folder / f"{name}.wasm")
    return folder


def document(server: ArcanaServer) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_served_document_is_openapi_3_1_and_describes_both_edges(
    examples: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    served = document(start_server(examples, CONFIG))
    validate(served)
    assert {"/api/v1/notes", "/api/v1/notes/{id}", "/api/v1/hello/{name}", "/api/v1/auth/login"} <= set(served["paths"])
    hello = next(s for s in served["x-arcana-grpc"] if s["service"] == "greeter.v1.Greeter")
    say = hello["methods"][0]
    assert (say["path"], say["public"]) == ("/greeter.v1.Greeter/SayHello", True)
    assert say["request_schema"].rsplit("/", 1)[1] in served["components"]["schemas"]


def schemathesis(server: ArcanaServer, workdir: Path, checks: str, *options: str) -> str:
    """`st run` against the live document: its output; fails the test with it unless every check passed."""
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        checks,
        # Bounded and reproducible: a fixed seed, 25 cases an operation, nothing kept between runs.
        "--max-examples",
        "25",
        "--seed",
        "20261203",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report-dir",
        str(workdir / "schemathesis"),
        *options,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=workdir, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:] + "\n--- server log ---\n" + server.logs()[-4000:]
    assert "unhandled error" not in server.logs()
    return output


def cases_run(output: str) -> int:
    found = re.search(r"Tested: (\d+)", output)
    assert found is not None, output[-3000:]
    return int(found.group(1))


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    examples: Path, start_server: Callable[..., ArcanaServer], tmp_path: Path
) -> None:
    server = start_server(examples, CONFIG)
    output = schemathesis(server, tmp_path, CHECKS, "--phases", "examples,coverage,fuzzing")
    assert cases_run(output) == len([op for item in document(server)["paths"].values() for op in item])


def test_schemathesis_finds_the_kernel_routes_take_every_request_their_schemas_allow(
    examples: Path, start_server: Callable[..., ArcanaServer], tmp_path: Path
) -> None:
    """The kernel's hand-written schemas (arcana.openapi_kernel) are no looser than its handlers, calls in a row too."""
    server = start_server(examples, CONFIG)
    options = ("--phases", "coverage,fuzzing,stateful", "--include-tag-regex", "^arcana[.]")
    output = schemathesis(server, tmp_path, CHECKS + ",positive_data_acceptance", *options)
    assert cases_run(output) == len(KERNEL_OPERATIONS)


def test_a_hot_reload_changes_the_document_and_the_validation_without_a_restart(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    v2 = build_variant(
        "versioned",
        tmp_path,
        {
            'version = "1.0.0"': 'version = "1.1.0"',
            'handler = "version"\n': 'handler = "version"\nquery = { n = "integer" }\n',
            "[[route]]": '[[route]]\nmethod = "GET"\npath = "/api/v1/test/again"\nhandler = "version"\npublic = true\n'
            "\n[[route]]",
        },
    )
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["versioned"], folder, "versioned")
    server = start_server(folder)
    pid = server.proc.pid if server.proc else None
    before = document(server)
    assert "/api/v1/test/again" not in before["paths"]
    assert before["paths"]["/api/v1/test/version"]["get"]["parameters"] == []
    assert httpx.get(f"{server.url}/api/v1/test/version", params={"n": "x"}).status_code == 200

    install(v2, folder, "versioned")
    deadline = time.monotonic() + 30
    after = before
    while "/api/v1/test/again" not in after["paths"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = document(server)
    assert "/api/v1/test/again" in after["paths"], server.logs()[-3000:]
    assert after["info"]["version"] != before["info"]["version"]
    assert after["paths"]["/api/v1/test/version"]["get"]["parameters"] == [
        {"name": "n", "in": "query", "required": False, "schema": {"type": "integer"}}
    ]
    validate(after)
    refused = httpx.get(f"{server.url}/api/v1/test/version", params={"n": "x"})
    assert refused.status_code == 400 and refused.json()["fields"][0]["pointer"] == "/query/n"
    assert server.proc is not None and (server.proc.pid, server.proc.poll()) == (pid, None)
    same = httpx.get(f"{server.url}/openapi.json", headers={"if-none-match": f'"{after["info"]["version"]}"'})
    assert same.status_code == 304


# ---------------------------------------------------------------- the docs page in Chromium


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this is a failure)", pytrace=False)
        pytest.skip(reason)
    return found


class Page:
    """One Chromium tab over the DevTools protocol: commands, and the errors the page reported."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = count(1)
        self.errors: list[str] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        sent = next(self._ids)
        self._socket.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=30))
            if message.get("id") == sent:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(json.dumps(params.get("args"))[:500])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")


def devtools_tabs(port: int, log: Path) -> list[dict[str, Any]]:
    """The browser's tabs once its DevTools server answers (bounded wait: it starts in about a second)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()  # type: ignore[no-any-return]
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"chromium's DevTools server did not answer:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    binary = chromium()
    port = free_port()
    log = tmp_path / "chromium.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # root in CI: Chromium's sandbox refuses to start as root
                "--disable-gpu",
                "--no-first-run",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "about:blank",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        tab = next(t for t in devtools_tabs(port, log) if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            for domain in ("Runtime", "Log", "Page"):
                page.send(f"{domain}.enable")
            yield page
    finally:
        proc.kill()
        proc.wait()


# Helpers in the page: wait for a selector (bounded), and type into a React-controlled input.
PAGE_HELPERS = """
window.waitFor = async (selector, test = (e) => true) => {
  for (let i = 0; i < 300; i++) {
    const found = [...document.querySelectorAll(selector)].find(test);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("not found: " + selector);
};
window.typeInto = (input, text) => {
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(input), "value").set.call(input, text);
  input.dispatchEvent(new Event("input", { bubbles: true }));
};
true
"""
AUTHORIZE = """
(async () => {
  (await waitFor(".auth-wrapper .authorize")).click();
  typeInto(await waitFor(".modal-ux input"), %s);
  (await waitFor(".modal-ux button.authorize")).click();
  (await waitFor(".modal-ux button.btn-done")).click();
  return localStorage.getItem("authorized");
})()
"""
LOG_IN = """
(async () => {
  const path = (e) => e.querySelector(".opblock-summary-path")?.getAttribute("data-path") === "/api/v1/auth/login";
  const block = await waitFor(".opblock.opblock-post", path);
  block.querySelector(".opblock-summary-control").click();
  (await waitFor(".opblock.is-open .try-out__btn")).click();
  typeInto(await waitFor(".opblock.is-open textarea.body-param__text"), %s);
  (await waitFor(".opblock.is-open button.execute")).click();
  const status = await waitFor(".opblock.is-open .live-responses-table .response .response-col_status");
  await waitFor(".auth-wrapper .authorize.locked");
  block.querySelector(".opblock-summary-control").click();
  await waitFor(".opblock.opblock-post", (e) => path(e) && !e.classList.contains("is-open"));
  return status.textContent.trim();
})()
"""
TRY_LIST_NOTES = """
(async () => {
  const path = (e) => e.querySelector(".opblock-summary-path")?.getAttribute("data-path") === "/api/v1/notes";
  const block = await waitFor(".opblock.opblock-get", path);
  block.querySelector(".opblock-summary-control").click();
  (await waitFor(".opblock.is-open .try-out__btn")).click();
  (await waitFor(".opblock.is-open button.execute")).click();
  const status = await waitFor(".opblock.is-open .live-responses-table .response .response-col_status");
  const body = document.querySelector(".opblock.is-open .live-responses-table .microlight")?.textContent ?? "";
  return [status.textContent.trim(), body];
})()
"""


def open_docs(browser: Page, server: ArcanaServer) -> None:
    browser.send("Page.navigate", url=f"{server.url}/docs")
    browser.evaluate(PAGE_HELPERS)
    browser.evaluate("waitFor('.opblock-summary-path').then(() => true)")


def test_the_docs_page_lists_the_routes_and_tries_one_with_a_token(
    examples: Path, start_server: Callable[..., ArcanaServer], browser: Page
) -> None:
    server = start_server(examples, CONFIG)
    open_docs(browser, server)
    listed = set(browser.evaluate("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path)"))
    assert {"/api/v1/notes", "/api/v1/notes/{id}", "/api/v1/hello/{name}", "/api/v1/auth/login"} <= listed
    grpc = browser.evaluate("document.body.innerText.includes('/greeter.v1.Greeter/SayHello')")
    assert grpc, "the gRPC methods are not on the page"

    stored = browser.evaluate(AUTHORIZE % json.dumps(TOKEN))
    assert stored is not None and TOKEN in stored  # persistAuthorization: kept for the next visit
    status, body = browser.evaluate(TRY_LIST_NOTES)
    assert status == "200", body
    assert json.loads(body)["items"] == []
    browser.send("Page.reload")
    browser.evaluate(PAGE_HELPERS)
    browser.evaluate("waitFor('.opblock-summary-path').then(() => true)")
    assert browser.evaluate("document.querySelector('.auth-wrapper .authorize.locked') !== null")
    assert browser.errors == []


def test_a_login_tried_on_the_docs_page_authorizes_the_page(
    examples: Path, start_server: Callable[..., ArcanaServer], browser: Page
) -> None:
    server = start_server(examples, CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    command = [sys.executable, "-m", "arcana.cli", "user", "create", "--config", str(server.config_path)]
    created = subprocess.run(
        [*command, "--email", "ada@example.com", "--role", "user"],
        input="correct-horse-battery\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    open_docs(browser, server)
    login = json.dumps({"email": "ada@example.com", "password": "correct-horse-battery"})
    assert browser.evaluate(LOG_IN % json.dumps(login)) == "200"
    status, body = browser.evaluate(TRY_LIST_NOTES)
    assert status == "200", body
    assert browser.errors == []
