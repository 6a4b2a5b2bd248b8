"""Whole cohorts on disk: valid for `maskllp validate`, truth consistent, determined by the seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.spatial import cKDTree

from maskllp.classes import CellClass
from maskllp.config import Config, load_config
from maskllp.config.synth import AnnotationDrawConfig, CohortDrawConfig, SynthConfig
from maskllp.io.annotations import read_annotations
from maskllp.io.images import open_image, read_image
from maskllp.io.manifest import read_cohort, validate_cohort
from maskllp.synth import generate_cohort
from maskllp.synth.cohort import make_core, plan_cohort
from maskllp.synth.truth import read_truth, read_truth_cells


def small(**changes) -> SynthConfig:
    base = {"size": 256, "seed": 5, "annotations": AnnotationDrawConfig(point_cores=2, region_cores=3)}
    base.update(changes)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "cohort"
    cfg = small(cohort=CohortDrawConfig(tumour_free_fraction=0.25, cores_per_patient=(2, 3)))
    manifest = generate_cohort(out, 6, cfg)
    return manifest, cfg


def test_cohort_passes_validation(cohort):
    manifest, cfg = cohort
    report = validate_cohort(manifest, Config(synth=cfg).intervals.build())
    assert len(report.cohort) == 6
    assert not report.warnings
    assert all(c.shape == (256, 256) and c.entry.mpp == pytest.approx(0.5) for c in report.cores)
    assert sum(c.cell_counts is not None for c in report.cores) == 2
    assert sum(c.region_fractions is not None for c in report.cores) == 3
    for c in report.cores:
        if c.region_fractions is not None:
            assert 0.01 < sum(c.region_fractions.values()) < 0.12  # about the paper's 5.7 %
    assert (manifest.parent / "config.yaml").is_file()
    assert load_config(manifest.parent / "config.yaml").synth == cfg


def test_truth_matches_cells_files_points_and_labels(cohort):
    manifest, cfg = cohort
    truth = read_truth(manifest.parent / "truth.csv")
    entries = read_cohort(manifest, Config().intervals.build()).entries
    assert sorted(truth) == sorted(e.image.name for e in entries)
    scheme = Config().intervals.build()
    for entry in entries:
        t = truth[entry.image.name]
        cells = read_truth_cells(t.cells_path)
        counts = Counter(cells.classes.tolist())
        assert counts[CellClass.POSITIVE_TUMOUR] == t.n_positive
        assert counts[CellClass.NEGATIVE_TUMOUR] == t.n_negative
        assert counts[CellClass.NON_TUMOUR] == t.n_non_tumour
        assert ((cells.yx >= 0) & (cells.yx <= 255)).all()
        if t.tps is None:
            assert entry.label is None and t.n_positive + t.n_negative == 0
        else:
            assert t.tps == t.n_positive / (t.n_positive + t.n_negative)
            assert entry.label is not None and entry.label.interval == scheme.index_of(t.tps)
        if entry.points is not None:
            points = read_annotations(entry.points).points
            assert len(points) == len(cells.classes)
            assert Counter(points.classes.tolist()) == counts
            # one point per cell, at its position (written rounded), of its class
            dist, idx = cKDTree(cells.yx).query(points.yx, k=1, p=np.inf)
            assert dist.max() < 0.006 and len(np.unique(idx)) == len(idx)
            assert np.array_equal(points.classes, cells.classes[idx])
    assert any(t.tps is None for t in truth.values())  # the tumour-free setting is honoured


def test_manifest_never_points_at_truth(cohort):
    manifest, _ = cohort
    text = manifest.read_text()
    assert "truth" not in text
    assert text.splitlines()[0] == "image,patient,label,points,regions,mpp"


def test_same_seed_same_bytes_other_seed_other_cohort(tmp_path):
    cfg = small(size=192)
    a = generate_cohort(tmp_path / "a", 3, cfg).parent
    b = generate_cohort(tmp_path / "b", 3, cfg).parent
    c = generate_cohort(tmp_path / "c", 3, small(size=192, seed=6)).parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) > 10
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "images" / "P001-c1.png").read_bytes() != (c / "images" / "P001-c1.png").read_bytes()


def test_a_patient_prefix_renames_the_cores_and_changes_nothing_else():
    plans = plan_cohort(4, small())
    renamed = plan_cohort(4, small(cohort=CohortDrawConfig(patient_prefix="S2")))
    assert [p.name.replace("P", "S2", 1) for p in plans] == [p.name for p in renamed]
    assert renamed[0].name == "S2001-c1" and renamed[0].patient == "S2001"
    a = make_core(plans[1], small())
    b = make_core(renamed[1], small(cohort=CohortDrawConfig(patient_prefix="S2")))
    assert np.array_equal(a.cells.yx, b.cells.yx)
    with pytest.raises(ValueError, match="patient_prefix"):
        CohortDrawConfig(patient_prefix="../x")


def test_cores_do_not_change_when_the_cohort_grows():
    cfg = small()
    plans3, plans8 = plan_cohort(3, cfg), plan_cohort(8, cfg)
    assert [p.patient for p in plans3] == [p.patient for p in plans8[:3]]
    a, b = make_core(plans3[1], cfg), make_core(plans8[1], cfg)
    assert np.array_equal(a.cells.yx, b.cells.yx)


def test_tiled_ome_tiff_cores_hold_the_same_pixels_as_png(tmp_path):
    png = generate_cohort(tmp_path / "png", 1, small(size=300, tile=128))
    tif = generate_cohort(tmp_path / "tif", 1, small(size=300, tile=128, image_format="ome.tif"))
    png_image = read_cohort(png, Config().intervals.build()).entries[0].image
    tif_image = read_cohort(tif, Config().intervals.build()).entries[0].image
    assert tif_image.name.endswith(".ome.tif")
    with open_image(tif_image) as reader:
        assert reader.mpp == pytest.approx(0.5)
        assert len(reader.level_shapes) > 1  # pyramid
        assert np.array_equal(reader.read(), read_image(png_image))
    assert validate_cohort(tif, Config().intervals.build())
    again = generate_cohort(tmp_path / "tif2", 1, small(size=300, tile=128, image_format="ome.tif"))
    for rel in ("images/" + tif_image.name, "cohort.csv"):
        assert (again.parent / rel).read_bytes() == (tif.parent / rel).read_bytes(), rel


def test_jpeg_and_label_noise_and_nucleus_marker(tmp_path):
    cfg = small(jpeg_quality=80, marker="nucleus", cohort=CohortDrawConfig(label_noise=1.5))
    manifest = generate_cohort(tmp_path / "j", 8, cfg)
    report = validate_cohort(manifest, Config(synth=cfg).intervals.build())
    assert all(e.image.suffix == ".jpg" for e in report.cohort)
    truth = read_truth(manifest.parent / "truth.csv")
    # with label noise the manifest label is an estimate: it may differ from the exact interval
    assert all(t.label is not None for t in truth.values() if t.tps is not None)
    assert any(t.label != t.interval for t in truth.values()) or len(truth) < 8


def test_refuses_a_non_empty_folder_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    from maskllp.errors import InputError

    with pytest.raises(InputError, match="not empty"):
        generate_cohort(out, 1, small())
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match="did not write"):  # --overwrite never deletes a user's files
        generate_cohort(out, 1, small(), overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    generate_cohort(tmp_path / "new", 1, small())
    (tmp_path / "new" / "keep.txt").write_text("x")
    generate_cohort(tmp_path / "new", 1, small(), overwrite=True)  # a cohort maskllp wrote is replaced
    assert not (tmp_path / "new" / "keep.txt").exists() and (tmp_path / "new" / "cohort.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
