"""Are the optional toolchain packages installed? One clear answer instead of a deep ImportError.

The guest toolchains (``ziglang`` for Zig and C, ``componentize-py`` for
Python, ``grpcio-tools`` for protoc)
are the ``toolchain`` extra: a server that only serves plugins needs neither,
so they are checked where a build first needs them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

__all__ = [
    "COMPONENTIZE_PY",
    "INSTALL_HINT",
    "MIN_ZIG",
    "ToolchainMissing",
    "require_componentize_py",
    "require_grpc_tools",
    "require_zig",
]

INSTALL_HINT = "pip install 'arcana[toolchain]'"
# The Zig SDK (sdk/zig) uses the 0.15 standard library (std.Io.Writer and friends).
MIN_ZIG = (0, 15)
# Python plugins are built with exactly this componentize-py: its bundled CPython and its binding generator
# (the `wit_world` module the Python SDK imports) are what the SDK and the kernel are tested against.
COMPONENTIZE_PY = "0.25.1"


class ToolchainMissing(Exception):
    """A build step needs a toolchain package that is not installed (or too old); the message says how to fix it."""


def require_grpc_tools() -> None:
    """protoc comes from grpcio-tools."""
    if importlib.util.find_spec("grpc_tools") is None:
        raise ToolchainMissing(f"protoc (grpcio-tools) is not installed; {INSTALL_HINT}")


def require_zig() -> None:
    """Zig (and ``zig cc``) come from the ``ziglang`` wheel, which must be recent enough for the SDK."""
    try:
        version = importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError:
        raise ToolchainMissing(f"the Zig toolchain (ziglang) is not installed; {INSTALL_HINT}") from None
    if _major_minor(version) < MIN_ZIG:
        wanted = ".".join(map(str, MIN_ZIG))
        raise ToolchainMissing(f"ziglang {version} is too old for the Zig SDK; pip install -U 'ziglang>={wanted}'")


def require_componentize_py() -> None:
    """Python plugins are made into components by ``componentize-py``, pinned to the tested version."""
    try:
        version = importlib.metadata.version("componentize-py")
    except importlib.metadata.PackageNotFoundError:
        raise ToolchainMissing(
            f"the Python plugin toolchain (componentize-py) is not installed; {INSTALL_HINT}"
        ) from None
    if version != COMPONENTIZE_PY:
        raise ToolchainMissing(
            f"componentize-py {version} is installed but Python plugins are built with {COMPONENTIZE_PY}; "
            f"pip install 'componentize-py=={COMPONENTIZE_PY}'"
        )


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = [*(int(p) for p in re.findall(r"\d+", version)[:2]), 0, 0][:2]
    return major, minor
