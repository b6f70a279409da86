"""Turns a plugin file into a validated, compiled, ready-to-serve plugin.

Order matters: everything that can be checked without running guest code
(manifest, limits, grants, imports, exports) is checked first and every
problem is collected; only then is the module compiled and one instance made
to prove it starts. Nothing here touches the registry.
"""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from arcana.config import ArcanaConfig
from arcana.contract import EMPTY, Contract, ContractInvalid, build_contract, parse_schemas_section
from arcana.descriptors import DescriptorSet, RpcMethod
from arcana.engine import Engine, ListsHandlers, ModuleInfo
from arcana.errors import (
    DescriptorError,
    FileChanging,
    GuestFault,
    ManifestInvalid,
    ModuleRejected,
    PluginLoadError,
    Problem,
    WasmFormatError,
)
from arcana.executor import EffectiveLimits, InstancePool, ThreadShares
from arcana.inline import InlineRule
from arcana.manifest import Manifest, config_problems, parse_manifest
from arcana.registry import LoadedPlugin
from arcana.resilience.breaker import BreakerBoard, BreakerPolicy
from arcana.types import HOST_ABI_VERSION
from arcana.wasm_binary import DESCRIPTORS_SECTION, MANIFEST_SECTION, SCHEMAS_SECTION, custom_sections
from arcana_host.registry import Capabilities, ConfiguredPlugin

HANDLER_SIGNATURE = ((), ("i32",))
# Hex digits of a module's sha256 that name its build in log lines.
BUILD_ID_CHARS = 12


@dataclass(frozen=True)
class Checked:
    """Everything known about a plugin file before it is compiled."""

    wasm: bytes
    sha256: str
    manifest: Manifest
    limits: EffectiveLimits
    # The host as this plugin sees it: its granted capabilities and linked functions.
    host: ConfiguredPlugin
    info: ModuleInfo
    descriptors: DescriptorSet | None
    rpc: dict[str, RpcMethod]
    # The plugin's circuit breaker: resilience.plugin_breaker, as its [breaker] table tunes it.
    breaker: BreakerPolicy
    # The plugin's Extism config: its [config] defaults, as the operator's plugin_config.<name> overrides them.
    config: dict[str, str]
    # The routes' schemas, resolved and compiled (arcana.contract).
    contract: Contract = EMPTY


@dataclass(frozen=True)
class FileRules:
    """What a plugin file (module or sidecar) must be before it is read."""

    # The plugin folder: a file in it must resolve inside it, unless follow_outside.
    root: Path
    max_bytes: int
    follow_outside: bool = False


