"""`arcana`: serve, lay out, check and build plugins. The only place that assembles edges.

Every failure the operator can fix ends in one line on stderr,
``arcana: <cause>; <fix>``, and a documented exit code (``arcana.exit_codes``);
a traceback is shown only for an unexpected error and only with --traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from arcana.config import MAX_WORKERS, ArcanaConfig, load_config
from arcana.errors import ConfigError
from arcana.exit_codes import EXIT_CODES_HELP, ExitCode, StartupFailure
from arcana.queue_cli import add_queue_commands

if TYPE_CHECKING:  # the server (and the edges it imports) load only when serving
    from arcana.server import Role

# `arcana <command>` run in a deployment folder (see `arcana init`) uses its config.
LOCAL_CONFIG = Path("arcana.yaml")
CONFIG_HELP = "YAML config file (default: ./arcana.yaml if present, else the built-in defaults)"


def _version() -> str:
    try:
        return version("arcana")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown"


def _command(
    parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in its parent's list) and a description (in its own --help)."""
    return parent.add_parser(
        name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arcana",
        description="Arcana: sandboxed WebAssembly plugins served over REST and gRPC.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an unexpected error (for bug reports)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "serve the plugin folder over REST and gRPC",
        "Serve every plugin in the plugins folder over REST and gRPC, reloading them as their files change.\n"
        "Config: --config FILE, else ./arcana.yaml if present, else the built-in defaults; then\n"
        "ARCANA_<SECTION>__<KEY> environment variables; then the flags below.",
    )
    serve.add_argument("--config", type=Path, help=CONFIG_HELP)
    serve.add_argument("--plugins", type=Path, help="plugin folder (default: plugins.dir of the config, ./plugins)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="REST port (default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 9090)")
    serve.add_argument(
        "--role",
        choices=("all", "api", "worker"),  # arcana.server.ROLES
        default="all",
        help=(
            "api: REST and gRPC; worker: run queued jobs, no ports (but server.metrics_port); "
            "all (default): both in one process"
        ),
    )
    serve.add_argument(
        "--worker-concurrency",
        type=_positive_int,
        metavar="N",
        help="jobs a worker runs at once (default: queue.worker_concurrency, 8)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help=(
            "processes serving the same ports (SO_REUSEPORT), each with its own kernel; "
            f"1-{MAX_WORKERS} or 'auto' (one per core) (default: server.workers, 1)"
        ),
    )
    # Set by the supervisor (arcana.supervisor) on the processes it starts; not for operators.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    init = _command(
        commands,
        "init",
        "lay out a deployment folder: config, example plugins, data folder",
        "Write DIR/arcana.yaml (every key with its default and comment), the example plugins into\n"
        "DIR/plugins/ and an empty DIR/.data/; then `cd DIR && arcana serve`. Existing files are\n"
        "left alone unless --force.",
    )
    init.add_argument("dir", type=Path, nargs="?", default=Path("."), help="the folder (default: the current one)")
    init.add_argument("--force", action="store_true", help="overwrite arcana.yaml and example plugins already there")

    migrate = _command(
        commands,
        "migrate",
        "create or upgrade the database schema",
        "Bring the schema of database.url to this version's newest revision (Alembic); safe to run\n"
        "from several processes at once. Run once per deployment for PostgreSQL.",
    )
    migrate.add_argument("--config", type=Path, help=CONFIG_HELP)

    user = _command(commands, "user", "manage users", "Manage the kernel's users.").add_subparsers(
        dest="user_command", required=True, metavar="USER_COMMAND"
    )
    create = _command(
        user,
        "create",
        "create a user; the password is read from a prompt or stdin",
        "Create a user with the given roles. The password is read from a prompt (twice) or from\n"
        "the first line of stdin, never from an argument.",
    )
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", default=[], help="a role (repeat for several), e.g. admin")
    create.add_argument("--config", type=Path, help=CONFIG_HELP)

    add_queue_commands(commands, CONFIG_HELP)

    plugin = _command(commands, "plugin", "plugin author tools", "Build and check plugins.").add_subparsers(
        dest="plugin_command", required=True, metavar="PLUGIN_COMMAND"
    )
    check = _command(
        plugin,
        "check",
        "validate a plugin file as the server would",
        "Load a plugin file as the server would and print its manifest, routes and capabilities,\n"
        "or every problem with its fix (exit code 1).",
    )
    check.add_argument("file", type=Path)
    check.add_argument(
        "--config",
        type=Path,
        help="config whose grants and limits apply (default ./arcana.yaml if present; with none, the plugin "
        "is granted what its manifest requests)",
    )
    build = _command(
        plugin,
        "build",
        "build a plugin folder and embed its manifest",
        "Compile a plugin folder (AssemblyScript, Zig or C) and embed its plugin.toml and protos.\n"
        "Needs the toolchain extra: pip install 'arcana[toolchain]' (and node + npm for AssemblyScript).",
    )
    build.add_argument("dir", type=Path)
    build.add_argument("-o", "--output", type=Path, help="output .wasm (default: DIR/<name>.wasm)")
    call = _command(
        plugin,
        "call",
        "run one handler of a plugin file locally and print the response",
        "Load FILE in an in-process kernel (a fresh SQLite database, no server) and make one call through\n"
        "its routing, auth, RBAC and error model: a REST request line or a gRPC method (proto3 JSON in and out).\n"
        "Prints the status, the headers and the body. Exit code 0 for a 2xx/3xx answer, 1 for a 4xx/5xx one.\n"
        "Grants: what the manifest requests, unless --config gives the operator's grants and limits.\n\n"
        "  arcana plugin call hello.wasm 'GET /api/v1/hello/Ada'\n"
        "  arcana plugin call notes.wasm 'POST /api/v1/notes' --body '{\"title\":\"t\"}' --as u1 --roles user\n"
        '  arcana plugin call hello.wasm greeter.v1.Greeter/SayHello --body \'{"name":"Ada"}\'',
    )
    call.add_argument("file", type=Path, help="the plugin's .wasm (its .toml/.pb sidecars beside it are used too)")
    call.add_argument("request", help="'METHOD /path?query' or a gRPC method 'pkg.Service/Method'")
    call.add_argument("--body", help="the request body (REST) or message as proto3 JSON (gRPC); @FILE reads a file")
    call.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value' (repeat for several); gRPC metadata"
    )
    call.add_argument("--as", dest="user", metavar="USER", help="call as this user (a token the kernel signs)")
    call.add_argument("--roles", help="the user's roles, comma-separated (with --as)")
    call.add_argument("--config", type=Path, help="config whose grants and limits apply (default: the manifest's)")
    call.add_argument(
        "--db", type=Path, help="SQLite file to keep the store in between calls (default: a fresh one per call)"
    )
    sdk = _command(
        plugin,
        "sdk",
        "print the folder of a guest SDK, or pack the AssemblyScript one for npm",
        "Print where this installation keeps a guest SDK's sources, e.g. for an AssemblyScript\n"
        'plugin\'s package.json: "@arcana/sdk": "file:<that folder>".\n'
        "With --pack DIR (assemblyscript only): write DIR/arcana-sdk-<version>.tgz, the SDK as an npm\n"
        "package (the same bytes on every run), for `npm install ./arcana-sdk-<version>.tgz`.",
    )
    sdk.add_argument("language", choices=("zig", "c", "assemblyscript"))
    sdk.add_argument("--pack", type=Path, metavar="DIR", help="write the npm tarball of the SDK into DIR")
    new = _command(
        plugin,
        "new",
        "lay out a new plugin folder that builds and passes its tests",
        "Write PARENT/NAME/ (default PARENT: the current folder): plugin.toml, the source of one route\n"
        "GET /api/v1/NAME/hello/{who}, tests/test_NAME.py, README.md and .gitignore; AssemblyScript also\n"
        "gets vendor/arcana-sdk-<version>.tgz. Then:\n\n"
        "  cd NAME && arcana plugin build . && python -m pytest",
    )
    new.add_argument("name", help="the plugin's name: lowercase letters, digits, '-' and '_', starting with a letter")
    new.add_argument(
        "--lang", required=True, choices=("assemblyscript", "zig", "c", "python"), help="the guest language"
    )
    new.add_argument("--dir", type=Path, default=Path("."), metavar="PARENT", help="where to create NAME/")

    dev = _command(
        commands,
        "dev",
        "serve a plugin source folder, rebuilding and reloading it on every save",
        "Build DIR (as `arcana plugin build`), serve it over REST and gRPC, and watch its sources\n"
        "(plugin.toml, src/, assembly/, proto/): each save rebuilds it and the server reloads it\n"
        "without dropping a request. A failed build is printed and the last good build keeps serving.\n"
        "Grants: what the manifest requests, unless --config gives the operator's grants and limits.\n"
        "Store: a fresh SQLite database (or --db FILE). Auth: dev mode, tokens signed with a secret\n"
        "that dies with the process; --as USER --roles ... prints one. Ctrl-C stops (exit code 0).\n\n"
        "  arcana dev plugins/echo\n"
        "  arcana dev my-plugin --port 8081 --as u1 --roles user",
    )
    dev.add_argument("dir", type=Path, metavar="DIR", help="the plugin's source folder (with plugin.toml)")
    dev.add_argument("--port", type=int, help="REST port (default: server.http_port of the config, 8080)")
    dev.add_argument("--grpc-port", type=int, help="gRPC port (default: server.grpc_port of the config, 9090)")
    dev.add_argument("--config", type=Path, help="config whose grants and limits apply (default: the manifest's)")
    dev.add_argument("--db", type=Path, help="SQLite file to keep the store in between runs (default: a fresh one)")
    dev.add_argument("--as", dest="user", metavar="USER", help="print a token for this user at start")
    dev.add_argument("--roles", help="the user's roles, comma-separated (with --as)")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _workers(text: str) -> int:
    from arcana.supervisor import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_file(given: Path | None) -> Path | None:
    """--config, else ./arcana.yaml when there is one, else None (the built-in defaults)."""
    if given is not None:
        return given
    return LOCAL_CONFIG.resolve() if LOCAL_CONFIG.is_file() else None


