"""Cohort manifest: reading, every problem at once with its line, writing, validation summary."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from maskllp.classes import CellClass, RegionClass
from maskllp.config import Config, IntervalsConfig
from maskllp.errors import ProblemList
from maskllp.intervals import CLINICAL_TIERS, PAPER_FIVE
from maskllp.io.annotations import (
    PointAnnotations,
    Region,
    write_point_annotations_geojson,
    write_regions_geojson,
)
from maskllp.io.images import write_image
from maskllp.io.manifest import read_cohort, validate_cohort, write_cohort


@pytest.fixture
def cohort_dir(tmp_path, random_rgb):
    """Three small cores in images/, one with points and regions, written with the io writers."""
    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "c1.png", random_rgb, mpp=0.5)
    write_image(tmp_path / "images" / "c2.ome.tif", random_rgb[:40], mpp=0.25)
    write_image(tmp_path / "images" / "c3.png", random_rgb[:, :50])
    points = PointAnnotations(np.array([[5.0, 5.0], [10.0, 60.0], [69.0, 89.0]]),
                              np.array([CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR,
                                        CellClass.NON_TUMOUR]))
    write_point_annotations_geojson(tmp_path / "ann" / "c1_points.geojson", points)
    write_regions_geojson(tmp_path / "ann" / "c1_regions.geojson",
                          [Region(box(0, 0, 45, 70), RegionClass.TUMOUR)])
    return tmp_path


def _rows(base: Path):
    return [
        {"image": str(base / "images" / "c1.png"), "patient": "P1", "label": "1-25 %",
         "points": str(base / "ann" / "c1_points.geojson"),
         "regions": str(base / "ann" / "c1_regions.geojson")},
        {"image": str(base / "images" / "c2.ome.tif"), "patient": "P1", "label": "0.6"},
        {"image": "images/c3.png", "label": "", "mpp": "0.3"},
    ]


def test_write_then_read(cohort_dir):
    path = cohort_dir / "cohort.csv"
    write_cohort(path, _rows(cohort_dir))
    text = path.read_text()
    assert text.splitlines()[0] == "image,patient,label,points,regions,mpp"
    assert "images/c1.png" in text and str(cohort_dir) not in text  # relative paths
    cohort = read_cohort(path, PAPER_FIVE)
    assert len(cohort) == 3 and cohort.scheme is PAPER_FIVE
    e1, e2, e3 = cohort.entries
    assert e1.image == cohort_dir / "images" / "c1.png" and e1.image.is_absolute()
    assert (e1.line, e2.line, e3.line) == (2, 3, 4)
    assert e1.label.interval == 1 and e1.label.proportion is None and e1.label_text == "1-25 %"
    assert e2.label.interval == 3 and e2.label.proportion == 0.6
    assert e3.label is None and e3.label_text is None
    assert e3.patient == "c3"  # no patient: the image's stem
    assert e1.points == cohort_dir / "ann" / "c1_points.geojson" and e2.points is None
    assert e1.mpp == pytest.approx(0.5) and e2.mpp == pytest.approx(0.25)  # from the images
    assert e3.mpp == 0.3  # from the manifest
    assert {k: len(v) for k, v in cohort.patients().items()} == {"P1": 2, "c3": 1}


def test_delimiters_bom_blank_lines_spaces(cohort_dir):
    for delimiter in (";", "\t", ","):
        text = delimiter.join(["Image ", " label", "PATIENT"]) + "\n\n"
        text += delimiter.join([" images/c1.png", "<1 % ", " A "]) + "\n  \n"
        text += delimiter.join(["images/c3.png", "", ""]) + "\n"
        path = cohort_dir / "m.csv"
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n" if delimiter == "," else "\n").encode())
        cohort = read_cohort(path, PAPER_FIVE)
        assert [(e.line, e.patient, e.label.interval if e.label else None) for e in cohort] == [
            (3, "A", 0), (5, "c3", None)], delimiter


def test_manifest_with_every_kind_of_mistake(fixtures_dir):
    path = fixtures_dir / "cohort_bad" / "cohort.csv"
    with pytest.raises(ProblemList) as info:
        read_cohort(path, PAPER_FIVE)
    problems = info.value.problems
    where = [re.search(r"line (\d+)(?:, column (\w+))?", p).groups() for p in problems]
    assert where == [("3", "image"), ("4", "label"), ("5", "image"), ("7", "mpp"), ("8", "points"),
                     ("9", "points"), ("10", "points"), ("11", "image")]
    text = "\n".join(problems)
    for words in ("missing.png: file not found", "'1-20 %' is not an interval", "also listed on line 2",
                  "mpp '-0.25'", "no_such_points.geojson: annotation file not found",
                  "unknown_class.geojson: feature 2: unknown class 'Tumour cel: Positive'",
                  "1 of 2 points lie outside the 32 x 32 image", "../truncated.png: truncated"):
        assert words in text, words
    assert all(p.startswith(str(path)) and "\n" not in p for p in problems)
    assert info.value.summary == f"{path}: 8 problems in the cohort"


def test_missing_image_column_and_empty_files(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,label\na.png,0-1 %\n")
    with pytest.raises(ProblemList, match=r"line 1: missing required column 'image'"):
        read_cohort(path, PAPER_FIVE)
    path.write_text("image,label\n")
    with pytest.raises(ProblemList, match="no cores listed"):
        read_cohort(path, PAPER_FIVE)
    path.write_text("")
    with pytest.raises(Exception, match="empty file"):
        read_cohort(path, PAPER_FIVE)
    path.write_bytes(b"image\n\xff\xfe.png\n")
    with pytest.raises(Exception, match="not UTF-8"):
        read_cohort(path, PAPER_FIVE)


def test_bad_rows_without_touching_files(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,label,mpp,label2\n"
                    "a.png,0-1 %,abc\n"
                    ",0-1 %,\n"
                    "b.png,150,0.0005\n"
                    "c.png,,0.5,x,extra\n"
                    "d.png,1-49 %,\n")
    with pytest.raises(ProblemList) as info:
        read_cohort(path, PAPER_FIVE, check_files=False)
    text = str(info.value)
    assert "line 2, column mpp: mpp 'abc' is not a number" in text
    assert "line 3, column image: no image given" in text
    assert "line 4, column label: proportion '150' is not in [0, 1]" in text
    assert "line 4, column mpp: mpp '0.0005' is outside" in text
    assert "line 5: 5 values but the header has 4 columns" in text
    assert "line 6, column label: label '1-49 %' is not an interval of the 'paper5' scheme" in text
    # the same cohort in the clinical scheme: '1-49 %' is fine there
    path.write_text("image,label,extra\nd.png,1-49 %,\n")
    cohort = read_cohort(path, CLINICAL_TIERS, check_files=False)
    assert cohort.entries[0].label.interval == 1
    assert cohort.entries[0].mpp is None  # files not opened
    assert any("'extra' not used" in w for w in cohort.warnings)


def test_points_outside_and_regions_outside(cohort_dir):
    write_point_annotations_geojson(cohort_dir / "far.geojson", PointAnnotations(
        np.array([[1.0, 1.0], [-3.0, 4.0], [70.0, 2.0]]), np.zeros(3, int)))
    write_regions_geojson(cohort_dir / "far_regions.geojson", [Region(box(200, 200, 300, 300),
                                                                      RegionClass.TUMOUR, "far")])
    write_cohort(cohort_dir / "m.csv", [{"image": "images/c1.png", "points": "far.geojson",
                                         "regions": "far_regions.geojson"}])
    with pytest.raises(ProblemList) as info:
        read_cohort(cohort_dir / "m.csv", PAPER_FIVE)
    text = str(info.value)
    assert "line 2, column points: far.geojson: 2 of 3 points lie outside the 90 x 70 image" in text
    assert "line 2, column regions: far_regions.geojson: region 'far' lies outside the 90 x 70 image" in text


def test_same_image_written_two_ways_is_a_duplicate(cohort_dir):
    path = cohort_dir / "m.csv"
    path.write_text("image\nimages/c1.png\n./images/../images/c1.png\n")
    message = "line 3, column image: ./images/../images/c1.png is also listed on line 2"
    with pytest.raises(ProblemList, match=re.escape(message)):
        read_cohort(path, PAPER_FIVE)


def test_validation_summary(cohort_dir):
    path = cohort_dir / "cohort.csv"
    write_cohort(path, _rows(cohort_dir))
    report = validate_cohort(path, Config().intervals.build())
    assert report.label_counts() == {"0-1 %": 0, "1-25 %": 1, "25-50 %": 0, "50-75 %": 1, "75-100 %": 0}
    summary = report.summary()
    assert f"Cohort {path}: 3 cores" in summary
    assert "Images: 50 x 70 to 90 x 70 px" in summary
    assert "Pixel size: 0.25-0.5 µm/px (3 cores)" in summary
    assert "Labels (paper5): 0-1 %: 0, 1-25 %: 1, 25-50 %: 0, 50-75 %: 1, 75-100 %: 0" in summary
    assert "2 labelled, 1 given as exact proportions (binned above), 1 unlabelled" in summary
    assert "Patients: 2 (1-2 cores per patient, median 1.5)" in summary
    assert "Cell points: 1 core, 3 cells (positive tumour 1, negative tumour 1" in summary
    assert "non-tumour 1)" in summary
    assert "Regions: 1 core; mean area annotated: tumour 50.0 %, non-tumour 0.0 %" in summary
    clinical = Config(intervals=IntervalsConfig(scheme="clinical3"))
    with pytest.raises(ProblemList, match="'1-25 %' is not an interval of the 'clinical3' scheme"):
        validate_cohort(path, clinical.intervals.build())
    rows = _rows(cohort_dir)
    rows[0]["label"] = "0.3"
    write_cohort(path, rows)
    counts = validate_cohort(path, clinical.intervals.build()).label_counts()
    assert counts == {"<1 %": 0, "1-49 %": 1, ">=50 %": 1}


def test_unclassified_points_are_a_warning_not_a_failure(fixtures_dir, tmp_path):
    source = fixtures_dir / "cohort_bad"
    path = tmp_path / "m.csv"
    path.write_text(f"image,points,regions\n{source / 'core1.png'},{source / 'core1_points.geojson'},"
                    f"{source / 'core1_regions.geojson'}\n")
    report = validate_cohort(path, Config().intervals.build())
    assert report.cores[0].skipped_points == 1
    assert report.cores[0].cell_counts[CellClass.POSITIVE_TUMOUR] == 3
    assert report.cores[0].region_fractions[RegionClass.TUMOUR] == pytest.approx(0.5)
    assert any("1 unclassified (or ignored-class) points skipped" in w for w in report.warnings)
    assert "Warnings (1):" in report.summary()


def test_write_cohort_is_atomic_and_checks_rows(tmp_path):
    with pytest.raises(ValueError):
        write_cohort(tmp_path / "m.csv", [{"image": "a.png"}, {"label": "0-1 %"}])
    assert os.listdir(tmp_path) == []


def test_partial_points_are_a_column_of_their_own(cohort_dir):
    some = PointAnnotations(np.array([[3.0, 4.0], [20.0, 30.0]]),
                            np.array([CellClass.NON_TUMOUR, CellClass.POSITIVE_TUMOUR]))
    write_point_annotations_geojson(cohort_dir / "ann" / "c2_some.geojson", some)
    rows = _rows(cohort_dir)
    rows[1]["partial_points"] = str(cohort_dir / "ann" / "c2_some.geojson")
    path = cohort_dir / "cohort.csv"
    write_cohort(path, rows)
    assert path.read_text().splitlines()[0] == "image,patient,label,points,regions,partial_points,mpp"
    entries = read_cohort(path, PAPER_FIVE).entries
    assert entries[1].partial_points == cohort_dir / "ann" / "c2_some.geojson" and entries[1].points is None
    assert [e.annotated for e in entries] == [True, True, False]
    summary = validate_cohort(path, Config().intervals.build()).summary()
    assert "Cell points: 1 core, 3 cells" in summary  # the complete clicks alone
    assert "Partial points: 1 core, 2 cells (positive tumour 1, negative tumour 0" in summary
    write_point_annotations_geojson(cohort_dir / "ann" / "far.geojson", PointAnnotations(
        np.array([[100.0, 4.0]]), np.array([CellClass.NON_TUMOUR])))
    rows[1]["partial_points"] = str(cohort_dir / "ann" / "far.geojson")
    write_cohort(path, rows)
    with pytest.raises(ProblemList, match="line 3, column partial_points: ann/far.geojson: 1 of 1 points lie "
                                          "outside"):
        read_cohort(path, PAPER_FIVE)
