"""The cohort manifest: a CSV listing the cores, their patients, labels, annotations and pixel sizes.

Columns (names case-insensitive; only ``image`` is required; other columns are kept out of the
way with a warning)::

    image     path of the core image, relative to the CSV (or absolute)
    patient   patient id (groups cores in cross-validation); default: the image file's stem
    label     an interval of the configured scheme ('1-25 %', '<1 %', '>=50 %') or an exact
              proportion ('0.12', '12 %'); empty = unlabelled
    points    cell-point annotation file (QuPath GeoJSON or x,y,class CSV) marking every cell
    regions   tumour / non-tumour polygon file (QuPath GeoJSON)
    partial_points  a point file that labels only some cells (``maskllp suggest``'s, classified):
              the tumour classifier and the cell methods learn from it, the detector never does
    mpp       microns per pixel at level 0; default: read from the image

The file is UTF-8 (a BOM is fine), comma-, semicolon- or tab-separated (sniffed from the header),
blank lines and spaces around values are ignored. Lines are counted as in a text editor: the header
is line 1. Reading collects every problem (a missing column, a missing or unreadable image, a bad
label for the scheme, a duplicate image, a bad mpp, a missing or invalid annotation file, unknown
class names, points outside the image ...) and raises them together as a ``ProblemList``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.classes import CellClass, ClassMapping, RegionClass
from maskllp.errors import InputError, ProblemList
from maskllp.intervals import IntervalScheme, Label, LabelError
from maskllp.io.annotations import Annotations, read_annotations, read_annotations_collecting
from maskllp.io.atomic import write_text_atomic
from maskllp.io.files import read_text_file
from maskllp.io.images import MPP_RANGE, expand_image_inputs, open_image
from maskllp.io.limits import current_limits

COLUMNS = ("image", "patient", "label", "points", "regions", "partial_points", "mpp")
PATH_COLUMNS = ("image", "points", "regions", "partial_points")
ANNOTATION_COLUMNS = ("points", "regions", "partial_points")
CELL_NAMES = {CellClass.POSITIVE_TUMOUR: "positive tumour", CellClass.NEGATIVE_TUMOUR: "negative tumour",
              CellClass.TUMOUR: "tumour (stain not given)", CellClass.NON_TUMOUR: "non-tumour"}
"""Accepted microns per pixel in the ``mpp`` column (a value outside is almost surely in other units)."""


@dataclass(frozen=True)
class CohortEntry:
    """One core of the cohort (one manifest line); paths are absolute."""

    line: int
    image: Path
    patient: str
    label: Label | None
    label_text: str | None
    points: Path | None
    regions: Path | None
    mpp: float | None
    """Level-0 microns per pixel: the manifest's value, else the image's (when files were checked)."""
    partial_points: Path | None = None
    """Points that label some of the core's cells only (never read by the detector)."""

    @property
    def annotated(self) -> bool:
        """Whether any annotation file (points, regions, partial points) is given."""
        return any(getattr(self, c) is not None for c in ANNOTATION_COLUMNS)


@dataclass
class Cohort:
    """The parsed manifest: its path, the interval scheme its labels were read with, the cores."""

    path: Path
    scheme: IntervalScheme
    entries: list[CohortEntry]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CohortEntry]:
        return iter(self.entries)

    def patients(self) -> dict[str, list[CohortEntry]]:
        """Patient id -> that patient's cores, in manifest order."""
        out: dict[str, list[CohortEntry]] = {}
        for e in self.entries:
            out.setdefault(e.patient, []).append(e)
        return out


@dataclass
class CoreCheck:
    """What checking one core's files found (for the validation summary)."""

    entry: CohortEntry
    shape: tuple[int, int]
    levels: int
    cell_counts: dict[CellClass, int] | None = None
    skipped_points: int = 0
    partial_counts: dict[CellClass, int] | None = None
    region_fractions: dict[RegionClass, float] | None = None
    """Fraction of the image area covered by each region class."""