class FileRefused(Exception):
    """A plugin file that breaks a FileRules rule; ``problem`` says which, with the fix."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def resolve_inside(path: Path, rules: FileRules) -> Path:
    """The real file behind ``path``; FileRefused when a file in the folder is a symlink that leads out of it.

    Only a path in the folder is held to it: `arcana plugin check FILE` reads
    files from anywhere. The folder itself may be a symlink (a release switch).
    """
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(rules.root))
    in_folder = _is_under(path, rules.root) or _is_under(path, real_root)
    if rules.follow_outside or not in_folder:
        return real
    if not _is_under(real, real_root):
        raise FileRefused(
            Problem(
                "file",
                f"{path.name} is a symlink to {real}, outside the plugins folder {rules.root}",
                "copy the file into the folder, or set plugins.follow_symlinks_outside: true in the config",
            )
        )
    return real


def read_stable(path: Path, rules: FileRules) -> bytes:
    """Read a plugin file whole: a regular file within the size limit, that does not change under us.

    The type and size are checked on the open file before reading, so a huge
    file costs a stat, not its size in memory, and a FIFO never blocks
    (O_NONBLOCK). A file that changes while read (a writer still at work)
    raises FileChanging; the watcher's next event reads it again.
    """
    real = resolve_inside(path, rules)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise FileRefused(Problem("file", f"{path.name} is not a regular file", "put a plain file there"))
        if before.st_size > rules.max_bytes:
            raise FileRefused(
                Problem(
                    "file",
                    f"{path.name} is {before.st_size} bytes, above the limit of {rules.max_bytes} bytes",
                    "make the module smaller, or raise plugins.max_module_bytes in the config",
                )
            )
        data = f.read(rules.max_bytes + 1)
    after = os.stat(real)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        raise FileChanging(str(path))
    return data


def is_present(path: Path) -> bool:
    """The path names something, a dangling symlink included (``exists`` follows links and says no)."""
    return path.exists() or path.is_symlink()


def sidecar_of(path: Path) -> Path:
    return path.with_suffix(".toml")


# NAME.schemas.json beside NAME.wasm: route schemas that win over the embedded ones, as NAME.pb does.
SCHEMAS_SIDECAR = ".schemas.json"


def schemas_sidecar_of(path: Path) -> Path:
    return path.with_suffix(SCHEMAS_SIDECAR)


class PluginLoader:
    def __init__(
        self,
        config: ArcanaConfig,
        engine: Engine,
        capabilities: Capabilities,
        threads: ThreadShares | ThreadPoolExecutor,
        breakers: BreakerBoard | None = None,
    ) -> None:
        """``threads``: the kernel's per-plugin thread shares; a bare executor (tools that never serve) runs all.

        ``breakers``: the kernel's plugin breakers; each loaded version gets a fresh one from it (put on
        the board by the kernel once the version is installed). None: no breaker (tools that never serve).
        """
        self._config = config
        self._breakers = breakers
        self._engine = engine
        self._capabilities = capabilities
        self._threads = threads if isinstance(threads, ThreadShares) else ThreadShares(1, threads)
        plugins = config.plugins
        self._files = FileRules(config.plugins_dir(), plugins.max_module_bytes, plugins.follow_symlinks_outside)

    def check(self, path: Path) -> Checked:
        """Validate and link without compiling (no I/O but reading the file); PluginLoadError lists every problem."""
        try:
            wasm = read_stable(path, self._files)
        except FileRefused as exc:
            raise PluginLoadError(str(path), [exc.problem]) from None
        try:
            sections = custom_sections(wasm)  # walked once: manifest and descriptors both live here
        except WasmFormatError as exc:
            raise PluginLoadError(str(path), [Problem("module", str(exc), "rebuild the plugin")]) from exc
        manifest = self._manifest(path, sections)
        if manifest.host_abi > HOST_ABI_VERSION:  # alone: its imports and shapes would be judged by the wrong ABI
            raise PluginLoadError(str(path), [host_abi_problem(manifest.host_abi)], manifest.name)
        problems: list[Problem] = []
        limits = self._limits(manifest, problems)
        breaker = self._breaker(manifest, problems)
        config = self._plugin_config(manifest, problems)
        try:
            info = self._engine.inspect(wasm)
        except ModuleRejected as exc:
            problem = Problem("module", str(exc), "rebuild the plugin")
            raise PluginLoadError(str(path), [problem], manifest.name) from exc
        problems += foreign_problems(info)
        configured = self._capabilities.configure(manifest, self._config.granted(manifest.name), info.imports)
        if not isinstance(configured, ConfiguredPlugin):
            problems += configured
        problems += component_export_problems(info) if info.component else self._exports(manifest, info)
        descriptors, rpc = self._rpc(path, sections, manifest, problems)
        contract = self._contract(path, sections, manifest, descriptors, problems)
        if problems or not isinstance(configured, ConfiguredPlugin):
            raise PluginLoadError(str(path), problems, manifest.name)
        sha256 = hashlib.sha256(wasm).hexdigest()
        return Checked(wasm, sha256, manifest, limits, configured, info, descriptors, rpc, breaker, config, contract)

    def load(self, path: Path) -> LoadedPlugin:
        checked = self.check(path)
        m = checked.manifest
        try:
            compiled = self._engine.compile(
                checked.wasm,
                checked.host.functions,
                memory_mb=checked.limits.memory_mb,
                timeout_ms=checked.limits.timeout_ms,
                config=checked.config,
            )
            warm = compiled.instantiate()
            missing = handler_problems(m, warm) if checked.info.component else []
        except ModuleRejected as exc:
            raise PluginLoadError(str(path), [Problem("module", str(exc), "rebuild the plugin")], m.name) from exc
        except GuestFault as exc:
            problem = Problem("module", f"handlers() failed: {exc.detail}", "rebuild the plugin")
            raise PluginLoadError(str(path), [problem], m.name) from exc
        if missing:
            raise PluginLoadError(str(path), missing, m.name)
        ex = self._config.executor
        inline = self._inline_rule(checked)
        share = self._threads.get(m.name)  # every version of a plugin runs on the same threads
        breaker = None if self._breakers is None else self._breakers.make(m.name, checked.breaker, f"plugin '{m.name}'")
        pool = InstancePool(
            m.name,
            m.version,
            compiled,
            checked.limits,
            share,
            warm,
            ex.max_queue_wait_ms,
            ex.answer_reserve_ms,
            breaker,
            idle_ttl_s=ex.idle_instance_ttl_s,
            min_idle=ex.min_idle_instances,
            inline=inline,
            watchdog=None if inline is None else self._threads.watchdog(inline),
            build=build_id(checked.sha256),
        )
        return LoadedPlugin(
            m, path, checked.sha256, pool, descriptors=checked.descriptors, rpc=checked.rpc, contract=checked.contract
        )

    def _inline_rule(self, checked: Checked) -> InlineRule | None:
        """The inline rule when this plugin may run on the event loop: every host function it links is quick."""
        ex = self._config.executor
        # A component never runs inline: its calls cost more than an inline budget (about a
        # millisecond of CPython), and its store cannot be stopped from the watchdog's thread.
        if checked.info.component:
            return None
        if not ex.inline_max_ms or not all(fn.quick for fn in checked.host.functions):
            return None
        return InlineRule(ex.inline_max_ms, ex.inline_after_calls)

    def _rpc(
        self, path: Path, sections: dict[str, bytes], manifest: Manifest, problems: list[Problem]
    ) -> tuple[DescriptorSet | None, dict[str, RpcMethod]]:
        """Descriptors (sidecar NAME.pb wins over the embedded section) and each [[grpc]] method in them."""
        sidecar = path.with_suffix(".pb")
        try:
            raw = read_stable(sidecar, self._files) if is_present(sidecar) else sections.get(DESCRIPTORS_SECTION)
        except FileRefused as exc:
            problems.append(exc.problem)
            return None, {}
        if raw is None:
            if manifest.grpc:
                problems.append(
                    Problem(
                        "grpc",
                        "methods are declared but the module carries no protobuf descriptors",
                        f"build with `arcana plugin build` (with a proto/ folder) or add a sidecar {sidecar.name}",
                    )
                )
            return None, {}
        try:
            descriptors = DescriptorSet.parse(raw)
        except DescriptorError as exc:
            problems.append(
                Problem("descriptors", str(exc), "rebuild the descriptor set with protoc --include_imports")
            )
            return None, {}
        rpc = {}
        for i, entry in enumerate(manifest.grpc):
            try:
                rpc[entry.method] = descriptors.method(entry.method)
            except DescriptorError as exc:
                problems.append(
                    Problem(f"grpc[{i}].method", str(exc), "declare a unary method that the .proto files define")
                )
        return descriptors, rpc

    def _contract(
        self,
        path: Path,
        sections: dict[str, bytes],
        manifest: Manifest,
        descriptors: DescriptorSet | None,
        problems: list[Problem],
    ) -> Contract:
        """The routes' schemas (sidecar NAME.schemas.json wins over the embedded section), compiled once."""
        if not any(route.has_contract for route in manifest.routes):
            return EMPTY
        sidecar = schemas_sidecar_of(path)
        try:
            raw = read_stable(sidecar, self._files) if is_present(sidecar) else sections.get(SCHEMAS_SECTION)
        except FileRefused as exc:
            problems.append(exc.problem)
            return EMPTY
        files, found = parse_schemas_section(raw)
        problems += found
        try:
            return build_contract(manifest, files, descriptors)
        except ContractInvalid as exc:
            problems += exc.problems
            return EMPTY

    def _manifest(self, path: Path, sections: dict[str, bytes]) -> Manifest:
        sidecar = sidecar_of(path)
        try:
            if is_present(sidecar):  # a dangling sidecar is reported, not silently replaced by the embedded one
                text = read_stable(sidecar, self._files).decode("utf-8")
            else:
                embedded = sections.get(MANIFEST_SECTION)
                if embedded is None:
                    raise PluginLoadError(
                        str(path),
                        [
                            Problem(
                                "manifest",
                                "no manifest found",
                                f"build with `arcana plugin build`, or put a sidecar {sidecar.name} beside it",
                            )
                        ],
                    )
                text = embedded.decode("utf-8")
            return parse_manifest(text)
        except ManifestInvalid as exc:
            raise PluginLoadError(str(path), exc.problems, exc.name) from exc
        except FileRefused as exc:
            raise PluginLoadError(str(path), [exc.problem]) from None
        except (UnicodeDecodeError, OSError) as exc:
            raise PluginLoadError(str(path), [Problem("manifest", f"cannot read: {exc}")]) from exc

    def _limits(self, manifest: Manifest, problems: list[Problem]) -> EffectiveLimits:
        ex = self._config.executor
        asked = manifest.limits
        values = {}
        for key, default, ceiling in (
            ("memory_mb", ex.default_memory_mb, ex.max_memory_mb),
            ("timeout_ms", ex.default_timeout_ms, ex.max_timeout_ms),
            ("max_concurrency", ex.default_max_concurrency, ex.max_concurrency),
        ):
            value = getattr(asked, key) or default
            if value > ceiling:
                problems.append(
                    Problem(
                        f"limits.{key}",
                        f"{value} is above the operator's maximum {ceiling}",
                        f"ask for at most {ceiling}, or raise executor.max_{key.removeprefix('max_')} in the config",
                    )
                )
                value = ceiling
            values[key] = value
        return EffectiveLimits(**values)

    def _breaker(self, manifest: Manifest, problems: list[Problem]) -> BreakerPolicy:
        """The operator's plugin breaker, as the manifest's [breaker] tunes it within the operator's ceilings."""
        res = self._config.resilience
        default, asked = res.plugin_breaker, manifest.breaker
        values: dict[str, float] = {}
        for key, ceiling, setting in (
            ("failure_threshold", res.max_failure_threshold, "resilience.max_failure_threshold"),
            ("cool_down_s", res.max_cool_down_s, "resilience.max_cool_down_s"),
            # Probes needed to close: a plugin may not ask for more than the failures that open it at most.
            ("half_open_probes", res.max_failure_threshold, "resilience.max_failure_threshold"),
        ):
            value = getattr(asked, key)
            if value is None:
                value = getattr(default, key)
            elif value > ceiling:
                problems.append(
                    Problem(
                        f"breaker.{key}",
                        f"{value} is above the operator's maximum {ceiling}",
                        f"ask for at most {ceiling}, or raise {setting} in the config",
                    )
                )
                value = getattr(default, key)
            values[key] = value
        return BreakerPolicy(int(values["failure_threshold"]), values["cool_down_s"], int(values["half_open_probes"]))

    def _plugin_config(self, manifest: Manifest, problems: list[Problem]) -> dict[str, str]:
        """The manifest's [config] defaults under the operator's ``plugin_config.<name>``.

        The operator sets only keys the manifest declares: a typo would otherwise be a setting
        silently never read, and the manifest is where an author documents what a plugin reads.
        """
        given = self._config.plugin_config.get(manifest.name, {})
        where = f"plugin_config.{manifest.name}"
        found = config_problems(given, where)
        for key in sorted(given.keys() - manifest.config.keys()):
            declared = ", ".join(sorted(manifest.config)) or "none"
            found.append(
                Problem(
                    f"{where}.{key}",
                    f"is not a key the plugin's [config] declares (it declares: {declared})",
                    f"remove it from {where} in the config, or declare {key} with its default in the manifest's"
                    " [config]",
                )
            )
        problems += found
        return {**manifest.config, **given} if not found else dict(manifest.config)

    def _exports(self, manifest: Manifest, info: ModuleInfo) -> list[Problem]:
        problems = []
        for handler in sorted(manifest.handlers()):
            signature = info.exports.get(handler)
            if signature is None:
                problems.append(
                    Problem(
                        f"handler {handler}",
                        "is not exported by the module",
                        f"export a function named '{handler}' or fix the manifest",
                    )
                )
            elif signature != HANDLER_SIGNATURE:
                problems.append(
                    Problem(
                        f"handler {handler}",
                        f"has signature {signature}, expected () -> i32",
                        "export it with the Extism handler ABI",
                    )
                )
        return problems


