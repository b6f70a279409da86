"""Optional extras: say which one to install instead of failing deep inside an import.

Serving the examples needs none of them. ``postgres`` brings the PostgreSQL
driver (SQLAlchemy imports it only when the URL is postgresql+psycopg, at
engine creation, where a bare ModuleNotFoundError would be the first sign);
``redis`` the scale-out backends; ``toolchain`` the plugin build tools (checked
by ``arcana_sdk.toolchain``, which must not import the kernel).
"""

from __future__ import annotations

import importlib.util

from sqlalchemy.engine import make_url

from arcana.exit_codes import ExitCode, StartupFailure


class MissingExtra(StartupFailure):
    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(ExitCode.MISSING_EXTRA, f"{feature} is not installed", f"pip install 'arcana[{extra}]'")
        self.extra = extra


def require_module(module: str, feature: str, extra: str) -> None:
    """Raise MissingExtra unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(feature, extra)


def require_database_driver(url: str) -> None:
    """The driver a database URL needs: psycopg for PostgreSQL; SQLite is in the standard library."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername in ("postgresql", "postgresql+psycopg"):
        require_module("psycopg", "PostgreSQL support", "postgres")
