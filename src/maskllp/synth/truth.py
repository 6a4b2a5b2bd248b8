"""The exact ground truth of a synthetic cohort: ``truth.csv`` and one cells file per core.

``truth.csv`` (at the cohort root) has one row per core::

    image, patient, n_positive_tumour, n_negative_tumour, n_non_tumour, n_stained_non_tumour,
    tps, interval, label, architecture, cells

``tps`` is n_positive_tumour / (n_positive_tumour + n_negative_tumour), written with full precision,
and empty for a core without tumour cells (undefined, like its ``interval``); ``label`` is what the
manifest says (the interval of ``tps`` unless label noise is on); ``cells`` is the core's cells file
relative to ``truth.csv``. ``image`` is the image path as the manifest writes it; :func:`read_truth`
keys cores by the image's file name.

A cells file (``truth/<image stem>.csv``) has one row per cell: ``y, x`` (level-0 array-index
coordinates: pixel centres at integers, x = column), ``class`` (``positive tumour``, ``negative
tumour`` or ``non-tumour``), ``subtype`` (``tumour``, ``lymphocyte``, ``fibroblast``,
``macrophage``) and ``stained`` (1 when the cell carries DAB: positive tumour cells and the immune
cells that confound TPS). Training commands never read these files; evaluation may.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskllp.classes import CellClass
from maskllp.errors import InputError
from maskllp.io.atomic import write_text_atomic
from maskllp.io.files import read_text_file
from maskllp.synth.cells import SUBTYPE_NAMES, CellTable

TRUTH_FILE = "truth.csv"
CELLS_DIR = "truth"
TRUTH_COLUMNS = ("image", "patient", "n_positive_tumour", "n_negative_tumour", "n_non_tumour",
                 "n_stained_non_tumour", "tps", "interval", "label", "architecture", "cells")
CELL_COLUMNS = ("y", "x", "class", "subtype", "stained")
CLASS_NAMES = {CellClass.POSITIVE_TUMOUR: "positive tumour", CellClass.NEGATIVE_TUMOUR: "negative tumour",
               CellClass.NON_TUMOUR: "non-tumour"}
_CLASS_BY_NAME = {v: k for k, v in CLASS_NAMES.items()}
_SUBTYPE_BY_NAME = {v: k for k, v in SUBTYPE_NAMES.items()}


@dataclass(frozen=True)
class CoreTruth:
    """Exact counts of one core; ``tps`` is None when the core has no tumour cell."""

    n_positive: int
    n_negative: int
    n_non_tumour: int
    tps: float | None
    cells_path: Path
    """Absolute path of the core's cells file."""
    n_stained_non_tumour: int = 0
    interval: str | None = None
    label: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class TruthCells:
    """Every cell of one core: ``yx`` (N, 2) float64 index coordinates, ``classes`` (N,) int8
    CellClass, ``subtypes`` (N,) int8 :class:`Subtype`, ``stained`` (N,) bool."""

    yx: np.ndarray
    classes: np.ndarray
    subtypes: np.ndarray
    stained: np.ndarray


def exact_tps(n_positive: int, n_negative: int) -> float | None:
    """TPS from counts; None (undefined) without tumour cells."""
    total = n_positive + n_negative
    return None if total == 0 else n_positive / total


def core_counts(cells: CellTable) -> dict[str, int]:
    """Cell counts by class of one core's cells."""
    non_tumour = cells.cls == CellClass.NON_TUMOUR
    return {
        "n_positive_tumour": int(np.count_nonzero(cells.cls == CellClass.POSITIVE_TUMOUR)),
        "n_negative_tumour": int(np.count_nonzero(cells.cls == CellClass.NEGATIVE_TUMOUR)),
        "n_non_tumour": int(np.count_nonzero(non_tumour)),
        "n_stained_non_tumour": int(np.count_nonzero(non_tumour & cells.stained)),
    }


def cells_text(cells: CellTable) -> str:
    """The cells file of one core as CSV text (coordinates to 1/1000 px)."""
    out = io.StringIO()
    out.write(",".join(CELL_COLUMNS) + "\n")
    class_name = {int(c): name for c, name in CLASS_NAMES.items()}
    subtype_name = {int(s): name for s, name in SUBTYPE_NAMES.items()}
    for (y, x), c, s, st in zip(cells.yx.tolist(), cells.cls.tolist(), cells.subtype.tolist(),
                                cells.stained.tolist(), strict=True):
        out.write(f"{y:.3f},{x:.3f},{class_name[c]},{subtype_name[s]},{int(st)}\n")
    return out.getvalue()


