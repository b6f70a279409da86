"""Pack the AssemblyScript guest SDK as an npm tarball, byte for byte the same on every run.

A plugin outside the checkout cannot point npm at ``sdk/assemblyscript`` with a
``file:`` folder link (the path does not exist there, and npm does not install a
linked folder's own dependencies). A tarball does both: ``"@arcana/sdk":
"file:vendor/arcana-sdk-0.1.0.tgz"`` installs the SDK and ``@extism/as-pdk``.

npm records the tarball's hash in ``package-lock.json``, so the same SDK must give
the same bytes wherever and whenever it is packed: entries are sorted, carry one
fixed time, no owner and fixed modes, and the gzip header holds no name or time::

    from arcana_sdk.npm_pack import pack_guest_sdk
    tarball = pack_guest_sdk(Path("vendor"))     # vendor/arcana-sdk-<version>.tgz
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

from .sources import guest_sdk_dir

__all__ = ["PACKAGE_NAME", "pack_guest_sdk", "sdk_tarball_bytes", "sdk_tarball_name", "sdk_version"]

PACKAGE_NAME = "@arcana/sdk"
# The time npm itself stamps on packed entries (1985-10-26 08:15 UTC); any constant would do.
_ENTRY_MTIME = 499162500
_FILE_MODE = 0o644


def sdk_version(sdk_dir: Path | None = None) -> str:
    """The ``version`` of the SDK's package.json."""
    manifest = json.loads(((sdk_dir or guest_sdk_dir("assemblyscript")) / "package.json").read_text("utf-8"))
    version = manifest.get("version")
    if not isinstance(version, str) or not version:
        raise ValueError(f"the AssemblyScript SDK's package.json has no version: {manifest!r}")
    return version


def sdk_tarball_name(sdk_dir: Path | None = None) -> str:
    """``arcana-sdk-<version>.tgz``: npm's own name for a packed ``@arcana/sdk``."""
    return f"arcana-sdk-{sdk_version(sdk_dir)}.tgz"


def _package_files(sdk_dir: Path) -> list[str]:
    """package.json and every .ts source, as sorted POSIX paths relative to ``sdk_dir``.

    An explicit list rather than the whole folder: a checkout may hold node_modules
    or editor files there, which must never end up in a plugin's vendor folder.
    """
    found = ["package.json"]
    for root, dirs, names in os.walk(sdk_dir):
        dirs[:] = sorted(d for d in dirs if d != "node_modules" and not d.startswith("."))
        rel = Path(root).relative_to(sdk_dir)
        found += [(rel / n).as_posix() for n in names if n.endswith(".ts")]
    return sorted(found)


def _entry(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = _FILE_MODE
    info.size = size
    info.mtime = _ENTRY_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def sdk_tarball_bytes(sdk_dir: Path | None = None) -> bytes:
    """The npm tarball of the SDK: every file under ``package/``, gzip without a name or time."""
    sdk_dir = sdk_dir or guest_sdk_dir("assemblyscript")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel in _package_files(sdk_dir):  # files only: npm's own tarballs have no folder entries
            data = (sdk_dir / rel).read_bytes()
            tar.addfile(_entry(f"package/{rel}", len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of the run's name and time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def pack_guest_sdk(out_dir: Path, sdk_dir: Path | None = None) -> Path:
    """Write ``out_dir/arcana-sdk-<version>.tgz`` (creating ``out_dir``) and return its path."""
    sdk_dir = sdk_dir or guest_sdk_dir("assemblyscript")
    target = Path(out_dir) / sdk_tarball_name(sdk_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(sdk_tarball_bytes(sdk_dir))
    os.replace(partial, target)
    return target
