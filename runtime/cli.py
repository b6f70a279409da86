"""`arcana`: serve, check and build plugins. The only place that assembles edges."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from arcana.config import ArcanaConfig, load_config
from arcana.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arcana", description="Arcana: sandboxed WebAssembly plugins over REST and gRPC"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the plugin folder")
    serve.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    serve.add_argument("--plugins", type=Path, help="plugin folder (default: the repository's plugins/)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="REST port (default 8080)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 9090)")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema (database.url)")
    migrate.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    create = user.add_parser(
        "create", help="create a user; the password is read from a prompt or stdin, never an argument"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", default=[], help="a role (repeat for several), e.g. admin")
    create.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    plugin = commands.add_parser("plugin", help="plugin author tools").add_subparsers(
        dest="plugin_command", required=True
    )
    check = plugin.add_parser("check", help="validate a plugin file as the server would")
    check.add_argument("file", type=Path)
    check.add_argument("--config", type=Path, help="config whose grants and limits apply")
    build = plugin.add_parser("build", help="build a plugin folder and embed its manifest")
    build.add_argument("dir", type=Path)
    build.add_argument("-o", "--output", type=Path, help="output .wasm (default: DIR/<name>.wasm)")
    return parser


def _serve_config(args: argparse.Namespace) -> ArcanaConfig:
    config = load_config(args.config)
    server = dataclasses.replace(
        config.server,
        **{
            k: v
            for k, v in (("host", args.host), ("http_port", args.http_port), ("grpc_port", args.grpc_port))
            if v is not None
        },
    )
    plugins = config.plugins
    if args.plugins is not None:
        plugins = dataclasses.replace(plugins, dir=str(args.plugins.resolve()))
    return dataclasses.replace(config, server=server, plugins=plugins)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(_serve_config(args))
        if args.command == "migrate":
            return _migrate(load_config(args.config))
        if args.command == "user":
            return _create_user(load_config(args.config), args.email, args.role)
        if args.plugin_command == "check":
            from arcana.check import check_plugin

            return check_plugin(args.file, load_config(args.config))
        from arcana.check import build_plugin

        return build_plugin(args.dir, args.output)
    except ConfigError as exc:
        print(f"arcana: configuration error: {exc}", file=sys.stderr)
        return 2


def _create_user(config: ArcanaConfig, email: str, roles: list[str]) -> int:
    import getpass

    from arcana.auth.service import AuthService
    from arcana.database import Database
    from arcana.errors import ArcanaError
    from arcana.events import KernelEvents

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("arcana: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    database = Database(config.database)
    try:
        not_ready = database.prepare()
        if not_ready:
            print(f"arcana: {not_ready}; run `arcana migrate`", file=sys.stderr)
            return 1
        user = AuthService(config, database, KernelEvents()).create_user(email, password, roles)
    except ArcanaError as exc:
        print(f"arcana: cannot create user: {exc.message}", file=sys.stderr)
        return 1
    finally:
        database.close()
    print(f"created user {user.email} ({user.id}) with roles {', '.join(user.roles) or '(none)'}")
    return 0


def _migrate(config: ArcanaConfig) -> int:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from arcana.database import create_db_engine, migrate

    engine = create_db_engine(config.database)
    try:
        before, after = migrate(engine)
    except (SQLAlchemyError, CommandError) as exc:  # one clear line for the operator
        print(f"arcana: migration failed for {engine.url.render_as_string(hide_password=True)}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(
        f"database {engine.url.render_as_string(hide_password=True)}: "
        f"{'already at' if before == after else f'upgraded from {before} to'} revision {after}"
    )
    return 0


def _serve(config: ArcanaConfig) -> int:
    from arcana.logs import setup_logging
    from arcana.server import serve

    setup_logging(config.logging)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