def _load(given: Path | None) -> ArcanaConfig:
    return load_config(_config_file(given))


def _serve_config(args: argparse.Namespace) -> ArcanaConfig:
    config = _load(args.config)
    server = dataclasses.replace(
        config.server,
        **{
            k: v
            for k, v in (
                ("host", args.host),
                ("http_port", args.http_port),
                ("grpc_port", args.grpc_port),
                ("workers", args.workers),
            )
            if v is not None
        },
    )
    plugins = config.plugins
    if args.plugins is not None:
        plugins = dataclasses.replace(plugins, dir=str(args.plugins.resolve()))
    queue = config.queue
    if args.worker_concurrency is not None:
        queue = dataclasses.replace(queue, worker_concurrency=args.worker_concurrency)
    return dataclasses.replace(config, server=server, plugins=plugins, queue=queue)


def _fail(message: str, code: ExitCode) -> int:
    """One line on stderr, whatever the message held (YAML errors span lines)."""
    print(f"arcana: {' '.join(message.split())}", file=sys.stderr)
    return int(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from arcana_sdk.toolchain import ToolchainMissing

    try:
        return _run(args)
    except StartupFailure as exc:
        return _fail(str(exc), exc.code)
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", ExitCode.CONFIG)
    except ToolchainMissing as exc:
        return _fail(str(exc), ExitCode.MISSING_EXTRA)
    except Exception as exc:  # a bug: one line by default, the traceback with --traceback
        if args.traceback:
            raise
        return _fail(
            f"unexpected error: {type(exc).__name__}: {exc} (a bug; rerun with `arcana --traceback ...` to see where)",
            ExitCode.FAILED,
        )


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        config = _serve_config(args)
        if config.server.workers > 1 and args.worker_index is None:
            return _supervise(config, args)
        return _serve(config, args.role, args.worker_index, args.ready_fd)
    if args.command == "init":
        return _init(args.dir, args.force)
    if args.command == "migrate":
        return _migrate(_load(args.config))
    if args.command == "user":
        return _create_user(_load(args.config), args.email, args.role)
    if args.command == "queue":
        return _queue(args)
    if args.command == "dev":
        return _dev(args)
    if args.plugin_command == "check":
        from arcana.check import check_plugin

        given = _config_file(args.config)  # none: the plugin is judged against its own requests
        return check_plugin(args.file, load_config(given), own_grants=given is None)
    if args.plugin_command == "call":
        return _call_plugin(args)
    if args.plugin_command == "sdk":
        return _guest_sdk(args.language, args.pack)
    if args.plugin_command == "new":
        return _new_plugin(args.name, args.lang, args.dir)
    return _build_plugin(args.dir, args.output)


def _init(target: Path, force: bool) -> int:
    from arcana.init_cmd import CONFIG_FILE, WouldOverwrite, init_deployment

    try:
        written = init_deployment(target, force=force)
    except WouldOverwrite as exc:
        return _fail(f"init refused: {exc}; pass --force to replace them", ExitCode.FAILED)
    except OSError as exc:
        reason = f"cannot write {exc.filename or target}: {exc.strerror}"
        return _fail(f"{reason}; choose a folder you can write to", ExitCode.FAILED)
    print(f"wrote {len(written)} files into {target.resolve()}: {CONFIG_FILE}, plugins/, .data/")
    print(f"next: cd {target} && arcana serve")
    return ExitCode.OK


def _build_plugin(src: Path, output: Path | None) -> int:
    from arcana_sdk.build import BuildError, build_plugin

    try:
        out = build_plugin(src, output)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"built {out}")
    return ExitCode.OK


