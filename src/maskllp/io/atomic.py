"""Writing outputs so that a failure never leaves a half-written file or folder behind.

``atomic_file(path)`` yields a temporary path next to ``path``; it is renamed onto ``path`` only if
the block finishes. ``staged_directory(path)`` does the same for a whole output folder: everything is
written into a hidden sibling folder that replaces ``path`` at the end (an existing ``path`` is kept
until then; with ``overwrite=False`` an existing non-empty ``path`` is refused up front).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from maskllp.errors import InputError


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder; move it onto ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, no BOM) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_output_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse an existing non-empty output folder unless ``overwrite``; return ``path``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "output path exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(path, "output folder exists and is not empty (use --overwrite)")
    return path


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden staging folder; it replaces ``path`` only when the block succeeds."""
    path = check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        yield stage
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(stage, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, path)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
