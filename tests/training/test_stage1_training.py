"""Two training steps of each stage-1 network: finite losses, a model folder that reloads exactly."""

import csv
import math

import numpy as np
import pytest

from maskllp.config import Config
from maskllp.config.detection import ClassifierConfig, DetectorConfig, TilingConfig
from maskllp.detection.model import Stage1Model
from maskllp.io.grid import ArrayImage
from maskllp.training.stage1 import TrainingImage, cell_labels, train_classifier, train_detector


def _config(classes: str = "tumour", kind: str = "cnn") -> Config:
    cfg = Config()
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.devices = "1"
    cfg.trainer.progress_bar = False
    cfg.detector = DetectorConfig(base_channels=4, depth=3, crop=32, batch_size=2, steps_per_epoch=2,
                                  max_epochs=1, thresholds=[-100.0, 0.2], min_distance_um=[2.0, 3.0])
    cfg.classifier = ClassifierConfig(kind=kind, backbone="resnet18", feature_layer="layer1", crop=32,
                                      batch_size=2, steps_per_epoch=2, max_epochs=1, classes=classes,
                                      measurement_epochs=2, val_fraction=0.0)
    cfg.tiling = TilingConfig(tile=48, overlap=32)
    return cfg


def _losses(log_dir) -> list[float]:
    with open(log_dir / "logs" / "metrics.csv") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]


def _images(make_core) -> list[TrainingImage]:
    img, yx, classes = make_core(72)
    return [TrainingImage(ArrayImage(img, 0.5), 0.5, yx, classes, name="core")]


@pytest.mark.parametrize("kind", ["cnn", "measurements", "measurements+patches"])
@pytest.mark.parametrize("classes", ["tumour", "three"])
def test_two_steps_finite_loss_and_reload(tmp_path, classes, kind, make_core):
    cfg = _config(classes, kind.split("+")[0])
    cfg.classifier.patch_features = kind.endswith("+patches")
    images = _images(make_core)
    detector = train_detector(images, cfg, tmp_path / "det")
    losses = _losses(tmp_path / "det")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert detector.peak_threshold in cfg.detector.thresholds
    assert detector.min_distance_um in cfg.detector.min_distance_um
    assert detector.validation["f1"] is None or 0 <= detector.validation["f1"] <= 1

    model = train_classifier(images, detector, cfg, tmp_path / "cls")
    losses = _losses(tmp_path / "cls")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)

    folder = model.save(tmp_path / "stage1")
    assert {p.name for p in folder.iterdir()} == {"config.json", "weights.safetensors", "thresholds.json",
                                                  ".maskllp-output"}
    again = Stage1Model.load(folder)
    image = ArrayImage(images[0].source.rgb, 0.5)
    a, b = model.detect(image), again.detect(image)
    assert len(a) > 0
    np.testing.assert_array_equal(a.yx, b.yx)
    np.testing.assert_array_equal(a.peak_score, b.peak_score)
    np.testing.assert_array_equal(a.tumour_score, b.tumour_score)
    assert (a.class_probs is None) == (classes == "tumour")
    np.testing.assert_array_equal(model.tumour_mask(a), again.tumour_mask(b))
    if kind.endswith("+patches"):  # the patches are cut for the classifier, kept only when asked for
        assert again.classifier.encoder is not None and a.patches is None
        assert again.detect(image, patches=True).patches.shape[:2] == (len(a), 2)


def test_cell_labels_from_points_and_regions():
    from shapely.geometry import box

    from maskllp.classes import CellClass, RegionClass
    from maskllp.io.annotations import Region

    points = np.array([[10.0, 10.0], [30.0, 30.0], [50.0, 50.0]])
    classes = np.array([CellClass.POSITIVE_TUMOUR, CellClass.NON_TUMOUR, CellClass.TUMOUR], np.int8)
    regions = [Region(box(0, 60, 20, 80), RegionClass.NON_TUMOUR),
               Region(box(60, 0, 80, 20), RegionClass.TUMOUR)]
    image = TrainingImage(ArrayImage(np.zeros((80, 80, 3), np.uint8)), 0.5, points, classes, regions)
    cells = np.array([[10.5, 10.0], [30.0, 31.0], [50.0, 49.0], [70.0, 10.0], [10.0, 70.0], [40.0, 5.0]])
    assert cell_labels(cells, image, "tumour", 3.0).tolist() == [1, 0, 1, 0, 1, -1]
    assert cell_labels(cells, image, "three", 3.0).tolist() == [0, 2, -1, 2, -1, -1]


def test_a_core_clicked_only_inside_small_regions_is_recognised():
    from shapely.geometry import box

    from maskllp.classes import CellClass, RegionClass
    from maskllp.io.annotations import Region
    from maskllp.training.stage1 import partially_clicked

    classes = np.full(2, CellClass.NEGATIVE_TUMOUR, np.int8)
    inside = np.array([[10.0, 10.0], [15.0, 12.0]])  # (y, x), in the 20 x 20 box at the top left
    regions = [Region(box(0, 0, 20, 20), RegionClass.TUMOUR), Region(box(10, 10, 30, 20), RegionClass.TUMOUR)]

    def core(points, regs, side=80):
        return TrainingImage(ArrayImage(np.zeros((side, side, 3), np.uint8)), 0.5, points, classes, regs)

    covered = partially_clicked(core(inside, regions))
    assert covered == pytest.approx((400 + 100) / 6400)  # the union, not the sum (overlap counted once)
    assert partially_clicked(core(np.array([[10.0, 10.0], [60.0, 60.0]]), regions)) is None  # one outside
    assert partially_clicked(core(inside, [])) is None  # no regions: a whole clicked core
    assert partially_clicked(core(inside, regions, side=28)) is None  # regions cover most of the image