# What every component must export (sdk/wit/arcana.wit): the handler entry and its list of handlers.
COMPONENT_EXPORTS = ("handle", "handlers")
FIX_COMPONENT = "build with `arcana plugin build` (stubbed WASI)"


def foreign_problems(info: ModuleInfo) -> list[Problem]:
    """A component's imports that no engine offers (WASI, another package, another host ABI)."""
    return [
        Problem(
            f"imports {name}",
            f"not offered: a component may import only the arcana:plugin interfaces of host ABI {HOST_ABI_VERSION}",
            FIX_COMPONENT,
        )
        for name in info.foreign
    ]


def component_export_problems(info: ModuleInfo) -> list[Problem]:
    return [
        Problem(f"export {name}", "is not exported by the component", FIX_COMPONENT)
        for name in COMPONENT_EXPORTS
        if name not in info.exports
    ]


def handler_problems(manifest: Manifest, warm: object) -> list[Problem]:
    """The manifest's handlers that the component's ``handlers()`` does not list."""
    served = set(warm.handlers()) if isinstance(warm, ListsHandlers) else set()
    return [
        Problem(
            f"handler {handler}",
            "is not among the handlers the component serves (its handlers() export)",
            f"register a handler named '{handler}' in the plugin's app.py, or fix the manifest",
        )
        for handler in sorted(manifest.handlers() - served)
    ]


