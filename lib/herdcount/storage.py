"""The edge of the library that touches files: list, read and write atomically.

Every output goes through :func:`write_bytes_atomic`, so a killed job leaves complete
files or none, and a rerun can trust any file it finds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def read_bytes(path: str | Path) -> bytes:
    """The contents of a file."""
    return Path(path).read_bytes()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder, then rename.

    The rename is atomic on one file system, so readers see the old file, the new one, or
    none; never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates files readable by the owner alone; outputs are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def list_files(folder: str | Path) -> list[str]:
    """Names of the plain files directly in ``folder``, sorted; hidden and temporary files
    (names starting with a dot) are left out. Empty when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


def file_stats(folder: str | Path) -> list[tuple[str, int]]:
    """``(name, size)`` of the files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    return [(name, (folder / name).stat().st_size) for name in list_files(folder)]
