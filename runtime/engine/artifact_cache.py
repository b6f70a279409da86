"""Compiled components on disk, so a restart or a second node skips the seconds a compile takes.

Deserialized bytes are trusted native code: whoever can write an artifact that
the kernel loads runs code in the kernel. So the folder is the kernel's own
(created 0700; refused when another user owns it or others may write it, and
never the plugins folder, which authors write), and every artifact carries an
HMAC over its key and bytes with a secret kept in the folder (``.key``, 0600):
a file the kernel did not write, or wrote for another key, is refused,
deleted and the component compiled again. The key names the component's
sha256, the wasmtime version and the engine's config, so an upgrade or a
config change never meets an old artifact. The folder is bounded in bytes:
the least recently used artifacts go first (a hit touches its file).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client import Counter

logger = logging.getLogger("arcana.engine")
T = TypeVar("T")
MAGIC = b"ARCANA-A1"
MAC_BYTES = 32
KEY_FILE = ".key"
SUFFIX = ".cwasm"
# outcome: hit | miss (none cached) | refused (tampered, foreign or incompatible: deleted) | stored | evicted
ARTIFACTS = Counter("arcana_component_artifacts_total", "Compiled-component cache lookups and writes", ["outcome"])


class CacheFolderRefused(Exception):
    """The folder cannot hold trusted code: the message says why and how to fix it."""


@dataclass
class CacheStats:
    """What this cache did since it was opened (``ARTIFACTS`` counts the same for the whole process)."""

    hits: int = 0
    misses: int = 0
    stored: int = 0
    refused: int = 0
    evicted: int = 0

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        ARTIFACTS.labels({"hits": "hit", "misses": "miss"}.get(outcome, outcome)).inc()


def check_folder(folder: Path, forbidden: Path | None = None) -> None:
    """Create ``folder`` (0700) if needed; CacheFolderRefused when it may not hold trusted code."""
    if forbidden is not None:
        real, bad = Path(os.path.realpath(folder)), Path(os.path.realpath(forbidden))
        if real == bad or real.is_relative_to(bad):
            raise CacheFolderRefused(
                f"the artifact cache {folder} is inside the plugins folder {forbidden}, which plugin authors write; "
                "set executor.artifact_cache_dir to a folder of the kernel's own"
            )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise CacheFolderRefused(
            f"the artifact cache {folder} belongs to uid {info.st_uid}, not to this kernel's user ({os.getuid()}); "
            "point executor.artifact_cache_dir at a folder this user owns"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheFolderRefused(
            f"the artifact cache {folder} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"chmod 700 {folder}"
        )


class ArtifactCache:
    def __init__(self, folder: Path, max_bytes: int, fingerprint: str, forbidden: Path | None = None) -> None:
        """``fingerprint``: the engine's version and config; ``forbidden``: a folder it must not be in (plugins)."""
        check_folder(folder, forbidden)
        self.folder = folder
        self.max_bytes = max_bytes
        self._fingerprint = fingerprint
        self._secret = self._load_secret()
        self._lock = threading.Lock()  # stores and evictions; loads need none (a file is renamed in whole)
        self.stats = CacheStats()

    def _load_secret(self) -> bytes:
        path = self.folder / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_bytes()
            if len(secret) == MAC_BYTES:
                return secret
            path.unlink()  # a damaged key: every artifact signed with it is refused and rebuilt
            return self._load_secret()
        secret = os.urandom(MAC_BYTES)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret

    def key(self, sha256: str) -> str:
        return hashlib.sha256(f"{sha256}\0{self._fingerprint}".encode()).hexdigest()

    def path(self, sha256: str) -> Path:
        return self.folder / f"{self.key(sha256)}{SUFFIX}"

    def _mac(self, key: str, body: bytes) -> bytes:
        return hmac.new(self._secret, key.encode() + b"\0" + body, hashlib.sha256).digest()

    def load(self, sha256: str, deserialize: Callable[[bytes], T]) -> T | None:
        """The cached artifact of ``sha256`` through ``deserialize``; None when there is none usable.

        ``deserialize`` raises ValueError for bytes its engine refuses.

        An artifact whose MAC does not match (tampered, copied from another key or another cache)
        or that ``deserialize`` refuses is deleted: the caller compiles and stores a good one.
        """
        key = self.key(sha256)
        path = self.folder / f"{key}{SUFFIX}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.stats.count("misses")
            return None
        head = len(MAGIC) + MAC_BYTES
        body = data[head:]
        if data[: len(MAGIC)] != MAGIC or not hmac.compare_digest(data[len(MAGIC) : head], self._mac(key, body)):
            self._refuse(path, "it was not written by this kernel for this component")
            return None
        try:
            value = deserialize(body)
        except ValueError as exc:  # the engine's refusal (another version or config): compile again
            self._refuse(path, f"the engine refused it ({str(exc).splitlines()[0] if str(exc) else exc})")
            return None
        self.stats.count("hits")
        try:
            os.utime(path)  # recently used: the last to be evicted
        except OSError:
            pass
        return value

    def _refuse(self, path: Path, why: str) -> None:
        self.stats.count("refused")
        self.stats.misses += 1  # a refusal is also a miss for the caller, counted once on the metric
        logger.warning("compiled artifact %s refused: %s; compiling again", path.name, why)
        try:
            path.unlink()
        except OSError:
            pass

    def store(self, sha256: str, body: bytes) -> None:
        """Write the artifact atomically, then evict the least recently used beyond ``max_bytes``."""
        if len(body) + len(MAGIC) + MAC_BYTES > self.max_bytes:
            return  # would evict everything and still not fit
        key = self.key(sha256)
        target = self.folder / f"{key}{SUFFIX}"
        tmp = self.folder / f".{key}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + self._mac(key, body) + body)
            tmp.replace(target)
        except OSError as exc:
            logger.warning("cannot write compiled artifact %s: %s", target.name, exc)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self.stats.count("stored")
            self._evict()

    def _evict(self) -> None:
        entries = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                info = path.stat()
            except OSError:
                continue
            entries.append((info.st_mtime_ns, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda entry: entry[0]):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            self.stats.count("evicted")

    def size(self) -> int:
        """The artifacts' bytes on disk."""
        return sum(p.stat().st_size for p in self.folder.glob(f"*{SUFFIX}"))
