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
import time
from collections.abc import Iterator, Sequence
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


OUTPUT_MARKER = ".maskllp-output"
"""Written into every folder maskllp creates; ``--overwrite`` replaces only folders that hold it."""


def _is_under(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_parents_are_folders(path: str | os.PathLike[str]) -> None:
    """InputError when a parent of ``path`` that exists is a file (nothing could be written there)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(path, f"cannot be written: {parent} is a file, not a folder", "--out")
            return


def check_output_file(path: str | os.PathLike[str], suffixes: Sequence[str] | None = None) -> Path:
    """The rules for an output *file* (``--out fig.png``, ``--out report.json``), checked before any
    work: not a folder, its parent not a file, one of ``suffixes`` when given. Returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder: name the file to write", "--out")
    check_parents_are_folders(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(path, f"cannot write a {path.suffix or 'suffix-less'} file: use one of "
                               f"{', '.join(suffixes)}", "--out")
    return path


def check_output_dir(path: str | os.PathLike[str], overwrite: bool,
                     inputs: Sequence[str | os.PathLike[str] | None] = ()) -> Path:
    """The rules every ``--out`` follows; returns ``path``. InputError (one line) when:

    * ``path`` exists and is not a folder;
    * it is the current folder, one of its parents, the home folder or the root;
    * it is one of ``inputs`` or holds one (``--out`` onto the images or the model would delete them);
    * it is a non-empty folder and not ``overwrite``;
    * with ``overwrite``, it is a non-empty folder maskllp did not write (no :data:`OUTPUT_MARKER`):
      maskllp never deletes files it did not write.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "output path exists and is not a folder")
    check_parents_are_folders(path)
    resolved = path.resolve()
    special = (Path.home().resolve(), Path(resolved.anchor))
    if _is_under(Path.cwd().resolve(), resolved) or resolved in special:
        raise InputError(path, "is the current folder, one of its parents, the home folder or the root: "
                               "choose a new folder for the outputs", "--out")
    for given in inputs:
        if given is not None and _is_under(Path(given).resolve(), resolved):
            raise InputError(path, f"holds {given}, an input of this run: choose another --out", "--out")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise InputError(path, "output folder exists and is not empty (use --overwrite)")
        if not (path / OUTPUT_MARKER).is_file():
            raise InputError(path, "holds files maskllp did not write: --overwrite replaces only maskllp's "
                                   "own output folders; choose another --out (or empty it yourself)", "--out")
    return path


SCRATCH_SUFFIXES = (".partial", ".training", ".old")
"""Suffixes of the hidden folders a run writes next to its ``--out`` (``.<name>.<random><suffix>``)."""
_OWNER = ".owner"


def scratch_dir(out: Path, suffix: str) -> Path:
    """A new hidden folder ``.<out.name>.<random><suffix>`` next to ``out``, holding the creating
    process's id (``.owner``) so that :func:`remove_leftovers` can tell a killed run's folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent))
    os.chmod(path, 0o777 & ~current_umask())  # mkdtemp makes 0700
    (path / _OWNER).write_text(str(os.getpid()), encoding="utf-8")
    return path


def _owner(folder: Path) -> int:
    """The process id in a scratch folder's ``.owner`` (0 when unreadable)."""
    try:
        return int((folder / _OWNER).read_text().strip())
    except (OSError, ValueError):
        return 0


def take_over_leftover(out: Path, suffix: str, holding: str) -> Path | None:
    """A scratch folder ``.<out.name>.*<suffix>`` of a run into ``out`` that was killed (its process
    gone) and holds ``holding``: made this process's (its ``.owner`` rewritten) and returned, to be
    continued; None when there is none."""
    if not out.parent.is_dir():
        return None
    for p in sorted(out.parent.glob(f".{glob_escape(out.name)}.*{suffix}")):
        if not p.is_dir() or not (p / holding).exists():
            continue
        pid = _owner(p)
        if pid and pid != os.getpid() and _alive(pid):
            continue
        (p / _OWNER).write_text(str(os.getpid()), encoding="utf-8")
        return p
    return None


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the scratch folders of ``out`` whose run is gone (killed: its process no longer
    exists); return them. Folders of live processes (another rank of a multi-GPU run) are kept."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.glob(f".{glob_escape(out.name)}.*"):
        if not p.is_dir() or not p.name.endswith(SCRATCH_SUFFIXES):
            continue
        pid = _owner(p)
        if pid == os.getpid() or (pid and _alive(pid)):
            continue
        if not pid and p.stat().st_mtime > time.time() - 60:
            continue  # being created right now (its owner file not yet written)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold ``<parent>/.<name>.lock`` while a run writes ``path``: a second run into the same folder
    is refused in one line instead of replacing the first one's results. A lock left by a killed
    run (its process gone) is taken over; a lock this process holds already is held once more. The
    extra processes of a multi-GPU (DDP) run, which write nothing, take no lock."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid == os.getpid():
                yield
                return
            if pid and _alive(pid):
                raise InputError(path, f"another maskllp run (process {pid}) is writing this folder; wait "
                                       "for it or choose another --out", "--out") from None
            lock.unlink(missing_ok=True)  # left by a killed run
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise InputError(path, f"cannot take the lock {lock}", "--out")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike[str], overwrite: bool = False,
                     inputs: Sequence[str | os.PathLike[str] | None] = ()) -> Iterator[Path]:
    """Yield a hidden staging folder; it replaces ``path`` only when the block succeeds.

    ``path`` follows :func:`check_output_dir` (with ``inputs``), is locked while the block runs
    (:func:`output_lock`), and is marked as maskllp's output (:data:`OUTPUT_MARKER`). A folder that
    appears at ``path`` while the block runs is never replaced.
    """
    path = check_output_dir(path, overwrite, inputs)
    with output_lock(path):
        remove_leftovers(path)  # of a run into the same folder that was killed
        replacing = path.is_dir() and any(path.iterdir())
        stage = scratch_dir(path, ".partial")
        try:
            (stage / OUTPUT_MARKER).write_text("written by maskllp\n", encoding="utf-8")
            yield stage
            (stage / _OWNER).unlink(missing_ok=True)
            if path.exists() and not replacing and any(path.iterdir()):
                raise InputError(path, "appeared while this run was writing it (another run?): nothing "
                                       "replaced; choose another --out", "--out")
            if path.exists():
                old = scratch_dir(path, ".old")
                os.replace(path, old / "x")
                os.replace(stage, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(stage, path)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)


def mark_output(path: Path) -> None:
    """Mark a folder maskllp writes in place (not staged) as its output."""
    (path / OUTPUT_MARKER).write_text("written by maskllp\n", encoding="utf-8")
