"""QuPath GeoJSON details: lenient reading of what QuPath (0.2 - 0.6) writes, and writing what it imports.

Follows ``shared/formats/qupath-geojson.md``. Reading: a FeatureCollection, a single Feature, a
(nested) array of them, or a bare geometry; UTF-8 with or without BOM, gzip or a zip holding one
``.geojson``; bare ``NaN`` / ``Infinity`` (QuPath 0.4); a repeated ``metadata`` key (0.6; the last
wins); ``objectType``, ``object_type`` or ``type``; classifications as ``{"name"}``, ``{"names"}``,
a string (``"Tumor: Positive"``) or nothing. Writing: one FeatureCollection, UTF-8 without BOM, a
UUID ``id`` per Feature (content-derived, uuid5), ``objectType``, classifications with their colour,
coordinates rounded to 2 decimals, closed valid polygon rings, no GeometryCollection, finite
measurements only.

This module knows the file format, not the tool's classes: ``maskllp.io.annotations`` maps class
names and converts coordinates.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.errors import InputError
from maskllp.io.files import decode_text, read_file_bytes
from maskllp.io.limits import check_decompressed_size, check_json_depth, current_limits, decompress_gzip

GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection")
_LEGACY_TYPES = {"pathannotationobject": "annotation", "pathdetectionobject": "detection",
                 "pathcellobject": "cell", "pathtileobject": "tile", "tmacoreobject": "tmacore",
                 "pathrootobject": "root"}
_OBJECT_TYPES = ("annotation", "detection", "cell", "tile", "tmacore", "root")
DECIMALS = 2


@dataclass
class QuPathObject:
    """One Feature as QuPath understands it.

    ``index``: 1-based position of the Feature in the file (in reading order), for messages.
    ``object_type``: ``annotation``, ``detection``, ``cell``, ``tile``, ``tmacore`` or ``root``.
    ``class_name``: the classification as one string (``"Tumor: Positive"``), or None.
    ``geometry`` / ``nucleus_geometry``: GeoJSON geometry mappings (None when absent).
    """

    index: int
    object_type: str
    class_name: str | None
    geometry: dict[str, Any] | None
    nucleus_geometry: dict[str, Any] | None = None
    name: str | None = None
    measurements: dict[str, float] = field(default_factory=dict)


# ================================================================================ reading
def load_json(path: str | os.PathLike[str]) -> Any:
    """Parse a (possibly gzipped or zipped) JSON file leniently; InputError when it is not JSON."""
    path = Path(path)
    raw = read_file_bytes(path, "annotation file")
    if raw[:2] == b"\x1f\x8b":
        raw = decompress_gzip(path, raw)
    elif raw[:4] == b"PK\x03\x04":
        raw = _zip_member(path, raw)
    check_decompressed_size(path, len(raw))
    check_json_depth(path, raw)
    text = decode_text(path, raw)
    if not text.strip():
        raise InputError(path, "empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg})", f"line {e.lineno} column {e.colno}") from None


def _zip_member(path: Path, raw: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = [n for n in z.namelist() if n.lower().endswith((".geojson", ".json"))]
            if len(names) != 1:
                raise InputError(path, f"zip file must hold exactly one .geojson, found {len(names)}")
            check_decompressed_size(path, z.getinfo(names[0]).file_size)
            with z.open(names[0]) as member:
                data = member.read(current_limits().max_annotation_bytes + 1)
            check_decompressed_size(path, len(data))
            return data
    except zipfile.BadZipFile as e:
        raise InputError(path, f"damaged zip file ({e})") from None


def iter_features(data: Any) -> Iterator[Any]:
    """Every Feature-like item of a FeatureCollection / Feature / nested list / bare geometry.

    Children (``childObjects`` / ``children``) follow their parent. Items that are not mappings are
    yielded as they are (the parser reports them).
    """
    if isinstance(data, list):
        for item in data:
            yield from iter_features(item)
        return
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            yield {"type": "FeatureCollection", "features": features}  # reported as malformed
            return
        for item in features:
            yield from iter_features(item)
        return
    yield data
    if isinstance(data, dict):
        props = data.get("properties")
        if isinstance(props, dict):
            for key in ("childObjects", "children"):
                if isinstance(props.get(key), list):
                    yield from iter_features(props[key])


def classification_name(value: Any) -> str | None:
    """QuPath classification (dict with ``name``/``names``, string, null) as one ``"A: B"`` string."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(":") if p.strip()]
        return ": ".join(parts) or None
    if isinstance(value, dict):
        names = value.get("names")
        if isinstance(names, list) and names:
            return ": ".join(str(n).strip() for n in names if str(n).strip()) or None
        name = value.get("name")
        if name is None:
            return None
        return classification_name(str(name))
    raise ValueError(f"classification must be an object or a string, not {type(value).__name__}")


