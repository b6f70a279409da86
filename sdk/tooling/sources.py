"""Where the guest SDK sources are: package data of ``arcana_sdk``, found through importlib.resources.

The repository keeps them in ``sdk/zig``, ``sdk/c`` and ``sdk/assemblyscript``;
``sdk/tooling/guest/<language>`` are symbolic links to those folders, so a
checkout (editable install) and an installed wheel (where the build copied
the files into ``arcana_sdk/guest/``) answer with the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["GUEST_LANGUAGES", "guest_sdk_dir"]

GUEST_LANGUAGES = ("zig", "c", "assemblyscript")


def guest_sdk_dir(language: str) -> Path:
    """The folder holding the guest SDK for ``language`` (one of GUEST_LANGUAGES), as a real path.

    The compilers need real files, so an install that is not on a file system
    (a zip import) is refused with a message rather than extracted.
    """
    if language not in GUEST_LANGUAGES:
        raise ValueError(f"no guest SDK for {language!r}; known: {', '.join(GUEST_LANGUAGES)}")
    folder = files("arcana_sdk") / "guest" / language
    if not isinstance(folder, Path):
        raise FileNotFoundError(f"the {language} guest SDK is not on the file system ({folder}); install unzipped")
    if not folder.is_dir():
        raise FileNotFoundError(f"the {language} guest SDK is missing from this install ({folder}); reinstall arcana")
    return folder.resolve()
