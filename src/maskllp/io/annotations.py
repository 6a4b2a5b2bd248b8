"""Cell-point and region annotations: read QuPath GeoJSON or CSV, write GeoJSON that QuPath imports.

Coordinates. Files hold level-0 pixel coordinates in QuPath's convention (x right, y down, pixel
(row r, col c) is the square [c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5)). Inside
maskllp, cell points are ``yx`` in array-index convention (the centre of pixel (r, c) is (r, c)):
reading subtracts 0.5, writing adds it. Regions stay shapely geometries in QuPath coordinates; a
pixel belongs to a region when its centre lies inside.

What is read from a GeoJSON file:

* **annotation** Points / MultiPoints: one cell per position (QuPath's Points and Counting tools);
* **annotation** Polygons / MultiPolygons: tumour / non-tumour regions;
* **detection** and **cell** objects: one cell each, at the centroid of the nucleus (``cell``) or of
  the geometry (``detection``), as QuPath's cell detection writes them;
* lines, tiles, TMA cores are ignored. Objects with no class, or an ignored class (``Ignore*``,
  ``Region*``), are skipped and counted (``Annotations.skipped_points`` / ``skipped_regions``).

Class names map to the tool's classes through :class:`maskllp.classes.ClassMapping`; a name no list
holds is an error naming the file, the features and the name. A CSV holds ``x,y,class`` per line
(header optional; comma, semicolon or tab), QuPath coordinates, points only.
"""

from __future__ import annotations

import csv
import io
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.classes import QUPATH_COLOURS, QUPATH_REGION_COLOURS, CellClass, ClassMapping, RegionClass
from maskllp.errors import InputError
from maskllp.io import geojson as gj
from maskllp.io.atomic import atomic_file
from maskllp.io.files import read_text_file

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_MAX_LISTED = 5