def _object_type(feature: dict[str, Any], props: dict[str, Any]) -> str:
    for key in ("objectType", "object_type", "type"):
        value = props.get(key)
        if isinstance(value, str):
            v = value.strip().lower()
            return v if v in _OBJECT_TYPES else _LEGACY_TYPES.get(v, "annotation")
    legacy = feature.get("id")
    if isinstance(legacy, str) and legacy.lower() in _LEGACY_TYPES:
        return _LEGACY_TYPES[legacy.lower()]
    return "annotation"


def _measurements(value: Any) -> dict[str, float]:
    """Finite numeric measurements (dict or legacy list form); strings like "NaN" are dropped."""
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(m.get("name"), m.get("value")) for m in value if isinstance(m, dict)]
    out = {}
    for k, v in items:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and k is not None:
            out[str(k)] = f
    return out


def parse_object(item: Any, index: int) -> QuPathObject:
    """One Feature (or bare geometry) -> :class:`QuPathObject`; ValueError says what is malformed."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a GeoJSON Feature, found {type(item).__name__}")
    kind = item.get("type")
    if kind in GEOMETRY_TYPES:  # a bare geometry: an unclassified annotation
        return QuPathObject(index, "annotation", None, item)
    if kind == "FeatureCollection":
        raise ValueError("FeatureCollection without a 'features' list")
    if kind != "Feature":
        raise ValueError(f"expected a GeoJSON Feature, found type {kind!r}")
    props = item.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise ValueError("'properties' must be an object")
    geometry = item.get("geometry")
    if geometry is not None and not isinstance(geometry, dict):
        raise ValueError("'geometry' must be an object")
    nucleus = item.get("nucleusGeometry", props.get("nucleusGeometry"))
    name = props.get("name")
    return QuPathObject(
        index=index,
        object_type=_object_type(item, props),
        class_name=classification_name(props.get("classification")),
        geometry=geometry,
        nucleus_geometry=nucleus if isinstance(nucleus, dict) else None,
        name=str(name) if name is not None else None,
        measurements=_measurements(props.get("measurements")),
    )


def _xy(value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ValueError(f"a position must be [x, y], got {value!r}")
    try:
        x, y = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"a position must hold numbers, got {value!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"a position must be finite, got {value!r}")
    return x, y


def geometry_points(geometry: dict[str, Any]) -> np.ndarray:
    """(N, 2) float64 x, y of a Point or MultiPoint geometry."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        return np.array([_xy(coords)], dtype=np.float64)
    if not isinstance(coords, list):
        raise ValueError("MultiPoint coordinates must be a list of [x, y]")
    return np.array([_xy(c) for c in coords], dtype=np.float64).reshape(-1, 2)


def _ring(coords: Any) -> list[tuple[float, float]]:
    if not isinstance(coords, list):
        raise ValueError("a polygon ring must be a list of [x, y]")
    return [_xy(c) for c in coords]


def _polygon(coords: Any) -> Any:
    from shapely.geometry import Polygon

    if not isinstance(coords, list) or not coords:
        raise ValueError("Polygon coordinates must be a list of rings")
    rings = [_ring(r) for r in coords]
    for ring in rings:
        if len({p for p in ring}) < 3:
            raise ValueError("a polygon ring needs at least 3 distinct positions")
    return Polygon(rings[0], rings[1:])


def geometry_shape(geometry: dict[str, Any]) -> Any:
    """A GeoJSON geometry as a shapely geometry (positions checked to be finite numbers)."""
    from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Point

    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        return _polygon(coords)
    if kind == "MultiPolygon":
        if not isinstance(coords, list):
            raise ValueError("MultiPolygon coordinates must be a list of polygons")
        return MultiPolygon([_polygon(c) for c in coords])
    if kind in ("Point", "MultiPoint"):
        pts = geometry_points(geometry)
        return Point(pts[0]) if kind == "Point" else GeometryCollection([Point(p) for p in pts])
    if kind == "LineString":
        return LineString(_ring(coords))
    if kind == "MultiLineString":
        return GeometryCollection([LineString(_ring(c)) for c in coords or []])
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            raise ValueError("GeometryCollection needs a 'geometries' list")
        return GeometryCollection([geometry_shape(g) for g in parts])
    raise ValueError(f"unknown geometry type {kind!r}")