def write_cells(path: str | os.PathLike[str], cells: CellTable) -> None:
    """Write a core's cells file atomically."""
    write_text_atomic(path, cells_text(cells))


def write_truth(path: str | os.PathLike[str], rows: list[dict[str, str]]) -> None:
    """Write ``truth.csv`` (rows keyed by :data:`TRUTH_COLUMNS`; missing values empty), atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRUTH_COLUMNS)
    for row in rows:
        writer.writerow([row.get(c, "") for c in TRUTH_COLUMNS])
    write_text_atomic(path, out.getvalue())


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = read_text_file(path, "truth file")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != list(columns):
        raise InputError(path, f"not a maskllp truth file (header must be {','.join(columns)})", "line 1")
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        if len(values) != len(columns):
            raise InputError(path, f"{len(values)} values, expected {len(columns)}", f"line {line}")
        rows.append((line, dict(zip(columns, (v.strip() for v in values), strict=True))))
    return rows


def _count(path: Path, line: int, row: dict[str, str], key: str) -> int:
    try:
        value = int(row[key])
    except ValueError:
        raise InputError(path, f"{key} {row[key]!r} is not a count", f"line {line}") from None
    if value < 0:
        raise InputError(path, f"{key} {value} is negative", f"line {line}")
    return value


def read_truth(path: str | os.PathLike[str]) -> dict[str, CoreTruth]:
    """Read ``truth.csv``: image file name -> :class:`CoreTruth`. InputError naming file and line.

    The ``tps`` column must agree with the counts (it is recomputed and checked).
    """
    path = Path(path)
    out: dict[str, CoreTruth] = {}
    for line, row in _rows(path, TRUTH_COLUMNS):
        n_pos, n_neg, n_non, n_stained = (_count(path, line, row, k) for k in (
            "n_positive_tumour", "n_negative_tumour", "n_non_tumour", "n_stained_non_tumour"))
        tps = exact_tps(n_pos, n_neg)
        given = row["tps"]
        if (tps is None) != (given == ""):
            raise InputError(path, f"tps {given!r} does not match the counts", f"line {line}")
        if tps is not None:
            try:
                ok = math.isclose(float(given), tps, rel_tol=1e-9, abs_tol=1e-12)
            except ValueError:
                ok = False
            if not ok:
                raise InputError(path, f"tps {given!r} does not match the counts ({tps!r})", f"line {line}")
        name = Path(row["image"]).name
        if not name:
            raise InputError(path, "no image given", f"line {line}")
        if name in out:
            raise InputError(path, f"image {name} listed twice", f"line {line}")
        out[name] = CoreTruth(
            n_positive=n_pos, n_negative=n_neg, n_non_tumour=n_non, tps=tps,
            cells_path=Path(os.path.abspath(path.parent / row["cells"])), n_stained_non_tumour=n_stained,
            interval=row["interval"] or None, label=row["label"] or None, patient=row["patient"] or None,
        )
    return out


def read_truth_cells(path: str | os.PathLike[str]) -> TruthCells:
    """Read one core's cells file. InputError naming the file and line for anything malformed."""
    path = Path(path)
    rows = _rows(path, CELL_COLUMNS)
    yx = np.zeros((len(rows), 2))
    classes = np.zeros(len(rows), np.int8)
    subtypes = np.zeros(len(rows), np.int8)
    stained = np.zeros(len(rows), bool)
    for i, (line, row) in enumerate(rows):
        try:
            yx[i] = float(row["y"]), float(row["x"])
            classes[i] = _CLASS_BY_NAME[row["class"]]
            subtypes[i] = _SUBTYPE_BY_NAME[row["subtype"]]
            stained[i] = {"0": False, "1": True}[row["stained"]]
        except (ValueError, KeyError):
            raise InputError(path, f"bad cell row {','.join(row.values())!r}", f"line {line}") from None
    return TruthCells(yx, classes, subtypes, stained)