@dataclass(frozen=True)
class PointAnnotations:
    """Annotated cells: ``yx`` (N, 2) float64 array-index coordinates, ``classes`` (N,) int8 CellClass."""

    yx: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        yx = np.asarray(self.yx, dtype=np.float64).reshape(-1, 2)
        classes = np.asarray(self.classes).reshape(-1)
        if len(classes) != len(yx):
            raise ValueError(f"{len(yx)} points but {len(classes)} classes")
        if len(classes) and not np.isin(classes, [int(c) for c in CellClass]).all():
            raise ValueError(f"classes must be CellClass values, got {np.unique(classes)}")
        object.__setattr__(self, "yx", yx)
        object.__setattr__(self, "classes", classes.astype(np.int8))

    @classmethod
    def empty(cls) -> PointAnnotations:
        return cls(np.zeros((0, 2)), np.zeros(0, dtype=np.int8))

    def __len__(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[CellClass, int]:
        """Number of points of each class (every class listed, zeros included)."""
        return {c: int(np.count_nonzero(self.classes == c)) for c in CellClass}

    def stained_tumour(self) -> tuple[np.ndarray, np.ndarray]:
        """The clicked positive and negative tumour cells: ((K, 2) yx, (K,) bool positive)."""
        keep = np.isin(self.classes, [CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR])
        return self.yx[keep], self.classes[keep] == CellClass.POSITIVE_TUMOUR


@dataclass(frozen=True)
class Region:
    """An annotated region: shapely Polygon / MultiPolygon in QuPath coordinates, its class, a name."""

    geometry: Any
    cls: RegionClass
    name: str | None = None


@dataclass(frozen=True)
class Annotations:
    """Everything one annotation file gave; objects without a usable class are only counted."""

    points: PointAnnotations = field(default_factory=PointAnnotations.empty)
    regions: list[Region] = field(default_factory=list)
    skipped_points: int = 0
    """Point positions skipped: no class, or an ignored class."""
    skipped_regions: int = 0
    """Polygon objects skipped: no class, an ignored class, or no area."""


# ================================================================================ reading
class _Problems:
    """Problems found in one file; unknown class names are grouped by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[InputError] = []
        self.unknown: dict[str, list[str]] = {}

    def add(self, problem: str, where: str | None) -> None:
        self.items.append(InputError(self.path, problem, where))

    def unknown_class(self, name: str, where: str) -> None:
        self.unknown.setdefault(name, []).append(where)

    def all(self) -> list[InputError]:
        out = list(self.items)
        for name, places in self.unknown.items():
            kind = places[0].split(" ")[0]  # "feature" or "line"
            numbers = [p.split(" ", 1)[-1] for p in places[:_MAX_LISTED]]
            shown = (f"{kind}s " if len(places) > 1 else f"{kind} ") + ", ".join(numbers)
            more = f" and {len(places) - _MAX_LISTED} more" if len(places) > _MAX_LISTED else ""
            out.append(InputError(
                self.path,
                f"unknown class {name!r} (not in the class mapping; add it to the [classes] "
                "section of the config)", shown + more,
            ))
        return out


class _Builder:
    """Accumulates cells and regions while a file is parsed."""

    def __init__(self, mapping: ClassMapping, problems: _Problems) -> None:
        self.mapping = mapping
        self.problems = problems
        self.xy: list[np.ndarray] = []
        self.classes: list[np.ndarray] = []
        self.regions: list[Region] = []
        self.skipped_points = 0
        self.skipped_regions = 0

    def cells(self, xy: np.ndarray, class_name: str | None, where: str) -> None:
        try:
            cls = self.mapping.cell_class(class_name)
        except ValueError:
            self.problems.unknown_class(str(class_name), where)
            return
        if cls is None:
            self.skipped_points += len(xy)
            return
        self.xy.append(xy)
        self.classes.append(np.full(len(xy), int(cls), dtype=np.int8))

    def region(self, geometry: Any, class_name: str | None, name: str | None, where: str) -> None:
        try:
            cls = self.mapping.region_class(class_name)
        except ValueError:
            self.problems.unknown_class(str(class_name), where)
            return
        clean = gj.clean_polygonal(geometry)
        if cls is None or clean.is_empty:
            self.skipped_regions += 1
            return
        self.regions.append(Region(clean, cls, name))

    def result(self) -> Annotations:
        if self.xy:
            xy = np.concatenate(self.xy)
            points = PointAnnotations(xy[:, ::-1] - 0.5, np.concatenate(self.classes))
        else:
            points = PointAnnotations.empty()
        return Annotations(points, self.regions, self.skipped_points, self.skipped_regions)


def _add_object(obj: gj.QuPathObject, builder: _Builder) -> None:
    """Turn one parsed QuPath object into cells / a region (ValueError for a malformed geometry)."""
    where = f"feature {obj.index}"
    if obj.object_type in ("tile", "tmacore", "root"):
        return
    if obj.geometry is None:
        raise ValueError("no geometry")
    if obj.object_type in ("detection", "cell"):
        geometry = obj.nucleus_geometry if obj.nucleus_geometry is not None else obj.geometry
        if geometry.get("type") in ("Point", "MultiPoint"):
            builder.cells(gj.geometry_points(geometry), obj.class_name, where)
        else:
            shape = gj.geometry_shape(geometry)
            if shape.is_empty:
                raise ValueError("empty geometry")
            c = shape.centroid if shape.area > 0 else shape.representative_point()
            builder.cells(np.array([[c.x, c.y]]), obj.class_name, where)
        return
    _add_annotation_geometry(obj.geometry, obj, builder, where)


def _add_annotation_geometry(geometry: dict[str, Any], obj: gj.QuPathObject, builder: _Builder,
                             where: str) -> None:
    kind = geometry.get("type")
    if kind in ("Point", "MultiPoint"):
        builder.cells(gj.geometry_points(geometry), obj.class_name, where)
    elif kind in ("Polygon", "MultiPolygon"):
        builder.region(gj.geometry_shape(geometry), obj.class_name, obj.name, where)
    elif kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            raise ValueError("GeometryCollection needs a 'geometries' list")
        for part in parts:
            if not isinstance(part, dict):
                raise ValueError("GeometryCollection member is not a geometry")
            _add_annotation_geometry(part, obj, builder, where)
    elif kind in ("LineString", "MultiLineString"):
        gj.geometry_shape(geometry)  # checked, not used
    else:
        raise ValueError(f"unknown geometry type {kind!r}")


def _read_geojson(path: Path, mapping: ClassMapping, problems: _Problems) -> Annotations:
    data = gj.load_json(path)
    if not isinstance(data, (dict, list)):
        raise InputError(path, "not GeoJSON (top level must be an object or an array)")
    builder = _Builder(mapping, problems)
    for index, item in enumerate(gj.iter_features(data), start=1):
        try:
            _add_object(gj.parse_object(item, index), builder)
        except ValueError as e:
            problems.add(str(e), f"feature {index}")
    return builder.result()


def _sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_points_csv(path: Path, mapping: ClassMapping, problems: _Problems) -> Annotations:
    text = read_text_file(path, "annotation file")
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise InputError(path, "empty file")
    rows = list(csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first)))
    builder = _Builder(mapping, problems)
    columns = {"x": 0, "y": 1, "class": 2}
    start = 0
    head_index = next(i for i, r in enumerate(rows) if any(c.strip() for c in r))
    header = [c.strip().lower() for c in rows[head_index]]
    if not _is_number(header[0] if header else ""):
        missing = [c for c in ("x", "y") if c not in header]
        if missing:
            raise InputError(path, f"header needs columns x, y and class (missing {', '.join(missing)})",
                             f"line {head_index + 1}")
        cls_col = next((c for c in ("class", "classification", "name") if c in header), None)
        columns = {"x": header.index("x"), "y": header.index("y"),
                   "class": header.index(cls_col) if cls_col else -1}
        start = head_index + 1
    for i in range(start, len(rows)):
        row = [c.strip() for c in rows[i]]
        if not any(row):
            continue
        where = f"line {i + 1}"
        try:
            x, y = float(row[columns["x"]]), float(row[columns["y"]])
        except (ValueError, IndexError):
            problems.add("x and y must be numbers", where)
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.add("x and y must be finite numbers", where)
            continue
        k = columns["class"]
        name = row[k] if 0 <= k < len(row) and row[k] else None
        builder.cells(np.array([[x, y]]), name, where)
    return builder.result()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_annotations_collecting(
    path: str | os.PathLike[str], mapping: ClassMapping | None = None
) -> tuple[Annotations, list[InputError]]:
    """Read what can be read and return it with every problem found (empty list: file is fine).

    A file that cannot be read at all raises ``InputError``.
    """
    path = Path(path)
    mapping = mapping if mapping is not None else ClassMapping()
    problems = _Problems(path)
    if not path.exists():
        raise InputError(path, "annotation file not found")
    if path.name.lower().endswith(CSV_SUFFIXES):
        result = _read_points_csv(path, mapping, problems)
    else:
        result = _read_geojson(path, mapping, problems)
    return result, problems.all()


def read_annotations(path: str | os.PathLike[str], mapping: ClassMapping | None = None) -> Annotations:
    """Read a QuPath GeoJSON (``.geojson``, ``.json``, ``.gz``, ``.zip``) or ``x,y,class`` CSV.

    Raises ``InputError`` naming the file and feature / line for the first problem found (with a
    count of the others).
    """
    result, problems = read_annotations_collecting(path, mapping)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems in this file)" if len(problems) > 1 else ""
        raise InputError(first.source, first.problem + more, first.where)
    return result


# ================================================================================ writing
def _class_values(classes: np.ndarray) -> np.ndarray:
    values = np.asarray(classes).reshape(-1)
    if len(values) and not np.isin(values, [int(c) for c in CellClass]).all():
        raise ValueError(f"classes must be CellClass values, got {np.unique(values)}")
    return values.astype(np.int64)


def _qupath_xy(yx: np.ndarray) -> np.ndarray:
    yx = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(yx).all():
        raise ValueError("point coordinates must be finite")
    return yx[:, ::-1] + 0.5


def _write_checked(path: Path, features: list[dict[str, Any]], expect: Annotations,
                   mapping: ClassMapping) -> None:
    """Write a FeatureCollection atomically after reading it back (with ``mapping``, whose written
    names it uses) and comparing with ``expect``."""
    text = gj.feature_collection_text(features)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        problems = _Problems(path)
        got = _read_geojson(tmp, mapping, problems)
        _compare(path, expect, got, problems.all())


def _compare(path: Path, expect: Annotations, got: Annotations, problems: list[InputError]) -> None:
    tol = 0.5 * 10.0**-gj.DECIMALS + 1e-9
    ok = not problems and len(got.points) == len(expect.points) and len(got.regions) == len(expect.regions)
    if ok and len(expect.points):
        order_e = np.lexsort((expect.points.yx[:, 1], expect.points.yx[:, 0], expect.points.classes))
        order_g = np.lexsort((got.points.yx[:, 1], got.points.yx[:, 0], got.points.classes))
        ok = bool(np.array_equal(expect.points.classes[order_e], got.points.classes[order_g])
                  and np.abs(expect.points.yx[order_e] - got.points.yx[order_g]).max() <= tol)
    if ok:
        ok = all(a.cls == b.cls and abs(a.geometry.area - b.geometry.area) <= 1e-6 * max(1.0, a.geometry.area)
                 for a, b in zip(expect.regions, got.regions, strict=True))
    if not ok:
        raise RuntimeError(f"{path}: written GeoJSON does not read back the same (bug in maskllp): "
                           f"{[str(p) for p in problems][:3]}")


def write_point_annotations_geojson(path: str | os.PathLike[str], points: PointAnnotations,
                                    mapping: ClassMapping | None = None) -> None:
    """Cells as QuPath point annotations: one Point / MultiPoint *annotation* Feature per class, named
    by ``mapping``'s written names (QuPath's built-in ones by default)."""
    mapping = mapping or ClassMapping()
    path = Path(path)
    xy = _qupath_xy(points.yx)
    classes = _class_values(points.classes)
    features = []
    for cls in CellClass:
        sel = classes == int(cls)
        if sel.any():
            features.append(gj.feature(gj.point_geometry(xy[sel]), "annotation", mapping.written_names(cls),
                                       QUPATH_COLOURS[cls]))
    expect = Annotations(PointAnnotations(gj.rounded(xy)[:, ::-1] - 0.5, classes))
    _write_checked(path, features, expect, mapping)


SUGGESTION_COLOUR = (255, 200, 0)


def write_suggested_points_geojson(path: str | os.PathLike[str], yx: np.ndarray,
                                   names: Sequence[str]) -> None:
    """Cells to be labelled, as QuPath point annotations: one unclassified Point annotation per cell
    (so each can be given its own class in QuPath), named ``names``, drawn in amber. Read back, the
    points a user left unclassified are skipped (counted in ``Annotations.skipped_points``).

    yx: (N, 2) level-0 array-index coordinates.
    """
    path = Path(path)
    xy = _qupath_xy(yx)
    names = list(names)
    if len(names) != len(xy):
        raise ValueError(f"{len(xy)} points but {len(names)} names")
    features = [gj.feature(gj.point_geometry(p[None]), "annotation", [], SUGGESTION_COLOUR, name)
                for p, name in zip(xy, names, strict=True)]
    text = gj.feature_collection_text(features)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        problems = _Problems(path)
        got = _read_geojson(tmp, ClassMapping(), problems)
        if problems.all() or len(got.points) or got.skipped_points != len(xy):
            raise RuntimeError(f"{path}: written GeoJSON does not read back the same (bug in maskllp)")


def write_detections_geojson(
    path: str | os.PathLike[str], yx: np.ndarray, classes: np.ndarray,
    measurements: dict[str, np.ndarray] | None = None, metadata: dict[str, str] | None = None,
    mapping: ClassMapping | None = None,
) -> None:
    """Detected cells as QuPath *detections*: one Point per cell, classified, with measurements.

    ``yx`` (N, 2) index coordinates, ``classes`` (N,) CellClass values, ``measurements`` name ->
    (N,) values (non-finite values are left out of that cell's measurements), ``metadata`` strings
    given to every cell (QuPath 0.5+ shows them), class names ``mapping``'s written ones (QuPath's
    built-in names by default). A cell's id derives from its position only, so ``maskllp detect``
    and ``maskllp predict`` give the same cell the same id.
    """
    path = Path(path)
    mapping = mapping or ClassMapping()
    xy = _qupath_xy(yx)
    values = _class_values(classes)
    if len(values) != len(xy):
        raise ValueError(f"{len(xy)} points but {len(values)} classes")
    columns = {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in (measurements or {}).items()}
    for k, v in columns.items():
        if len(v) != len(xy):
            raise ValueError(f"measurement {k!r} has {len(v)} values for {len(xy)} cells")
    features = []
    for i in range(len(xy)):
        cls = CellClass(int(values[i]))
        cell = {k: float(v[i]) for k, v in columns.items()}
        f = gj.feature(gj.point_geometry(xy[i : i + 1]), "detection", mapping.written_names(cls),
                       QUPATH_COLOURS[cls], measurements=cell)
        if metadata:
            f["properties"]["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        x, y = gj.rounded(xy[i])
        cell_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"maskllp-cell:{x},{y}"))
        features.append({"type": "Feature", "id": cell_id, **{k: v for k, v in f.items() if k != "type"}})
    expect = Annotations(PointAnnotations(gj.rounded(xy)[:, ::-1] - 0.5, values))
    _write_checked(path, features, expect, mapping)


def write_regions_geojson(path: str | os.PathLike[str], regions: Sequence[Region],
                          mapping: ClassMapping | None = None) -> None:
    """Regions as QuPath polygon annotations (valid, closed, 2 decimals; empty ones left out), named
    by ``mapping``'s written names (QuPath's built-in ones by default)."""
    path = Path(path)
    mapping = mapping or ClassMapping()
    features = []
    kept = []
    for region in regions:
        geometry = gj.polygon_geometry(region.geometry)
        if geometry is None:
            continue
        cls = RegionClass(region.cls)
        features.append(gj.feature(geometry, "annotation", mapping.written_region_names(cls),
                                   QUPATH_REGION_COLOURS[cls], name=region.name))
        kept.append(Region(gj.clean_polygonal(region.geometry), cls, region.name))
    _write_checked(path, features, Annotations(regions=kept), mapping)


# ================================================================================ rasterising
def _ordered(regions: Sequence[Region]) -> list[Region]:
    """Tumour regions first, then non-tumour ones, which win where they overlap."""
    return sorted(regions, key=lambda r: int(r.cls == RegionClass.NON_TUMOUR))


def _polygons(geometry: Any) -> list[Any]:
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def region_label_mask(
    regions: Sequence[Region], shape: tuple[int, int], downsample: float = 1.0
) -> np.ndarray:
    """Raster of regions: (h, w) uint8 with 0 unlabelled, 1 tumour, 2 non-tumour.

    ``shape`` is level-0 (H, W); ``h = ceil(H / downsample)``. Mask pixel (i, j) covers level-0
    [j d, (j+1) d) x [i d, (i+1) d) and takes the class of the region holding its centre. Holes are
    holes; where regions overlap, non-tumour wins over tumour.
    """
    from skimage.draw import polygon as fill_polygon

    if downsample <= 0:
        raise ValueError(f"downsample must be positive, got {downsample}")
    h, w = math.ceil(shape[0] / downsample), math.ceil(shape[1] / downsample)
    mask = np.zeros((h, w), dtype=np.uint8)
    for region in _ordered(regions):
        for poly in _polygons(region.geometry):
            if poly.is_empty:
                continue
            inside = _ring_mask(fill_polygon, poly.exterior, (h, w), downsample)
            for hole in poly.interiors:
                inside &= ~_ring_mask(fill_polygon, hole, (h, w), downsample)
            mask[inside] = int(region.cls)
    return mask


def _ring_mask(fill_polygon: Any, ring: Any, shape: tuple[int, int], downsample: float) -> np.ndarray:
    xy = np.asarray(ring.coords, dtype=np.float64)
    rows = xy[:, 1] / downsample - 0.5
    cols = xy[:, 0] / downsample - 0.5
    out = np.zeros(shape, dtype=bool)
    rr, cc = fill_polygon(rows, cols, shape)
    out[rr, cc] = True
    return out


def region_class_at(regions: Sequence[Region], yx: np.ndarray) -> np.ndarray:
    """Region code (0 none, 1 tumour, 2 non-tumour) at (N, 2) index-convention points: (N,) uint8."""
    import shapely

    yx = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(len(yx), dtype=np.uint8)
    x, y = yx[:, 1] + 0.5, yx[:, 0] + 0.5
    for region in _ordered(regions):
        out[shapely.contains_xy(region.geometry, x, y)] = int(region.cls)
    return out
