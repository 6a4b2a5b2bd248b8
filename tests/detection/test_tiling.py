"""Tiled stage-1 inference gives the cells of one pass (random-init networks, tiny images)."""

import numpy as np
import pytest
import torch

from maskllp.config.detection import ClassifierConfig, DetectorConfig, TilingConfig
from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet
from maskllp.detection.tiling import tile_grid
from maskllp.io.grid import ArrayImage, ModelGrid, read_model_window


def _model(overlap: int | None, classifier: bool = True, kind: str = "cnn") -> Stage1Model:
    torch.manual_seed(0)
    cfg = DetectorConfig(base_channels=4, depth=3)
    net = build_unet(cfg)
    for m in net.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    det = DetectorModel(net, cfg, mpp=0.5, peak_threshold=-1e9, min_distance_um=1.0)
    cls_cfg = ClassifierConfig(kind=kind.split("+")[0], backbone="resnet18", feature_layer="layer2",
                               patch_features=kind.endswith("+patches"))
    cls = build_classifier(cls_cfg) if classifier else None
    return Stage1Model(det, cls, cls_cfg, tiling=TilingConfig(tile=32, overlap=overlap))


def _sorted(cells):
    order = np.lexsort(cells.yx.T[::-1])
    return cells.subset(order)


@pytest.mark.parametrize("overlap", [64, None])  # None: the context the networks need, no more
@pytest.mark.parametrize("kind", ["cnn", "measurements", "measurements+patches"])
@pytest.mark.parametrize("image_mpp", [0.5, 0.3])
def test_tiled_equals_one_pass(image_mpp, kind, overlap):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)
    model = _model(overlap=overlap, kind=kind)
    sizes = []
    heatmap = model.detector.heatmap
    model.detector.heatmap = lambda x: sizes.append(x.shape[-1]) or heatmap(x)  # type: ignore[method-assign]
    tiled = _sorted(model.detect(ArrayImage(img, image_mpp)))
    one = _sorted(model.detect(ArrayImage(img, image_mpp), tile=4096))
    grid = model.grid_for(ArrayImage(img, image_mpp))
    n_tiles = len(model.tiles(grid))
    assert n_tiles >= 4 and set(sizes[:n_tiles]) == {32 + 2 * model.margin}  # no whole-image heatmap
    assert len(tiled) == len(one) > 50
    np.testing.assert_allclose(tiled.yx, one.yx, atol=1e-3)  # same pixels; sub-pixel refinement ~1e-5
    np.testing.assert_allclose(tiled.peak_score, one.peak_score, atol=1e-5)
    np.testing.assert_allclose(tiled.tumour_score, one.tumour_score, atol=1e-4)
    assert tiled.shape == (100, 90) and tiled.mpp == image_mpp
    assert tiled.yx.min() >= -0.5 and tiled.yx[:, 0].max() < 100 and tiled.yx[:, 1].max() < 90
    # no duplicates across tile borders
    assert len(np.unique(np.round(tiled.yx, 3), axis=0)) == len(tiled)


def test_tile_grid_partitions_the_region():
    tiles = tile_grid((3, 5, 70, 41), tile=30, margin=10, stride=8)
    cover = np.zeros((80, 50), int)
    for t in tiles:
        assert (t.top - 3) % 8 == 0 and (t.left - 5) % 8 == 0 and t.window == 32 + 32
        cover[t.top : t.top + t.height, t.left : t.left + t.width] += 1
    assert cover[3:73, 5:46].min() == 1 and cover.sum() == 70 * 41


def test_model_window_resamples_by_pixel_centres():
    # a linear ramp resampled at scale 2 gives the ramp at the model pixel centres
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 2, (40, 1, 3))
    grid = ModelGrid.for_image((40, 64), image_mpp=0.25, model_mpp=0.5)
    assert grid.scale == 2.0 and grid.shape == (20, 32)
    win = read_model_window(ArrayImage(ramp, 0.25), grid, 5, 4, 6, 10)
    expected = 2 * ((np.arange(4, 14) + 0.5) * 2 - 0.5)
    np.testing.assert_allclose(win[2, :, 0], expected, atol=1.0)
    np.testing.assert_allclose(grid.from_level0(grid.to_level0(np.array([[3.0, 7.5]]))), [[3.0, 7.5]])
    # outside the image is white, as glass
    assert (read_model_window(ArrayImage(ramp, 0.25), grid, -8, 0, 4, 4) == 255).all()