# ================================================================================ writing
def _round(v: float) -> float:
    r = round(float(v), DECIMALS)
    return int(r) if r.is_integer() else r


def rounded(values: np.ndarray) -> np.ndarray:
    """``values`` (any shape) rounded exactly as written to a file (Python's correctly rounded
    ``round(v, DECIMALS)``; ``np.round`` differs from it on values just below a half)."""
    arr = np.asarray(values, dtype=np.float64)
    return np.array([round(float(v), DECIMALS) for v in arr.reshape(-1)], np.float64).reshape(arr.shape)


def point_geometry(xy: np.ndarray) -> dict[str, Any]:
    """(N, 2) x, y -> a ``Point`` (N = 1) or ``MultiPoint`` geometry, rounded to 2 decimals."""
    coords = [[_round(x), _round(y)] for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2)]
    if len(coords) == 1:
        return {"type": "Point", "coordinates": coords[0]}
    return {"type": "MultiPoint", "coordinates": coords}


def clean_polygonal(geometry: Any) -> Any:
    """Valid polygonal part of a shapely geometry on the 0.01 px grid (maybe empty)."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    geom = shapely.make_valid(geometry) if not geometry.is_valid else geometry
    geom = shapely.set_precision(geom, 10.0**-DECIMALS)
    polys: list[Polygon] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if isinstance(g, Polygon):
            if not g.is_empty and g.area > 0:
                polys.append(g)
        elif hasattr(g, "geoms"):
            stack.extend(g.geoms)
    if not polys:
        return Polygon()
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def polygon_geometry(geometry: Any) -> dict[str, Any] | None:
    """A shapely Polygon / MultiPolygon as a valid, closed, 2-decimal GeoJSON geometry (None if empty)."""
    from shapely.geometry import Polygon

    geom = clean_polygonal(geometry)
    if geom.is_empty:
        return None

    def rings(p: Polygon) -> list[list[list[float]]]:
        out = []
        for ring in (p.exterior, *p.interiors):
            out.append([[_round(x), _round(y)] for x, y in ring.coords])
        return out

    if isinstance(geom, Polygon):
        return {"type": "Polygon", "coordinates": rings(geom)}
    return {"type": "MultiPolygon", "coordinates": [rings(p) for p in geom.geoms]}


def feature(
    geometry: dict[str, Any], object_type: str, class_names: Sequence[str],
    colour: tuple[int, int, int], name: str | None = None, measurements: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A QuPath Feature (its ``id`` is set on writing), a classification with its colour (none when
    ``class_names`` is empty: an unclassified object, drawn in ``colour``), finite measurements."""
    names = list(class_names)
    props: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        props["name"] = str(name)
    if names:
        classification: dict[str, Any] = {"name": names[0]} if len(names) == 1 else {"names": names}
        classification["color"] = [int(c) for c in colour]
        props["classification"] = classification
    else:
        props["color"] = [int(c) for c in colour]
    if measurements:
        finite = {str(k): float(v) for k, v in measurements.items() if math.isfinite(float(v))}
        if finite:
            props["measurements"] = finite
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _with_ids(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Features with a UUID ``id`` each, derived from the feature's content and position.

    QuPath keeps any valid UUID; deriving it (uuid5) instead of drawing it (uuid4) makes the same
    objects give the same bytes, so outputs are reproducible and diffable.
    """
    out = []
    for i, f in enumerate(features):
        if "id" in f:
            out.append(f)
            continue
        body = json.dumps(f, sort_keys=True, separators=(",", ":"), allow_nan=False)
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"maskllp:{i}:{body}"))
        out.append({"type": f["type"], "id": fid, **{k: v for k, v in f.items() if k != "type"}})
    return out


def feature_collection_text(features: list[dict[str, Any]]) -> str:
    """A FeatureCollection as compact standard JSON (NaN refused: it must never be written).

    Features without an ``id`` get a content-derived UUID (:func:`_with_ids`).
    """
    features = _with_ids(features)
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                      allow_nan=False, separators=(",", ":")) + "\n"
