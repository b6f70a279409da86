"""`arcana dev DIR`: serve a plugin's source folder, rebuilding and reloading it on every save.

DIR is built once into a private plugin folder (a temporary directory) that a
server serves with its watcher on; DIR's sources are then watched, and each
save builds again into a staging folder beside it and moves the module into
the served folder with one ``os.replace``. The kernel's watcher sees only the
finished file and reloads it as it reloads any plugin: calls in flight finish
on the old build. A build that fails is printed and leaves the old build
serving; the next save tries again.

The server runs in this process, in the same event loop as the source
watcher, through ``arcana.server.serve`` (what ``arcana serve`` runs), rather
than as a child ``arcana serve``: one Ctrl-C stops both with no process left
behind; the build the server serves is learnt from the kernel's own load
events (:class:`ServedBuilds`), not by polling an admin API with a token; and
the ephemeral signing secret lives in this process, so ``--as`` can mint a
token the server accepts. The cost: a crash of the engine's native code ends
the dev loop too, which for a developer's loop is a restart, not an outage.

Grants: with no ``--config`` every plugin may have every capability there is,
which the kernel narrows to what the manifest requests
(``Capabilities.configure`` grants requested & granted): the plugin gets what
its manifest requests, and still does after the author adds a capability to
plugin.toml, with no restart. With ``--config`` that config's grants and
limits apply, as ``arcana serve`` would apply them. The store is SQLite (a
temporary file, or ``--db FILE`` to keep it between runs), auth is dev mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, awatch

from arcana.auth.tokens import Tokens
from arcana.config import ArcanaConfig, LoggingConfig
from arcana.errors import ManifestInvalid
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.loader import IGNORED_DIRS, build_id
from arcana.logs import setup_logging
from arcana.manifest import Manifest, parse_manifest
from arcana.plugin_call import kernel_config
from arcana_host.catalog import KNOWN_GRANTS
from arcana_sdk.build import BuildError, build_plugin
from arcana_sdk.toolchain import ToolchainMissing

logger = logging.getLogger("arcana.dev")
# The kernel logs each plugin file's fate on this logger (arcana.kernel.Kernel._sync_one).
KERNEL_LOGGER = "arcana.kernel"
# What DIR holds that a build reads: the manifest at the top, and everything under these folders.
SOURCE_FILES = frozenset({"plugin.toml"})
SOURCE_DIRS = frozenset({"assembly", "src", "proto"})
# Editor backups and swap files, build output and half-written files: never a reason to rebuild.
SCRATCH_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", ".partial", ".wasm")
# Saves within this window are one rebuild (an editor's write + rename, a "save all").
DEBOUNCE_MS = 150
# How long a rebuild waits for the server to report the new build before saying it has not yet.
RELOAD_WAIT_S = 30.0
# Pause before watching DIR again after the watch itself failed (DIR was moved away, say).
RETRY_S = 1.0
# Tokens printed for --as: a working day; the ephemeral secret makes them die with the process anyway.
DEV_TOKEN_TTL_S = 12 * 3600
# Where this process keeps its ephemeral HS256 secret: its own variable, so a production secret in
# $ARCANA_JWT_SECRET is never the one dev tokens are signed with.
DEV_SECRET_ENV = "ARCANA_DEV_JWT_SECRET"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class DevOptions:
    """What the command line asked for."""

    src: Path
    port: int | None = None
    grpc_port: int | None = None
    config: Path | None = None
    db: Path | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()


def is_source(path: Path, root: Path) -> bool:
    """A file of ``root`` that a build reads: plugin.toml, or a file under assembly/, src/ or proto/.

    Not: the output .wasm, node_modules, .git, Zig caches, hidden files, editor scratch files.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    if len(parts) == 1:
        return parts[0] in SOURCE_FILES or parts[0].endswith(".py")  # a Python plugin's app.py and its modules
    if not parts or parts[0] not in SOURCE_DIRS:
        return False
    if any(part in IGNORED_DIRS or part.startswith(".") for part in parts):
        return False
    return not parts[-1].endswith(SCRATCH_SUFFIXES)


