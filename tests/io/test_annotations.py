"""Annotations: QuPath GeoJSON (as QuPath writes it) and CSV in, QuPath-importable GeoJSON out."""

from __future__ import annotations

import gzip
import json
import os
import uuid
import zipfile

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from maskllp.classes import CellClass, ClassMapping, RegionClass
from maskllp.errors import InputError
from maskllp.io.annotations import (
    PointAnnotations,
    Region,
    read_annotations,
    read_annotations_collecting,
    region_class_at,
    region_label_mask,
    write_detections_geojson,
    write_point_annotations_geojson,
    write_regions_geojson,
)

P, N, T, S = CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR, CellClass.TUMOUR, CellClass.NON_TUMOUR


def _feature(geometry, classification=None, object_type="annotation", **props):
    properties = {"objectType": object_type, **props}
    if classification is not None:
        properties["classification"] = classification
    return {"type": "Feature", "id": str(uuid.uuid4()), "geometry": geometry, "properties": properties}


def _write(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ QuPath's own files
def test_points_as_qupath_points_tool_writes_them(fixtures_dir):
    ann = read_annotations(fixtures_dir / "qupath" / "points-annotations.geojson")
    assert ann.points.counts() == {P: 4, N: 2, T: 0, S: 0}
    assert ann.regions == []
    # [1021.5, 2033.5] is the centre of pixel (row 2033, col 1021)
    first = ann.points.yx[ann.points.classes == P][0]
    np.testing.assert_allclose(first, [2033.0, 1021.0])
    assert ann.points.yx.dtype == np.float64 and ann.points.classes.dtype == np.int8


def test_region_polygons_with_hole(fixtures_dir):
    ann = read_annotations(fixtures_dir / "qupath" / "tumour-region-annotations.geojson")
    assert [(r.cls, r.name) for r in ann.regions] == [(RegionClass.TUMOUR, "Tumour region 1"),
                                                      (RegionClass.NON_TUMOUR, None)]
    assert ann.regions[0].geometry.area == pytest.approx(600 * 500 - 100 * 100)
    assert len(ann.points) == 0


def test_detections_and_cells_give_one_point_each(fixtures_dir):
    ann = read_annotations(fixtures_dir / "qupath" / "detections-and-cells.geojson")
    assert ann.points.classes.tolist() == [P, N]
    # the cell's point is its nucleus centre (1051, 2101) -> index (2100.5, 1050.5)
    np.testing.assert_allclose(ann.points.yx[1], [2100.5, 1050.5])


@pytest.mark.parametrize("name", ["reference-export-qupath-core-0.4.4.geojson",
                                  "reference-export-qupath-core-0.6.0.geojson"])
def test_qupath_reference_exports(fixtures_dir, name):
    """0.4.4 writes a bare NaN, 0.6.0 a string "NaN" and a repeated metadata key; both read."""
    ann, problems = read_annotations_collecting(fixtures_dir / "qupath" / name)
    assert problems == []
    # points annotation (3, Positive) + single point (Negative) + the Tumor: Positive detection and
    # the Negative cell
    assert ann.points.counts() == {P: 4, N: 2, T: 0, S: 0}
    assert [r.cls for r in ann.regions] == [RegionClass.TUMOUR]
    assert ann.skipped_regions == 1  # the unclassified ellipse


def test_combined_file(fixtures_dir):
    ann = read_annotations(fixtures_dir / "qupath" / "combined.geojson")
    assert len(ann.points) == 8 and len(ann.regions) == 2


# ------------------------------------------------------------------------------ lenient reading
def test_bom_gzip_zip_bare_list_single_feature_and_bare_geometry(tmp_path):
    feature = _feature({"type": "MultiPoint", "coordinates": [[1.5, 2.5], [3.5, 4.5]]}, "Positive")
    text = json.dumps({"type": "FeatureCollection", "features": [feature]})
    (tmp_path / "bom.geojson").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "a.geojson.gz").write_bytes(gzip.compress(text.encode()))
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("inner.geojson", text)
    _write(tmp_path / "list.json", [[feature]])
    _write(tmp_path / "single.geojson", feature)
    for name in ("bom.geojson", "a.geojson.gz", "a.zip", "list.json", "single.geojson"):
        ann = read_annotations(tmp_path / name)
        assert ann.points.classes.tolist() == [P, P], name
        np.testing.assert_allclose(ann.points.yx, [[2, 1], [4, 3]])
    _write(tmp_path / "bare.geojson", {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})
    assert read_annotations(tmp_path / "bare.geojson").skipped_regions == 1