def test_unet_receptive_radius_bounds_the_reach_of_a_pixel():
    from maskllp.detection.unet import UNet, receptive_radius

    torch.manual_seed(0)
    net = UNet(3, 1, 8, depth=3).eval()
    reach = 0
    for offset in range(4):  # every phase of the stride
        x = torch.rand(1, 3, 96, 96, requires_grad=True)
        c = 48 + offset
        net(x)[0, 0, c, c].backward()
        rows = torch.nonzero(x.grad.abs().sum(1)[0] > 0)[:, 0]
        reach = max(reach, c - int(rows.min()), int(rows.max()) - c)
    assert 0 < reach <= receptive_radius(3) == 26


def test_the_default_context_is_what_the_networks_need():
    from maskllp.detection.measurements import CONTEXT_UM
    from maskllp.detection.model import CNN_CONTEXT_PX
    from maskllp.detection.unet import receptive_radius

    measured = _model(overlap=None, kind="measurements")
    det = measured.detector
    unet_rule = receptive_radius(det.config.depth) + int(np.ceil(det.min_distance_px)) + 2
    def up(v: int) -> int:  # tiles are cut on the networks' stride
        return -(-v // measured.stride) * measured.stride

    assert measured.margin == up(max(unet_rule, int(np.ceil(CONTEXT_UM / det.mpp)) + 2))
    assert _model(overlap=None, kind="cnn").margin == up(max(unet_rule, CNN_CONTEXT_PX))
    assert _model(overlap=200, kind="measurements").margin == up(200)  # a setting is at least honoured


class _CountingImage(ArrayImage):
    """An ArrayImage that records which thread read each window and fails on the ``fail_at``-th."""

    def __init__(self, rgb: np.ndarray, mpp: float, fail_at: int | None = None) -> None:
        super().__init__(rgb, mpp)
        self.threads: list[str] = []
        self.fail_at = fail_at

    def read_window(self, top, left, height, width, level=0):
        import threading

        from maskllp.errors import InputError

        self.threads.append(threading.current_thread().name)
        if self.fail_at is not None and len(self.threads) == self.fail_at:
            raise InputError("core.tif", "tile 3 is damaged")
        return super().read_window(top, left, height, width, level)


@pytest.mark.parametrize("read_ahead", [1, 3])
def test_reading_ahead_gives_the_same_cells_and_reads_in_the_background(read_ahead):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)
    model = _model(overlap=None, kind="measurements")
    model.tiling = TilingConfig(tile=32, read_ahead=0)
    inline = _CountingImage(img, 0.5)
    expected = model.detect(inline)
    model.tiling = TilingConfig(tile=32, read_ahead=read_ahead)
    ahead = _CountingImage(img, 0.5)
    cells = model.detect(ahead)
    np.testing.assert_array_equal(cells.yx, expected.yx)  # same order too
    np.testing.assert_array_equal(cells.tumour_score, expected.tumour_score)
    np.testing.assert_array_equal(cells.measurements, expected.measurements)
    assert len(ahead.threads) == len(inline.threads) >= 9  # every window read once
    assert all(t.startswith("maskllp-read") for t in ahead.threads)
    assert not any(t.startswith("maskllp-read") for t in inline.threads)


def test_a_failed_read_ahead_is_raised_as_the_same_error():
    from maskllp.errors import InputError

    model = _model(overlap=None, kind="measurements")
    model.tiling = TilingConfig(tile=32, read_ahead=2)
    image = _CountingImage(np.full((100, 90, 3), 200, np.uint8), 0.5, fail_at=3)
    with pytest.raises(InputError, match="core.tif: tile 3 is damaged"):
        model.detect(image)
    assert len(image.threads) <= 3 + 2  # nothing read past the failure but what was already asked for