def source_filter(root: Path) -> Callable[[Change, str], bool]:
    """The watchfiles filter for ``root``'s sources (any kind of change: an editor may save by rename)."""

    def relevant(change: Change, path: str) -> bool:
        return is_source(Path(path), root)

    return relevant


def dev_config(
    operator: ArcanaConfig | None, folder: Path, db: Path, port: int | None = None, grpc_port: int | None = None
) -> ArcanaConfig:
    """The server's config: the operator's (or the defaults) on ``folder`` with its watcher on, one process,
    SQLite ``db``, dev-mode auth; with no operator config, every plugin may have what its manifest requests.
    """
    # The same rules as `arcana plugin call` (SQLite, auto-migrate, dev auth); the grants it reads from a
    # file are replaced below, as the file changes on every save.
    base = kernel_config(operator, folder / "none.wasm", folder, db)
    grants = operator.grants if operator is not None else {"*": sorted(KNOWN_GRANTS)}
    plugins = dataclasses.replace(base.plugins, watch=True)
    server = dataclasses.replace(
        base.server,
        workers=1,  # one process: the dev loop's own server
        http_port=base.server.http_port if port is None else port,
        grpc_port=base.server.grpc_port if grpc_port is None else grpc_port,
    )
    auth = base.auth
    if auth.algorithm == "HS256":
        auth = dataclasses.replace(auth, secret_env=DEV_SECRET_ENV)
    return dataclasses.replace(base, grants=grants, plugins=plugins, server=server, auth=auth)


def mint_token(config: ArcanaConfig, user: str, roles: Sequence[str]) -> str:
    """An access token the dev server accepts: signed as its kernel signs (same key, issuer, audience)."""
    token, _ = Tokens(config.auth).issue(user, list(roles), DEV_TOKEN_TTL_S)
    return token


def read_manifest(src: Path) -> Manifest | None:
    """DIR's plugin.toml, parsed; None when it cannot be (the build or the kernel says why)."""
    try:
        return parse_manifest((src / "plugin.toml").read_text())
    except (OSError, UnicodeDecodeError, ManifestInvalid):
        return None


def protected_entries(manifest: Manifest) -> list[str]:
    """Routes and gRPC methods a call needs a token for, as 'GET /path' or 'pkg.Service/Method'."""
    routes = [f"{r.method} {r.path.raw}" for r in manifest.routes if not r.public]
    return routes + [g.method for g in manifest.grpc if not g.public]


def served_file_name(src: Path) -> str:
    """The module's name in the served folder: DIR's name, made a safe file name."""
    name = _UNSAFE.sub("-", src.name).strip("-.")
    return f"{name or 'plugin'}.wasm"


@dataclass(frozen=True)
class KernelReport:
    """What the kernel did with the served file: serves ``build``, or refused it (``build`` None)."""

    build: str | None
    message: str