def _guest_sdk(language: str, pack: Path | None) -> int:
    from arcana_sdk.sources import guest_sdk_dir

    if pack is None:
        print(guest_sdk_dir(language))
        return ExitCode.OK
    if language != "assemblyscript":
        return _fail(
            f"only the AssemblyScript SDK is packed for npm, not {language}; "
            f"use the folder `arcana plugin sdk {language}` prints",
            ExitCode.CONFIG,
        )
    from arcana_sdk.npm_pack import pack_guest_sdk

    try:
        tarball = pack_guest_sdk(pack)
    except OSError as exc:
        return _fail(
            f"cannot write {exc.filename or pack}: {exc.strerror}; choose a folder you can write to", ExitCode.FAILED
        )
    print(tarball)
    return ExitCode.OK


def _new_plugin(name: str, language: str, parent: Path) -> int:
    from arcana_sdk.scaffold import ScaffoldError, ScaffoldWriteError, new_plugin

    try:
        folder = new_plugin(name, language, parent)
    except ScaffoldWriteError as exc:
        return _fail(str(exc), ExitCode.FAILED)
    except ScaffoldError as exc:
        return _fail(str(exc), ExitCode.CONFIG)
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    print(f"created {folder} ({language}): {', '.join(written)}")
    print(f"next: cd {folder} && arcana plugin build . && python -m pytest")
    return ExitCode.OK