def test_classification_forms_and_legacy_object_type(tmp_path):
    pt = {"type": "Point", "coordinates": [5.5, 5.5]}
    features = [
        _feature(pt, "Tumor: Positive"),
        _feature(pt, {"names": ["Stroma", "Positive"], "color": [1, 2, 3]}),
        _feature(pt, {"name": "Negative"}),  # no colour: QuPath refuses it, we read it
        _feature(pt, {"name": "Tumor"}),
        _feature(pt, None),
        _feature(pt, {}),
        {"type": "Feature", "geometry": pt, "properties": {"object_type": "detection",
                                                           "classification": {"name": "3+"}}},
        {"type": "Feature", "id": "PathCellObject", "geometry": pt,
         "properties": {"classification": {"name": "Immune cells", "colorRGB": -1}}},
        _feature(pt, "Ignore*"),
    ]
    ann = read_annotations(_write(tmp_path / "a.geojson", features))
    assert ann.points.classes.tolist() == [P, S, N, T, P, S]
    assert ann.skipped_points == 3


def test_tiles_tma_cores_and_lines_are_ignored(tmp_path):
    square = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}
    features = [_feature(square, "Tumor", object_type="tile"),
                _feature(square, None, object_type="tmaCore"),
                _feature({"type": "LineString", "coordinates": [[0, 0], [3, 3]]}, "Tumor")]
    ann, problems = read_annotations_collecting(_write(tmp_path / "a.geojson", features))
    assert problems == [] and len(ann.points) == 0 and ann.regions == []


def test_multipolygon_and_invalid_polygon_are_made_valid(tmp_path):
    bow = {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}
    multi = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]],
                                                     [[[5, 5], [6, 5], [6, 6], [5, 5]]]]}
    ann = read_annotations(_write(tmp_path / "a.geojson", [_feature(bow, "Tumor"),
                                                            _feature(multi, "Stroma")]))
    assert all(r.geometry.is_valid for r in ann.regions)
    assert ann.regions[0].geometry.area == pytest.approx(50.0)
    assert isinstance(ann.regions[1].geometry, MultiPolygon)


# ------------------------------------------------------------------------------ bad annotation files
def test_unknown_class_names_the_file_features_and_name(tmp_path):
    pt = {"type": "Point", "coordinates": [1, 1]}
    features = [_feature(pt, "Positive")] + [_feature(pt, "Tumour cel: Positive") for _ in range(7)]
    path = _write(tmp_path / "a.geojson", features)
    with pytest.raises(InputError) as info:
        read_annotations(path)
    message = str(info.value)
    assert str(path) in message and "'Tumour cel: Positive'" in message
    assert "features 2, 3, 4, 5, 6 and 2 more" in message and "\n" not in message