def test_train_detector_refuses_a_cohort_clicked_only_inside_regions(tmp_path, run_cli):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[synth]\nsize = 160\n[synth.annotations]\npoint_scope = \"regions\"\n")
    code, _, stderr = run_cli("synth", "--n", 3, "--out", tmp_path / "c", "-c", cfg)
    assert code in (0, None), stderr
    code, _, stderr = run_cli("train", "detector", tmp_path / "c" / "cohort.csv", "--out", tmp_path / "det")
    assert code == 2 and "every clicked cell lies inside the region annotations" in stderr
    assert "cohort.csv" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "det").exists()


def test_classifier_starts_from_a_local_weights_file(tmp_path):
    import torch
    import torchvision
    from safetensors.torch import save_file

    from maskllp.detection.model import build_classifier

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    save_file(reference.state_dict(), str(tmp_path / "r18.safetensors"))
    cfg = ClassifierConfig(kind="cnn", backbone="resnet18", feature_layer="layer2")
    net = build_classifier(cfg, tmp_path / "r18.safetensors")
    assert torch.equal(net.trunk[0].weight, reference.conv1.weight)
    assert torch.equal(net.trunk[5][0].conv1.weight, reference.layer2[0].conv1.weight)
    assert not torch.equal(build_classifier(cfg).trunk[0].weight, reference.conv1.weight)


def test_stain_copies_add_the_training_cells_measured_on_jittered_stains(tmp_path, make_core):
    """With ``stain_copies`` 2 the measurement classifier sees each training cell three times: as it
    is and on two stain-jittered copies, whose hematoxylin / DAB measurements differ from the
    original's while the cells' positions (the neighbourhood counts) stay."""
    from maskllp.training.stage1 import measured_labelled_cells

    cfg = _config("tumour", "measurements")
    images = _images(make_core)
    detector = train_detector(images, cfg, tmp_path / "det")
    first = measured_labelled_cells(images, detector, cfg)
    x0, y0 = first.features, first.labels
    cfg.classifier.stain_copies = 2
    copies = measured_labelled_cells(images, detector, cfg)
    x2, y2, v2 = copies.features, copies.labels, copies.validation
    n = len(y0)
    assert n > 0 and len(y2) == 3 * n and not v2[n:].any()
    np.testing.assert_array_equal(x2[:n], x0)
    np.testing.assert_array_equal(np.concatenate([y0, y0, y0]), y2)
    assert not np.allclose(x2[n: 2 * n], x0) and not np.allclose(x2[2 * n:], x2[n: 2 * n])
    model = train_classifier(images, detector, cfg, tmp_path / "cls")
    assert model.classifier_validation["labelled_train_cells"] == 3 * n


def test_a_stage1_folder_from_before_the_patch_classifier_loads_as_it_was(tmp_path, make_core):
    import json

    cfg = _config("tumour", "measurements")
    cfg.classifier.patch_features = False
    images = _images(make_core)
    detector = train_detector(images, cfg, tmp_path / "det")
    model = train_classifier(images, detector, cfg, tmp_path / "cls")
    folder = model.save(tmp_path / "stage1")
    config = json.loads((folder / "config.json").read_text())
    for key in ("patch_features", "patch_lr", "patch_patience"):  # what an older maskllp wrote
        del config["classifier"][key]
    (folder / "config.json").write_text(json.dumps(config))
    again = Stage1Model.load(folder)
    assert again.classifier.encoder is None
    image = ArrayImage(images[0].source.rgb, 0.5)
    np.testing.assert_array_equal(model.detect(image).tumour_score, again.detect(image).tumour_score)


def test_partial_points_label_cells_for_the_classifier_and_never_reach_the_detector(tmp_path):
    from maskllp.classes import CellClass
    from maskllp.config import Config
    from maskllp.errors import InputError
    from maskllp.io.annotations import PointAnnotations, write_point_annotations_geojson
    from maskllp.io.images import write_image
    from maskllp.io.manifest import read_cohort, write_cohort
    from maskllp.training.stage1 import images_from_cohort
    from maskllp.workflows.train import run_train_detector

    write_image(tmp_path / "c.png", np.zeros((40, 40, 3), np.uint8), mpp=0.5)
    some = PointAnnotations(np.array([[10.0, 10.0], [30.0, 20.0]]),
                            np.array([CellClass.NON_TUMOUR, CellClass.NEGATIVE_TUMOUR]))
    write_point_annotations_geojson(tmp_path / "some.geojson", some)
    write_cohort(tmp_path / "m.csv", [{"image": "c.png", "partial_points": "some.geojson"}])
    config = Config()
    [image] = images_from_cohort(read_cohort(tmp_path / "m.csv", config.intervals.build()), config)
    assert not image.has_points and len(image.points_yx) == 0
    np.testing.assert_allclose(np.sort(image.labelled_points_yx, axis=0), np.sort(some.yx, axis=0), atol=1e-3)
    cells = np.array([[10.0, 11.0], [30.0, 20.0], [5.0, 35.0]])
    assert cell_labels(cells, image, "tumour", 3.0).tolist() == [0, 1, -1]
    assert cell_labels(cells, image, "three", 3.0).tolist() == [2, 1, -1]
    with pytest.raises(InputError, match="partial_points never count"):
        run_train_detector(tmp_path / "m.csv", tmp_path / "det", config)
    assert not (tmp_path / "det").exists()
