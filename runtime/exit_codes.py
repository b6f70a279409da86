"""The exit codes of the `arcana` command, and the failure that carries one to it.

Operators script around these, so they are few, stable and documented (the
README and `arcana --help` print ``EXIT_CODES_HELP``). Start-up code raises
:class:`StartupFailure` with the cause and the fix; the command line prints it
as one line on stderr and exits with its code, never with a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    # The command ran and reports a failure: `plugin check` found problems, a
    # build or migration failed, `init` would overwrite files, an internal error.
    FAILED = 1
    # Bad arguments or configuration: an invalid config file or value, a
    # missing plugins folder, an unreadable TLS file (argparse uses 2 as well).
    CONFIG = 2
    # A port or another resource is unavailable: the HTTP or gRPC port is in
    # use or not ours to bind, the plugins folder is unreadable.
    UNAVAILABLE = 3
    # The database cannot be reached (or opened, for SQLite).
    DATABASE = 4
    # The feature needs an optional extra that is not installed.
    MISSING_EXTRA = 5


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  the command failed (check found problems, build or migration failed, init would overwrite files)
  2  usage or configuration error (bad config file or value, missing plugins folder, unreadable TLS file)
  3  a port or resource is unavailable (HTTP or gRPC port in use, plugins folder unreadable)
  4  the database cannot be reached
  5  an optional extra is not installed (e.g. pip install 'arcana[postgres]')"""


class StartupFailure(Exception):
    """Something the operator must fix before the command can run: ``cause; fix``, and the exit code."""

    def __init__(self, code: ExitCode, cause: str, fix: str) -> None:
        super().__init__(f"{cause}; {fix}")
        self.code = code
        self.cause = cause
        self.fix = fix