def _call_plugin(args: argparse.Namespace) -> int:
    import logging

    from arcana.config import LoggingConfig
    from arcana.errors import PluginLoadError
    from arcana.logs import setup_logging
    from arcana.plugin_call import build_request, call_plugin, format_answer

    request = build_request(args.file, args.request, args.body, args.header, args.user, args.roles, args.db)
    operator = load_config(args.config) if args.config is not None else None
    # The plugin's log lines and the kernel's go to stderr as text; stdout holds only the response.
    setup_logging(LoggingConfig(operator.logging.level if operator else "warning", "text"))
    logging.getLogger("arcana.plugin").setLevel(logging.DEBUG)  # every line the plugin logs: it is the author's
    try:
        answer = asyncio.run(call_plugin(request, operator))
    except PluginLoadError as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return ExitCode.FAILED
    sys.stdout.flush()
    sys.stdout.buffer.write(format_answer(answer))
    sys.stdout.buffer.flush()
    return answer.exit_code


def _dev(args: argparse.Namespace) -> int:
    try:  # Ctrl-C at any point, even while the modules load, is how dev is stopped: no traceback
        from arcana.dev import DevOptions, run_dev

        roles = tuple(r.strip() for r in (args.roles or "").split(",") if r.strip())
        options = DevOptions(args.dir, args.port, args.grpc_port, args.config, args.db, args.user, roles)
        return run_dev(options, load_config(args.config) if args.config is not None else None)
    except KeyboardInterrupt:
        return ExitCode.OK