def build_id(sha256: str) -> str:
    """A build's short name in log lines: its sha256's first 12 hex digits (as `arcana plugin check` prints)."""
    return sha256[:BUILD_ID_CHARS]


def host_abi_problem(built_for: int) -> Problem:
    """A plugin built for a host ABI newer than this kernel's."""
    return Problem(
        "plugin.host_abi",
        f"built for host ABI {built_for}; this kernel speaks {HOST_ABI_VERSION}",
        f"upgrade Arcana, or rebuild the plugin with an SDK for ABI {HOST_ABI_VERSION}",
    )


def is_plugin_file(path: Path, root: Path) -> bool:
    """A module that ``plugin_files(root)`` would list: the watcher and the scan must agree."""
    return path.suffix == ".wasm" and in_served_folder(path, root)


def in_served_folder(path: Path, root: Path) -> bool:
    """Not inside a folder that the scan skips (tool output, hidden folders), counting from ``root`` down.

    Only the folders below root count: the plugin folder may itself live
    under a hidden one (~/.local/share/arcana/plugins).
    """
    try:
        folders = path.relative_to(root).parts[:-1]
    except ValueError:  # not under root as written: judge by the names alone
        return not any(part in IGNORED_DIRS for part in path.parts)
    return not any(part in IGNORED_DIRS or part.startswith(".") for part in folders)


IGNORED_DIRS = frozenset({"node_modules", ".zig-cache", "zig-cache", "zig-out", ".git"})


def plugin_files(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".wasm")]
    return found