class ServedBuilds(logging.Handler):
    """The kernel's word on one plugin file, taken from its load events on the ``arcana.kernel`` logger.

    "plugin loaded" and "plugin file is back to the serving build" name the
    build now serving from the file; "plugin refused" means the old build (if
    any) still serves. Counted, so a rebuild can wait for the report that
    follows its own write.
    """

    SERVING = frozenset({"plugin loaded", "plugin file is back to the serving build"})
    REFUSED = "plugin refused: %s"

    def __init__(self, source: Path) -> None:
        super().__init__(logging.INFO)
        self.source = source
        self.serving: str | None = None
        self.count = 0
        self.last: KernelReport | None = None
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "source", None) != str(self.source):
            return
        build = getattr(record, "build", None)
        if record.msg in self.SERVING and isinstance(build, str):
            report = KernelReport(build, record.getMessage())
        elif record.msg == self.REFUSED:
            report = KernelReport(None, record.getMessage())
        else:
            return
        with self._lock:
            if report.build is not None:
                self.serving = report.build
            self.last = report
            self.count += 1

    async def report_after(self, count: int, timeout_s: float) -> KernelReport | None:
        """The first report after the ``count``-th; None when none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.count > count:
                    return self.last
            await asyncio.sleep(0.02)  # the kernel reports from the serving loop: poll it, cheaply
        return None

    @contextlib.contextmanager
    def listening(self) -> Iterator[ServedBuilds]:
        kernel = logging.getLogger(KERNEL_LOGGER)
        level = kernel.level
        kernel.setLevel(logging.INFO)  # its load lines are what dev reports, whatever the configured level
        kernel.addHandler(self)
        try:
            yield self
        finally:
            kernel.removeHandler(self)
            kernel.setLevel(level)


Builder = Callable[[Path, Path], Path]


class DevLoop:
    """Builds DIR into the served folder: once at start, then again on each batch of saved sources."""

    def __init__(
        self,
        src: Path,
        served: Path,
        staging: Path,
        builds: ServedBuilds,
        builder: Builder = build_plugin,
        reload_wait_s: float = RELOAD_WAIT_S,
    ) -> None:
        self.src = src
        self.served = served
        self.staged = staging / served.name  # beside the served folder (same file system), never in it
        self.builds = builds
        # The build in the served file: the kernel may refuse it and keep serving an older one.
        self.written: str | None = None
        self._builder = builder
        self._reload_wait_s = reload_wait_s

    def _build(self) -> str:
        """Build into the staging folder; the build's id (as the kernel will name it)."""
        self._builder(self.src, self.staged)
        return build_id(hashlib.sha256(self.staged.read_bytes()).hexdigest())

    def _failed(self, exc: Exception) -> None:
        keeps = f"build {self.builds.serving} keeps serving" if self.builds.serving else "nothing is served yet"
        logger.error("build failed (%s; save again to retry):\n%s", keeps, exc)

    def first_build(self) -> bool:
        """Build before the server starts (it then loads the module with the folder); False when it failed.

        A missing toolchain is raised: no save can fix it.
        """
        started = time.monotonic()
        try:
            build = self._build()
        except (BuildError, OSError) as exc:
            self._failed(exc)
            return False
        os.replace(self.staged, self.served)
        self.written = build
        logger.info("built %s in %.2f s (build %s)", self.src.name, time.monotonic() - started, build)
        return True

    async def rebuild(self, seen_at: float | None = None) -> KernelReport | None:
        """Build again and hand the module to the server; what the server then reports (None: nothing new)."""
        started = time.monotonic()
        seen_at = started if seen_at is None else seen_at
        try:
            build = await asyncio.to_thread(self._build)
        except (BuildError, ToolchainMissing, OSError) as exc:
            self._failed(exc)
            return None
        took = time.monotonic() - started
        if build == self.written:  # a comment or a blank line changed, say: nothing for the server to do
            self.staged.unlink(missing_ok=True)
            outcome = "already serving" if build == self.builds.serving else "which the server refused (see above)"
            logger.info("rebuilt in %.2f s: the same build %s, %s", took, build, outcome)
            return None
        count = self.builds.count
        os.replace(self.staged, self.served)
        self.written = build
        report = await self.builds.report_after(count, self._reload_wait_s)
        if report is None:
            logger.warning("rebuilt in %.2f s (build %s); the server has not loaded it yet", took, build)
        elif report.build is None:
            keeps = f"build {self.builds.serving} keeps serving" if self.builds.serving else "nothing is served"
            logger.error("rebuilt in %.2f s, but the server refused build %s (see above); %s", took, build, keeps)
        else:
            since = time.monotonic() - seen_at
            logger.info("rebuilt in %.2f s; serving build %s, %.2f s after the change", took, report.build, since)
        return report


async def watch_sources(dev: DevLoop, stop: asyncio.Event) -> None:
    """Rebuild on each batch of source changes until ``stop``; a failing watch is logged and started again."""
    while not stop.is_set():
        try:
            batches = awatch(
                dev.src,
                watch_filter=source_filter(dev.src),
                stop_event=stop,
                debounce=DEBOUNCE_MS,
                step=20,
                recursive=True,
            )
            async with contextlib.aclosing(batches):
                async for changes in batches:
                    seen_at = time.monotonic()
                    changed = sorted({str(Path(raw).relative_to(dev.src)) for _, raw in changes})
                    logger.info("changed: %s; rebuilding", ", ".join(changed))
                    await dev.rebuild(seen_at)
        except Exception as exc:  # noqa: BLE001  the watch must outlive any one failure, which is logged
            logger.error("watching %s failed (%s); watching again", dev.src, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)


