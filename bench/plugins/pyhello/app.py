"""hello: GET /api/v1/hello/{name} -> 200 {"message": "Hello, <name>!"}, as plugins/hello does in AssemblyScript.

`arcana plugin new hello --lang python` with the route of plugins/hello and without the log line, so both
plugins do the same work per call (bench/python_vs_as.py).
"""

from arcana_plugin import Code, Fail, HttpRequest, Plugin

app = Plugin()


@app.route("GET", "/api/v1/hello/{name}", name="hello")
def hello(req: HttpRequest) -> dict[str, str]:
    name = req.param("name")
    if not name:
        raise Fail(Code.VALIDATION_FAILED, "a non-empty 'name' is required")
    return {"message": f"Hello, {name}!"}
