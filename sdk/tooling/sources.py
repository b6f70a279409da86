"""Where the guest SDK sources are: package data of ``arcana_sdk``, found through importlib.resources.

The repository keeps them in ``sdk/zig``, ``sdk/c``, ``sdk/assemblyscript`` and
``sdk/python`` (the ``arcana_plugin`` package), and the WIT contract of
WebAssembly components in ``sdk/wit``; ``sdk/tooling/guest/<language>`` and
``sdk/tooling/guest/wit`` are symbolic links to those folders, so a
checkout (editable install) and an installed wheel (where the build copied
the files into ``arcana_sdk/guest/``) answer with the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["GUEST_LANGUAGES", "guest_sdk_dir", "wit_dir"]

GUEST_LANGUAGES = ("zig", "c", "assemblyscript", "python")


def guest_sdk_dir(language: str) -> Path:
    """The folder holding the guest SDK for ``language`` (one of GUEST_LANGUAGES), as a real path.

    The compilers need real files, so an install that is not on a file system
    (a zip import) is refused with a message rather than extracted.
    """
    if language not in GUEST_LANGUAGES:
        raise ValueError(f"no guest SDK for {language!r}; known: {', '.join(GUEST_LANGUAGES)}")
    return _package_folder(language, f"the {language} guest SDK")


def wit_dir() -> Path:
    """The folder holding ``arcana.wit``, the WIT package every Python plugin's world is cut from."""
    return _package_folder("wit", "the WIT contract (arcana.wit)")


def _package_folder(name: str, what: str) -> Path:
    folder = files("arcana_sdk") / "guest" / name
    if not isinstance(folder, Path):
        raise FileNotFoundError(f"{what} is not on the file system ({folder}); install unzipped")
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} is missing from this install ({folder}); reinstall arcana")
    return folder.resolve()