def _usage(cause: str, fix: str) -> StartupFailure:
    return StartupFailure(ExitCode.CONFIG, cause, fix)


def check_options(options: DevOptions) -> Path:
    """DIR, resolved, once it is a plugin source folder; a usage error (exit code 2) otherwise."""
    src = options.src.resolve()
    if not src.is_dir():
        what = "is not a folder" if src.exists() else "does not exist"
        raise _usage(f"plugin folder {options.src} {what}", "give the folder that holds plugin.toml and the sources")
    if not (src / "plugin.toml").is_file():
        raise _usage(f"{options.src} has no plugin.toml", "give a plugin source folder (as for `arcana plugin build`)")
    if options.roles and options.user is None:
        raise _usage("--roles needs --as", "give --as USER with --roles")
    if options.user is not None and not options.user.strip():
        raise _usage("--as needs a user id", "give --as USER")
    return src


def run_dev(options: DevOptions, operator: ArcanaConfig | None) -> int:
    """Build, serve and watch until Ctrl-C (exit code 0)."""
    src = check_options(options)
    setup_logging(LoggingConfig(operator.logging.level if operator else "info", "text"))
    logging.getLogger("arcana.plugin").setLevel(logging.DEBUG)  # every line the plugin logs: it is the author's
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="arcana-dev-") as tmp:
        folder, staging = Path(tmp) / "plugins", Path(tmp) / "build"
        folder.mkdir()
        staging.mkdir()
        db = options.db.resolve() if options.db is not None else Path(tmp) / "arcana.db"
        config = dev_config(operator, folder, db, options.port, options.grpc_port)
        if config.auth.algorithm == "HS256":
            os.environ[DEV_SECRET_ENV] = secrets.token_urlsafe(48)  # read by the kernel's signer and by mint_token
        served = config.plugins_dir() / served_file_name(src)
        try:
            with ServedBuilds(served).listening() as builds:
                dev = DevLoop(src, served, staging, builds)
                dev.first_build()
                _announce_auth(src, config, options)
                asyncio.run(_serve_and_watch(config, dev))
        except KeyboardInterrupt:  # Ctrl-C before the server's own handler is in place
            pass
    return ExitCode.OK


def _announce_auth(src: Path, config: ArcanaConfig, options: DevOptions) -> None:
    """With --as, a ready token; else, when some routes need one, how to get it."""
    if options.user is not None:
        token = mint_token(config, options.user, options.roles)
        roles = ",".join(options.roles) or "no roles"
        print(f"token for {options.user} ({roles}), valid {DEV_TOKEN_TTL_S // 3600} h:", file=sys.stderr)
        print(token, flush=True)  # alone on stdout: TOKEN=$(...) or copy it
        print(f'  curl -H "Authorization: Bearer {token}" ...', file=sys.stderr)
        return
    manifest = read_manifest(src)
    needs = protected_entries(manifest) if manifest is not None else []
    if needs:
        logger.info(
            "%s need a token: restart with --as USER --roles ROLE,... and one is printed",
            ", ".join(needs),
        )


async def _serve_and_watch(config: ArcanaConfig, dev: DevLoop) -> None:
    from arcana.server import serve  # the edges load only when serving

    stop = asyncio.Event()

    def ready() -> None:
        server = config.server
        build = f"build {dev.builds.serving}" if dev.builds.serving else "no build yet"
        logger.info(
            "serving %s (%s) on http://%s:%d (gRPC %s:%d); saving plugin.toml or a file under src/, assembly/ "
            "or proto/ rebuilds it; Ctrl-C stops",
            dev.src,
            build,
            server.host,
            server.http_port,
            server.host,
            server.grpc_port,
        )

    watcher = asyncio.create_task(watch_sources(dev, stop))
    try:
        # Returns on SIGINT/SIGTERM (its own handlers); raises StartupFailure when it cannot start.
        await serve(config, "all", 0, ready)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(watcher, RETRY_S + 1)
        except TimeoutError:  # a build in flight: its thread ends with the process
            pass