# ================================================================================ reading the CSV
def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header names and (line, values) of the non-blank rows. InputError when unreadable."""
    text = read_text_file(path, "cohort manifest", "; save the CSV as UTF-8")
    lines = text.splitlines(keepends=True)
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise InputError(path, "empty file (expected a CSV header with an 'image' column)")
    reader = csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for values in reader:
            values = [v.strip() for v in values]
            if any(values):
                if header is None:
                    header = [v.lower() for v in values]
                else:
                    rows.append((start, values))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(path, f"not a valid CSV ({e})", f"line {reader.line_num}") from None
    assert header is not None
    return header, rows


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base / p
        if not p.exists() and "\\" in value:  # a manifest written on Windows
            p = base / Path(value.replace("\\", "/"))
    return Path(os.path.abspath(p))


def image_stem(path: Path) -> str:
    """The file name without its image suffix (``a.ome.tif`` -> ``a``)."""
    stem = path.stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def _parse_mpp(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"mpp {text!r} is not a number (microns per pixel)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"mpp {text!r} must be a positive number of microns per pixel")
    if not MPP_RANGE[0] <= value <= MPP_RANGE[1]:
        raise ValueError(f"mpp {text!r} is outside {MPP_RANGE[0]}-{MPP_RANGE[1]} µm per pixel "
                         "(is it in microns?)")
    return value


class _Collector:
    """Problems of one manifest, each naming the manifest, the line and the column."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[InputError] = []
        self.warnings: list[str] = []

    def add(self, line: int, column: str | None, problem: str) -> None:
        where = f"line {line}" + (f", column {column}" if column else "")
        self.problems.append(InputError(self.path, problem, where))

    def warn(self, line: int | None, text: str) -> None:
        self.warnings.append(f"{self.path}: " + (f"line {line}: " if line else "") + text)