def _create_user(config: ArcanaConfig, email: str, roles: list[str]) -> int:
    import getpass

    from arcana.auth.service import AuthService
    from arcana.database import Database
    from arcana.errors import ArcanaError
    from arcana.events import EventBus
    from arcana.preflight import check_database, quieted

    check_database(config.database)
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            return _fail("the passwords differ; type the same password twice", ExitCode.FAILED)
    else:
        password = sys.stdin.readline().rstrip("\n")
    database = Database(config.database)
    try:
        not_ready = database.prepare()
        if not_ready:
            return _fail(f"{not_ready}; run `arcana migrate`", ExitCode.FAILED)
        # Creating a user signs no token: the signer's dev-mode warning about
        # a missing JWT secret would only confuse here.
        with quieted("arcana.auth"):
            service = AuthService(config, database, EventBus())
        user = service.create_user(email, password, roles)
    except ArcanaError as exc:
        return _fail(f"cannot create user: {exc.message}", ExitCode.FAILED)
    finally:
        database.close()
    print(f"created user {user.email} ({user.id}) with roles {', '.join(user.roles) or '(none)'}")
    return ExitCode.OK


def _queue(args: argparse.Namespace) -> int:
    from arcana.queue_cli import run_queue

    return run_queue(args, _load(args.config))


def _migrate(config: ArcanaConfig) -> int:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from arcana.database import create_db_engine, migrate
    from arcana.preflight import check_database

    check_database(config.database)
    engine = create_db_engine(config.database)
    url = engine.url.render_as_string(hide_password=True)
    try:
        before, after = migrate(engine)
    except (SQLAlchemyError, CommandError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return _fail(f"migration failed for {url}: {reason}; see the database's log", ExitCode.FAILED)
    finally:
        engine.dispose()
    print(f"database {url}: {'already at' if before == after else f'upgraded from {before} to'} revision {after}")
    return ExitCode.OK


def _supervise(config: ArcanaConfig, args: argparse.Namespace) -> int:
    """`--workers N` (N > 1): this process starts N `arcana serve` processes and watches them."""
    from arcana.logs import setup_logging
    from arcana.supervisor import supervise

    setup_logging(config.logging)
    command = [sys.executable, "-m", "arcana.cli", *(["--traceback"] if args.traceback else []), "serve"]
    config_file = _config_file(args.config)
    if config_file is not None:
        command += ["--config", str(config_file.resolve())]
    command += ["--plugins", str(config.plugins_dir()), "--role", args.role, "--workers", str(config.server.workers)]
    for flag, value in (
        ("--host", args.host),
        ("--http-port", args.http_port),
        ("--grpc-port", args.grpc_port),
        ("--worker-concurrency", args.worker_concurrency),
    ):
        if value is not None:
            command += [flag, str(value)]

    def worker_command(index: int, ready_fd: int) -> list[str]:
        return [*command, "--worker-index", str(index), "--ready-fd", str(ready_fd)]

    try:
        return supervise(config, args.role, worker_command)
    except KeyboardInterrupt:  # Ctrl-C during the checks, before the workers (and their handler) exist
        return ExitCode.OK


def _serve(config: ArcanaConfig, role: Role, worker_index: int | None = None, ready_fd: int | None = None) -> int:
    from arcana.logs import setup_logging
    from arcana.server import serve
    from arcana.supervisor import die_with_parent, report_ready

    if worker_index is not None:
        die_with_parent()
    setup_logging(config.logging)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(config, role, worker_index or 0, lambda: report_ready(ready_fd)))
    except KeyboardInterrupt:
        pass
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
