"""Checks made before the kernel is built, so that a start-up failure is one line naming its fix.

Each check raises :class:`~arcana.exit_codes.StartupFailure` (``check_auth``
the signer's own ConfigError). They cover what an operator gets wrong most (a
secret, a folder that is not there, a certificate path, a database that is
down or whose driver is not installed); anything they miss still fails, just
less helpfully, further on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from arcana.config import ArcanaConfig, AuthConfig, DatabaseConfig, ServerConfig, TlsConfig
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.extras import require_database_driver, require_module


@contextlib.contextmanager
def quieted(logger_name: str, below: int = logging.ERROR) -> Iterator[None]:
    """Drop one logger's records under ``below`` (its warnings, by default) for a block; its level is restored after."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(below)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_auth(config: AuthConfig) -> None:
    """The token signer's own checks (production secret, key files), made before any port is bound.

    Raises ConfigError. The kernel builds the signer again; its dev-mode
    warning about an ephemeral secret is left to that one, so it is logged once.
    """
    from arcana.auth.tokens import Tokens

    with quieted("arcana.auth"):
        Tokens(config)


def check_plugins_dir(path: Path) -> None:
    if not path.exists():
        raise StartupFailure(
            ExitCode.CONFIG,
            f"the plugins folder {path} does not exist",
            "create it, lay out a deployment with `arcana init DIR`, or pass --plugins DIR",
        )
    if not path.is_dir():
        raise StartupFailure(
            ExitCode.CONFIG, f"the plugins folder {path} is not a folder", "point --plugins or plugins.dir at a folder"
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise StartupFailure(
            ExitCode.UNAVAILABLE,
            f"cannot read the plugins folder {path}: permission denied",
            "make it readable by the user running arcana",
        )


def check_tls_files(server: ServerConfig) -> None:
    """Certificates and keys the edges will read once serving starts."""
    for section, tls in (("server.http_tls", server.http_tls), ("server.grpc_tls", server.grpc_tls)):
        for key, value in _tls_files(tls):
            path = Path(value)
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise StartupFailure(
                    ExitCode.CONFIG, f"{section}.{key}: cannot read {path} ({exc.strerror})", f"fix {section}.{key}"
                ) from None


def _tls_files(tls: TlsConfig) -> list[tuple[str, str]]:
    if not tls.enabled:
        return []
    return [(key, getattr(tls, key)) for key in ("cert_file", "key_file", "client_ca_file") if getattr(tls, key)]


def check_database(config: DatabaseConfig) -> None:
    """The driver is installed and one connection can be opened (SQLite: the file can be created)."""
    require_database_driver(config.url)
    from sqlalchemy.exc import SQLAlchemyError

    from arcana.database import create_db_engine

    fix = "check database.url (or ARCANA_DATABASE__URL) and that the database is running"
    try:
        engine = create_db_engine(config)
    except OSError as exc:  # SQLite: the folder for the file cannot be made
        raise StartupFailure(ExitCode.DATABASE, f"cannot open the database: {exc}", fix) from None
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StartupFailure(ExitCode.DATABASE, f"cannot reach the database {url}: {reason}", fix) from None
    finally:
        engine.dispose()


def check_before_binding(config: ArcanaConfig) -> None:
    """What `arcana serve` checks before it binds its ports: nothing here opens a file for writing."""
    check_auth(config.auth)
    check_plugins_dir(config.plugins_dir())
    check_tls_files(config.server)
    require_database_driver(config.database.url)
    if config.tracing.exporter == "otlp":
        from arcana.tracing import OTLP_MODULE

        require_module(OTLP_MODULE, "the OTLP trace exporter (tracing.exporter: otlp)", "otlp")