def _display(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def _parse_entries(
    path: Path, scheme: IntervalScheme, check_files: bool, out: _Collector
) -> list[tuple[CohortEntry, bool]]:
    """Manifest lines -> entries (with whether the line is free of problems so far)."""
    header, rows = _read_rows(path)
    base = path.parent
    seen: dict[str, int] = {}
    for name in header:
        if name in seen:
            out.add(1, name, f"column {name!r} appears twice")
        seen[name] = 1
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        out.warn(1, f"column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not used "
                    f"(known: {', '.join(COLUMNS)})")
    if "image" not in header:
        out.add(1, None, f"missing required column 'image' (header: {', '.join(header)})")
        return []
    if not rows:
        out.add(1, None, "no cores listed (only a header)")
    col = {name: header.index(name) for name in COLUMNS if name in header}
    images: dict[str, int] = {}
    entries = []
    for line, values in rows:
        before = len(out.problems)
        if len(values) > len(header):
            out.add(line, None, f"{len(values)} values but the header has {len(header)} columns")

        def get(name: str, values: list[str] = values) -> str:
            k = col.get(name)
            return values[k] if k is not None and k < len(values) else ""

        image_text = get("image")
        if not image_text:
            out.add(line, "image", "no image given")
            continue
        image = _resolve(base, image_text)
        key = os.path.normcase(os.path.realpath(image))
        if key in images:
            out.add(line, "image", f"{image_text} is also listed on line {images[key]}")
        else:
            images[key] = line
        if check_files and not image.is_file():
            problem = "is a folder" if image.is_dir() else "file not found"
            out.add(line, "image", f"{image_text}: {problem}")
        label: Label | None = None
        label_text = get("label") or None
        if label_text is not None:
            try:
                label = scheme.parse(label_text)
            except LabelError as e:
                out.add(line, "label", str(e))
        mpp = None
        if get("mpp"):
            try:
                mpp = _parse_mpp(get("mpp"))
            except ValueError as e:
                out.add(line, "mpp", str(e))
        files: dict[str, Path | None] = {}
        for name in ANNOTATION_COLUMNS:
            text = get(name)
            files[name] = _resolve(base, text) if text else None
            if check_files and text and not files[name].is_file():  # type: ignore[union-attr]
                out.add(line, name, f"{text}: annotation file not found")
        entry = CohortEntry(
            line=line, image=image, patient=get("patient") or image_stem(image),
            label=label, label_text=label_text, points=files["points"], regions=files["regions"], mpp=mpp,
            partial_points=files["partial_points"],
        )
        entries.append((entry, len(out.problems) == before))
    return entries


def clicked_tumour_cells(entry: CohortEntry, mapping: ClassMapping) -> tuple[np.ndarray, np.ndarray]:
    """The clicked positive and negative tumour cells of ``entry``'s ``points`` and ``partial_points``
    files: ((K, 2) level-0 yx, (K,) bool positive); empty without either file."""
    yx, positive = [np.zeros((0, 2))], [np.zeros(0, bool)]
    for path in (entry.points, entry.partial_points):
        if path is not None:
            a, b = read_annotations(path, mapping).points.stained_tumour()
            yx.append(a)
            positive.append(b)
    return np.concatenate(yx), np.concatenate(positive)


VALIDATE_STAGE1_MPP = 0.5
"""The pixel size ``validate`` assumes stage 1 works at (the default ``detector.mpp``) when it warns of
images beyond the working-pixel budget."""


# ================================================================================ checking files
def _check_core(entry: CohortEntry, base: Path, mapping: ClassMapping, out: _Collector) -> CoreCheck | None:
    """Open the image (header only) and read the annotations; report every problem found."""
    shown = _display(entry.image, base)
    try:
        with open_image(entry.image, entry.mpp) as reader:
            shape, levels, mpp = reader.shape, len(reader.level_shapes), reader.mpp
    except InputError as e:
        out.add(entry.line, "image", f"{shown}: {e.problem}")
        return None
    entry_mpp = entry.mpp if entry.mpp is not None else mpp
    if entry_mpp is not None:
        scale = entry_mpp / VALIDATE_STAGE1_MPP
        area = math.ceil(shape[0] * scale) * math.ceil(shape[1] * scale)
        if area > current_limits().max_working_pixels:
            out.warn(entry.line, f"{shown}: {shape[1]} x {shape[0]} px at {entry_mpp:g} um/px is {area:,} px "
                                 f"at stage 1's default {VALIDATE_STAGE1_MPP:g} um/px, beyond "
                                 "limits.max_working_pixels: stage 1 will refuse it (raise the setting, or "
                                 "check the pixel size)")
    check = CoreCheck(_with_mpp(entry, entry_mpp), shape, levels)
    if entry.partial_points is not None:
        ann = _read_annotation_file(entry, "partial_points", base, mapping, out)
        if ann is not None:
            _check_points(entry, ann, shape, base, out, "partial_points")
            check.partial_counts = ann.points.counts()
    if entry.points is not None:
        ann = _read_annotation_file(entry, "points", base, mapping, out)
        if ann is not None:
            _check_points(entry, ann, shape, base, out)
            check.cell_counts = ann.points.counts()
            check.skipped_points = ann.skipped_points
            if ann.skipped_points:
                out.warn(entry.line, f"{_display(entry.points, base)}: {ann.skipped_points} unclassified "
                                     "(or ignored-class) points skipped")
            if len(ann.points) == 0:
                out.warn(entry.line, f"{_display(entry.points, base)}: no classified cell points")
    if entry.regions is not None:
        ann = _read_annotation_file(entry, "regions", base, mapping, out)
        if ann is not None:
            check.region_fractions = _region_fractions(entry, ann, shape, base, out)
    return check


def _with_mpp(entry: CohortEntry, mpp: float | None) -> CohortEntry:
    from dataclasses import replace

    return replace(entry, mpp=mpp)


def _read_annotation_file(
    entry: CohortEntry, column: str, base: Path, mapping: ClassMapping, out: _Collector
) -> Annotations | None:
    path: Path = getattr(entry, column)
    shown = _display(path, base)
    try:
        ann, problems = read_annotations_collecting(path, mapping)
    except InputError as e:
        out.add(entry.line, column, f"{shown}: " + ": ".join(p for p in (e.where, e.problem) if p))
        return None
    for p in problems:
        out.add(entry.line, column, f"{shown}: " + ": ".join(x for x in (p.where, p.problem) if x))
    return None if problems else ann


def _check_points(entry: CohortEntry, ann: Annotations, shape: tuple[int, int], base: Path,
                  out: _Collector, column: str = "points") -> None:
    yx = ann.points.yx
    if not len(yx):
        return
    h, w = shape
    outside = (yx[:, 0] < -0.5) | (yx[:, 0] >= h - 0.5) | (yx[:, 1] < -0.5) | (yx[:, 1] >= w - 0.5)
    n = int(outside.sum())
    if n:
        y, x = yx[np.argmax(outside)] + 0.5
        shown = _display(getattr(entry, column), base)
        out.add(entry.line, column, f"{shown}: {n} of {len(yx)} points lie outside "
                f"the {w} x {h} image (first at x={x:g}, y={y:g}; coordinates are level-0 pixels)")


def _region_fractions(entry: CohortEntry, ann: Annotations, shape: tuple[int, int], base: Path,
                      out: _Collector) -> dict[RegionClass, float]:
    from shapely import union_all
    from shapely.geometry import box

    h, w = shape
    frame = box(0, 0, w, h)
    fractions = {}
    for cls in RegionClass:
        parts = [r.geometry for r in ann.regions if r.cls == cls]
        fractions[cls] = float(union_all(parts).intersection(frame).area / (w * h)) if parts else 0.0
    for k, region in enumerate(ann.regions, start=1):
        if not region.geometry.intersects(frame):
            label = f"region {region.name!r}" if region.name else f"region {k}"
            out.add(entry.line, "regions", f"{_display(entry.regions, base)}: {label} lies outside the "  # type: ignore[arg-type]
                    f"{w} x {h} image (coordinates are level-0 pixels)")
    if not ann.regions:
        out.warn(entry.line, f"{_display(entry.regions, base)}: no classified regions")  # type: ignore[arg-type]
    return fractions


def _load(
    path: str | os.PathLike[str], scheme: IntervalScheme, check_files: bool, mapping: ClassMapping | None
) -> tuple[Cohort, list[CoreCheck], _Collector]:
    path = Path(path)
    out = _Collector(path)
    parsed = _parse_entries(path, scheme, check_files, out)
    entries = [e for e, _ in parsed]
    checks: list[CoreCheck] = []
    if check_files:
        mapping = mapping if mapping is not None else ClassMapping()
        entries = []
        for entry, clean in parsed:
            check = _check_core(entry, path.parent, mapping, out) if clean else None
            if check is not None:
                checks.append(check)
                entries.append(check.entry)
            else:
                entries.append(entry)
    cohort = Cohort(path, scheme, entries, out.warnings)
    return cohort, checks, out


def _raise(path: Path, out: _Collector) -> None:
    if out.problems:
        n = len(out.problems)
        raise ProblemList(out.problems, f"{path}: {n} problem{'s' if n > 1 else ''} in the cohort")


def read_cohort(
    path: str | os.PathLike[str], scheme: IntervalScheme, check_files: bool = True,
    mapping: ClassMapping | None = None,
) -> Cohort:
    """Read and check a manifest; ``ProblemList`` with every problem (file, line, column, what).

    ``check_files`` opens every image (header only: size, pixel size, integrity) and reads every
    annotation file with ``mapping`` (default :class:`ClassMapping`); without it only the CSV itself
    is checked.
    """
    cohort, _, out = _load(path, scheme, check_files, mapping)
    _raise(Path(path), out)
    return cohort


def write_cohort(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write a manifest (atomically). Paths in ``image``/``points``/``regions`` become relative to it.

    Known columns come first in the standard order; other keys follow as extra columns.
    """
    path = Path(path)
    base = Path(os.path.abspath(path.parent))
    names = [c for c in COLUMNS if any(c in r for r in rows)]
    names += sorted({k for r in rows for k in r} - set(COLUMNS))
    if "image" not in names:
        raise ValueError("every cohort row needs an 'image'")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        if not row.get("image"):
            raise ValueError(f"cohort row without an image: {row}")
        values = []
        for name in names:
            value = row.get(name)
            if value is None or value == "":
                values.append("")
            elif name in PATH_COLUMNS and Path(value).is_absolute():
                values.append(Path(os.path.relpath(value, base)).as_posix())
            elif name in PATH_COLUMNS:
                values.append(Path(value).as_posix())
            else:
                values.append(str(value))
        writer.writerow(values)
    write_text_atomic(path, buffer.getvalue())


# ================================================================================ validation
def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass
class ValidationReport:
    """A checked cohort and what its files hold; :meth:`summary` is what ``maskllp validate`` prints."""

    cohort: Cohort
    cores: list[CoreCheck]

    @property
    def warnings(self) -> list[str]:
        return self.cohort.warnings

    def label_counts(self) -> dict[str, int]:
        """Interval name -> number of cores labelled with it (exact proportions binned)."""
        counts = Counter(e.label.interval for e in self.cohort if e.label is not None)
        return {name: counts.get(k, 0) for k, name in enumerate(self.cohort.scheme.names)}

    def summary(self) -> str:
        lines = [f"Cohort {self.cohort.path}: {_count(len(self.cohort), 'core')}"]
        lines += self._image_lines() + self._label_lines() + self._patient_lines()
        lines += self._annotation_lines()
        if self.warnings:
            lines.append(f"Warnings ({len(self.warnings)}):")
            lines += [f"  {w}" for w in self.warnings]
        return "\n".join(lines)

    def _image_lines(self) -> list[str]:
        if not self.cores:
            return []
        heights = [c.shape[0] for c in self.cores]
        widths = [c.shape[1] for c in self.cores]
        pixels = [c.shape[0] * c.shape[1] for c in self.cores]
        small = self.cores[int(np.argmin(pixels))].shape
        big = self.cores[int(np.argmax(pixels))].shape
        out = [f"Images: {small[1]} x {small[0]} to {big[1]} x {big[0]} px (width x height; "
               f"heights {min(heights)}-{max(heights)}, widths {min(widths)}-{max(widths)})"]
        pyramids = sum(1 for c in self.cores if c.levels > 1)
        if pyramids:
            out.append(f"  {_count(pyramids, 'image')} with pyramid levels")
        mpps = [c.entry.mpp for c in self.cores if c.entry.mpp is not None]
        unknown = len(self.cores) - len(mpps)
        if mpps:
            text = f"{min(mpps):.4g}-{max(mpps):.4g}" if max(mpps) > min(mpps) else f"{mpps[0]:.4g}"
            out.append(f"Pixel size: {text} µm/px ({_count(len(mpps), 'core')})"
                       + (f"; unknown for {_count(unknown, 'core')} (add an mpp column)" if unknown else ""))
        else:
            out.append("Pixel size: unknown for every core (add an mpp column)")
        return out

    def _label_lines(self) -> list[str]:
        scheme = self.cohort.scheme
        counts = self.label_counts()
        labelled = [e for e in self.cohort if e.label is not None]
        exact = sum(1 for e in labelled if e.label is not None and e.label.is_exact)
        out = [f"Labels ({scheme.name}): " + ", ".join(f"{k}: {v}" for k, v in counts.items())]
        extra = [f"{len(labelled)} labelled"]
        if exact:
            extra.append(f"{exact} given as exact proportions (binned above)")
        extra.append(f"{len(self.cohort) - len(labelled)} unlabelled")
        out.append("  " + ", ".join(extra))
        return out

    def _patient_lines(self) -> list[str]:
        per = [len(v) for v in self.cohort.patients().values()]
        if not per:
            return []
        return [f"Patients: {len(per)} ({min(per)}-{max(per)} cores per patient, "
                f"median {statistics.median(per):g})"]

    def _annotation_lines(self) -> list[str]:
        with_points = [c for c in self.cores if c.cell_counts is not None]
        out = []
        if with_points:
            total = Counter()
            for c in with_points:
                total.update({k: v for k, v in (c.cell_counts or {}).items()})
            names = ", ".join(f"{CELL_NAMES[k]} {total.get(k, 0)}" for k in CellClass)
            skipped = sum(c.skipped_points for c in with_points)
            cells = _count(sum(total.values()), "cell")
            out.append(f"Cell points: {_count(len(with_points), 'core')}, {cells} ({names})"
                       + (f"; {skipped} unclassified points skipped" if skipped else ""))
        else:
            out.append("Cell points: none")
        with_partial = [c for c in self.cores if c.partial_counts is not None]
        if with_partial:
            total = Counter()
            for c in with_partial:
                total.update({k: v for k, v in (c.partial_counts or {}).items()})
            names = ", ".join(f"{CELL_NAMES[k]} {total.get(k, 0)}" for k in CellClass)
            cells = _count(sum(total.values()), "cell")
            out.append(f"Partial points: {_count(len(with_partial), 'core')}, {cells} ({names})")
        with_regions = [c for c in self.cores if c.region_fractions is not None]
        if with_regions:
            parts = []
            for cls in RegionClass:
                values = [(c.region_fractions or {}).get(cls, 0.0) for c in with_regions]
                parts.append(f"{cls.name.lower().replace('_', '-')} {100 * float(np.mean(values)):.1f} %")
            out.append(f"Regions: {_count(len(with_regions), 'core')}; mean area annotated: "
                       + ", ".join(parts))
        else:
            out.append("Regions: none")
        return out


def validate_cohort(path: str | os.PathLike[str], scheme: IntervalScheme,
                    mapping: ClassMapping | None = None) -> ValidationReport:
    """Check a cohort with an interval scheme and class mapping (default: QuPath's names);
    ``ProblemList`` with every problem if broken."""
    cohort, checks, out = _load(path, scheme, True, mapping or ClassMapping())
    _raise(Path(path), out)
    return ValidationReport(cohort, checks)


def images_or_cohort(inputs: list[Path], scheme: IntervalScheme, mapping: ClassMapping | None = None
                     ) -> list[tuple[Path, CohortEntry | None]]:
    """What a command given images was given: (image, its manifest entry or None) per core.

    ``inputs``: image files and folders of images (:func:`~maskllp.io.images.expand_image_inputs`),
    or one cohort manifest (``.csv``), whose entries carry pixel sizes, labels and patients.
    """
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() == ".csv":
        return [(e.image, e) for e in read_cohort(inputs[0], scheme, mapping=mapping).entries]
    return [(p, None) for p in expand_image_inputs(inputs)]