def test_unknown_class_is_fine_when_mapped_in_config(tmp_path):
    pt = {"type": "Point", "coordinates": [1, 1]}
    path = _write(tmp_path / "a.geojson", [_feature(pt, "Histiocyte"), _feature(pt, "Tumour cell: 2+")])
    with pytest.raises(InputError, match="Histiocyte"):
        read_annotations(path)
    mapping = ClassMapping(non_tumour=[*ClassMapping().non_tumour, "Histiocyte"])
    assert read_annotations(path, mapping).points.classes.tolist() == [S, P]


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("", "empty file"),
    ("42", "not GeoJSON"),
    (json.dumps([{"type": "Feature", "geometry": None, "properties": {}}]), "feature 1: no geometry"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": ["a", 1]}}]),
     "feature 1: a position must hold numbers"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}},
                 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}]),
     "feature 2: a polygon ring needs at least 3"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "Circle", "coordinates": [1, 1]}}]),
     "unknown geometry type"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]},
                  "properties": {"classification": 5}}]), "classification must be"),
    (json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, float("nan")]}}]),
     "finite"),
])
def test_bad_geojson_is_one_line_naming_file_and_feature(tmp_path, content, words):
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_annotations(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert words in message, message


def test_all_problems_of_a_file_are_collected(tmp_path):
    pt = {"type": "Point", "coordinates": [1, 1]}
    features = [_feature(None), _feature(pt, "Foo"), _feature(pt, "Positive"), _feature(pt, "Bar")]
    ann, problems = read_annotations_collecting(_write(tmp_path / "a.geojson", features))
    assert [p.where for p in problems] == ["feature 1", "feature 2", "feature 4"]
    assert len(ann.points) == 1


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_annotations(tmp_path / "nope.geojson")


# ------------------------------------------------------------------------------ CSV points
def test_points_csv_with_header_semicolons_and_unclassified(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("\ufeffX; Y; Class\n1.5;2.5;Positive\n\n3.5;4.5;Tumor: Negative\n5;6;\n")
    ann = read_annotations(path)
    assert ann.points.classes.tolist() == [P, N]
    np.testing.assert_allclose(ann.points.yx, [[2, 1], [4, 3]])
    assert ann.skipped_points == 1


def test_points_csv_without_header_and_qupath_tsv(tmp_path):
    (tmp_path / "p.csv").write_text("1.5,2.5,Stroma\n")
    assert read_annotations(tmp_path / "p.csv").points.classes.tolist() == [S]
    (tmp_path / "p.tsv").write_text("x\ty\tclass\tname\n10\t20\tNegative\tcell a\n")
    assert read_annotations(tmp_path / "p.tsv").points.classes.tolist() == [N]


def test_points_csv_problems_name_the_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y,class\n1,2,Positive\nabc,2,Positive\n3,4,Nonsense\n")
    with pytest.raises(InputError) as info:
        read_annotations(path)
    assert "line 3: x and y must be numbers" in str(info.value)
    _, problems = read_annotations_collecting(path)
    assert [p.where for p in problems] == ["line 3", "line 4"]
    (tmp_path / "h.csv").write_text("col,row,class\n1,2,Positive\n")
    with pytest.raises(InputError, match="line 1: header needs columns x, y"):
        read_annotations(tmp_path / "h.csv")


# ------------------------------------------------------------------------------ writing
def _strict_json(path):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def _check_qupath_rules(data):
    """The writer checklist of shared/formats/qupath-geojson.md."""
    assert data["type"] == "FeatureCollection"
    for f in data["features"]:
        assert f["type"] == "Feature"
        assert uuid.UUID(f["id"]).version == 5  # content-derived: same objects, same bytes
        props = f["properties"]
        assert props["objectType"] in ("annotation", "detection")
        cls = props["classification"]
        assert ("name" in cls or "names" in cls) and len(cls["color"]) == 3
        geom = f["geometry"]
        assert geom["type"] in ("Point", "MultiPoint", "Polygon", "MultiPolygon")
        text = json.dumps(geom["coordinates"])
        for token in text.replace("[", " ").replace("]", " ").replace(",", " ").split():
            assert len(token.partition(".")[2]) <= 2, token
        polys = {"Polygon": [geom["coordinates"]], "MultiPolygon": geom["coordinates"]}.get(geom["type"], [])
        for poly in polys:
            for ring in poly:
                assert ring[0] == ring[-1]
            assert shapely.geometry.shape({"type": "Polygon", "coordinates": poly}).is_valid


def test_point_annotations_round_trip(tmp_path, rng):
    yx = rng.uniform(0, 500, size=(40, 2))
    classes = rng.integers(0, 4, size=40)
    path = tmp_path / "points.geojson"
    write_point_annotations_geojson(path, PointAnnotations(yx, classes))
    data = _strict_json(path)
    _check_qupath_rules(data)
    assert len(data["features"]) == len(np.unique(classes))  # one annotation per class
    back = read_annotations(path)
    order_a, order_b = np.lexsort((yx[:, 1], yx[:, 0], classes)), np.lexsort(
        (back.points.yx[:, 1], back.points.yx[:, 0], back.points.classes))
    assert back.points.classes[order_b].tolist() == classes[order_a].tolist()
    np.testing.assert_allclose(back.points.yx[order_b], yx[order_a], atol=0.0051)


def test_single_point_is_written_as_point(tmp_path):
    path = tmp_path / "one.geojson"
    write_point_annotations_geojson(path, PointAnnotations(np.array([[3.0, 4.0]]), np.array([int(S)])))
    feature = _strict_json(path)["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [4.5, 3.5]}
    assert feature["properties"]["classification"] == {"name": "Stroma", "color": [150, 200, 150]}


def test_detections_round_trip_with_finite_measurements(tmp_path):
    yx = np.array([[1.0, 2.0], [3.25, 4.5], [7.0, 7.0]])
    classes = np.array([int(P), int(N), int(S)])
    score = np.array([0.9, np.nan, np.inf])
    path = tmp_path / "det.geojson"
    write_detections_geojson(path, yx, classes, {"Tumour score": score, "DAB": np.array([0.1, 0.2, 0.3])})
    data = _strict_json(path)
    _check_qupath_rules(data)
    assert [f["properties"]["objectType"] for f in data["features"]] == ["detection"] * 3
    assert [f["properties"]["measurements"] for f in data["features"]] == [
        {"Tumour score": 0.9, "DAB": 0.1}, {"DAB": 0.2}, {"DAB": 0.3}]
    assert data["features"][0]["properties"]["classification"]["names"] == ["Tumor", "Positive"]
    back = read_annotations(path)
    assert back.points.classes.tolist() == classes.tolist()
    np.testing.assert_allclose(back.points.yx, yx, atol=0.0051)


def test_the_configured_written_names_are_what_the_files_hold_and_read_back(tmp_path):
    """``[classes] write_*``: cells, clicks and regions are written with the lab's names (colours stay
    QuPath's), and the same mapping reads them back as the same classes."""
    from maskllp.classes import ClassMapping

    mapping = ClassMapping(tumour=["Tumor", "Carcinoma"], write_positive="Carcinoma: Positive",
                           write_tumour="Carcinoma", write_non_tumour="Immune cells")
    yx, classes = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([int(P), int(N), int(S)])
    path = tmp_path / "det.geojson"
    write_detections_geojson(path, yx, classes, mapping=mapping)
    data = _strict_json(path)
    _check_qupath_rules(data)
    written = [f["properties"]["classification"] for f in data["features"]]
    assert [c.get("names") or [c["name"]] for c in written] == [
        ["Carcinoma", "Positive"], ["Tumor", "Negative"], ["Immune cells"]]
    assert data["features"][0]["properties"]["classification"]["color"] == [200, 50, 50]
    assert read_annotations(path, mapping).points.classes.tolist() == classes.tolist()
    clicks = tmp_path / "clicks.geojson"
    write_point_annotations_geojson(clicks, PointAnnotations(yx, classes), mapping)
    assert read_annotations(clicks, mapping).points.classes.tolist() == classes.tolist()
    regions = tmp_path / "regions.geojson"
    write_regions_geojson(regions, [Region(box(0, 0, 5, 5), RegionClass.TUMOUR)], mapping)
    assert _strict_json(regions)["features"][0]["properties"]["classification"]["name"] == "Carcinoma"


def test_a_coordinate_where_numpy_and_python_round_differently_still_writes(tmp_path):
    """x = 55.675 is stored as 55.67499...: Python's round gives 55.67 (what the file holds), np.round
    55.68. The read-back check must expect what is written (a predict of scikit-image's IHC sample
    once failed on this)."""
    yx = np.array([[55.175, 10.0], [2.175, 269.365]])  # QuPath x, y = col + 0.5, row + 0.5
    classes = np.array([int(P), int(S)])
    for write in (lambda p: write_detections_geojson(p, yx, classes),
                  lambda p: write_point_annotations_geojson(p, PointAnnotations(yx, classes))):
        path = tmp_path / "half.geojson"
        write(path)
        np.testing.assert_allclose(read_annotations(path).points.yx, yx, atol=0.0051)


def test_regions_round_trip_valid_and_closed(tmp_path):
    bow = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    holed = box(20, 20, 60, 50).difference(box(30, 30, 40, 40))
    regions = [Region(holed, RegionClass.TUMOUR, "tumour 1"), Region(bow, RegionClass.NON_TUMOUR),
               Region(Polygon([(0, 0), (1, 1), (2, 2)]), RegionClass.TUMOUR)]  # no area: left out
    path = tmp_path / "regions.geojson"
    write_regions_geojson(path, regions)
    data = _strict_json(path)
    _check_qupath_rules(data)
    assert len(data["features"]) == 2
    back = read_annotations(path).regions
    assert [(r.cls, r.name) for r in back] == [(RegionClass.TUMOUR, "tumour 1"),
                                               (RegionClass.NON_TUMOUR, None)]
    assert back[0].geometry.area == pytest.approx(holed.area)
    assert back[1].geometry.area == pytest.approx(50.0)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_point_annotations_geojson(tmp_path / "x.geojson", PointAnnotations(np.array([[np.nan, 1.0]]),
                                                                                 np.array([0])))
    with pytest.raises(ValueError):
        write_detections_geojson(tmp_path / "x.geojson", np.zeros((2, 2)), np.array([0, 9]))
    assert os.listdir(tmp_path) == []


def test_point_annotations_validate_their_arrays():
    with pytest.raises(ValueError):
        PointAnnotations(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError):
        PointAnnotations(np.zeros((1, 2)), np.array([7]))


# ------------------------------------------------------------------------------ rasterising
def test_region_mask_uses_pixel_centres():
    # x from 2 to 7, y from 3 to 9: pixel centres c + 0.5 in (2, 7) -> c = 2..6; rows 3..8
    mask = region_label_mask([Region(box(2, 3, 7, 9), RegionClass.TUMOUR)], (12, 10))
    expected = np.zeros((12, 10), np.uint8)
    expected[3:9, 2:7] = 1
    np.testing.assert_array_equal(mask, expected)


def test_region_mask_holes_overlaps_and_downsample():
    tumour = Region(box(0, 0, 16, 16).difference(box(4, 4, 8, 8)), RegionClass.TUMOUR)
    stroma = Region(box(12, 12, 20, 20), RegionClass.NON_TUMOUR)
    mask = region_label_mask([stroma, tumour], (20, 21))
    assert mask.shape == (20, 21)
    assert mask[5, 5] == 0 and mask[1, 1] == 1 and mask[13, 13] == 2 and mask[19, 20] == 0
    small = region_label_mask([stroma, tumour], (20, 21), downsample=4.0)
    assert small.shape == (5, 6)
    # small pixel (i, j) is labelled by the level-0 point ((j + 0.5) * 4, (i + 0.5) * 4); region edges
    # lie on multiples of 4 here, so that point and level-0 pixel (4 i + 2, 4 j + 2) agree
    np.testing.assert_array_equal(small[:, :5], mask[2::4, 2::4])
    assert (small[:, 5] == 0).all()  # covers x 20-24, beyond the regions


def test_region_class_at_agrees_with_mask(rng):
    regions = [Region(Polygon([(3.2, 1.1), (40.7, 5.3), (30.1, 38.9), (2.2, 30.4)]), RegionClass.TUMOUR),
               Region(box(10.3, 10.6, 20.2, 20.4), RegionClass.NON_TUMOUR)]
    mask = region_label_mask(regions, (45, 45))
    yx = np.stack(np.meshgrid(np.arange(45), np.arange(45), indexing="ij"), -1).reshape(-1, 2).astype(float)
    np.testing.assert_array_equal(region_class_at(regions, yx), mask.reshape(-1))
