"""Stage-2 inputs of a cohort: fitted once from the image file, cached, reused, refreshed on change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from maskllp.intervals import PAPER_FIVE
from maskllp.io.manifest import read_cohort
from maskllp.proportion.inputs import InputSpec, read_core
from maskllp.training.inputs import ItemCache, NoMaskSource, prepare_items

SQUARE_32 = InputSpec("square", size=32)


class CountingSource:
    """A mask source that marks the left half of each core and counts its calls."""

    name = "test"
    cache_key = "left-half"

    def __init__(self) -> None:
        self.calls = 0

    def mask(self, entry, shape: tuple[int, int]) -> np.ndarray:
        self.calls += 1
        m = np.zeros(shape, bool)
        m[:, : shape[1] // 2] = True
        return m


def make_cohort(tmp_path: Path) -> Path:
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, :40] = (200, 100, 50)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[:, ::-1].copy()).save(tmp_path / "b.png")
    (tmp_path / "cohort.csv").write_text("image,patient,label\na.png,P1,0.3\nb.png,P2,1-25 %\n")
    return tmp_path / "cohort.csv"


def test_items_are_fitted_cached_and_reused(tmp_path) -> None:
    cohort = read_cohort(make_cohort(tmp_path), PAPER_FIVE)
    cache = ItemCache(tmp_path / "cache", SQUARE_32)
    source = CountingSource()
    items = prepare_items(cohort.entries, PAPER_FIVE, source, cache, exact={"b.png": 0.2})
    assert source.calls == 2
    a, b = items
    assert (a.name, a.patient, a.interval, a.proportion) == ("a.png", "P1", 2, 0.3)
    assert (b.interval, b.midpoint, b.proportion) == (1, PAPER_FIVE.midpoints[1], 0.2)
    image, mask = a.load_image(), a.load_mask()
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert (image[:8] == 255).all() and (image[24:] == 255).all()  # 40 x 80 fits as 16 x 32, centred
    assert tuple(image[16, 4]) == (200, 100, 50) and tuple(image[16, 28]) == (0, 0, 0)
    assert mask[8:24, :16].all() and not mask[8:24, 16:].any() and not mask[:8].any()

    again = prepare_items(cohort.entries, PAPER_FIVE, source, cache)
    assert source.calls == 2  # nothing recomputed
    assert np.array_equal(again[0].load_image(), image)

    later = os.stat(tmp_path / "a.png").st_mtime_ns + 10**9
    os.utime(tmp_path / "a.png", ns=(later, later))  # a changed image is fitted again
    prepare_items(cohort.entries, PAPER_FIVE, source, cache)
    assert source.calls == 3


def test_no_mask_source_covers_the_core_not_the_padding(tmp_path) -> None:
    cohort = read_cohort(make_cohort(tmp_path), PAPER_FIVE)
    cache = ItemCache(tmp_path / "c", SQUARE_32)
    item = prepare_items(cohort.entries[:1], PAPER_FIVE, NoMaskSource(), cache)[0]
    mask = item.load_mask()
    assert mask[8:24].all() and not mask[:8].any() and not mask[24:].any()


def test_damaged_cache_file_is_recomputed(tmp_path) -> None:
    cohort = read_cohort(make_cohort(tmp_path), PAPER_FIVE)
    cache = ItemCache(tmp_path / "cache", SQUARE_32)
    path = cache.image(cohort.entries[0])
    path.write_bytes(b"not an array")
    assert cache.image(cohort.entries[0]) == path
    assert np.load(path).shape == (32, 32, 3)


def test_read_core_uses_a_coarser_pyramid_level(tmp_path) -> None:
    from maskllp.io.images import write_tiled_tiff

    rgb = np.full((512, 512, 3), 90, np.uint8)
    path = tmp_path / "big.ome.tif"
    tiles = (((r, c), rgb[r: r + 128, c: c + 128]) for r in range(0, 512, 128) for c in range(0, 512, 128))
    write_tiled_tiff(path, (512, 512), tiles, mpp=0.5, tile=128, pyramid=True)
    calls = []
    from maskllp.io import images

    original = images.ImageReader.read

    def spy(self, level=0):
        calls.append(level)
        return original(self, level)

    images.ImageReader.read = spy
    try:
        out, fit = read_core(path, None, InputSpec("square", size=64))
    finally:
        images.ImageReader.read = original
    assert out.shape == (64, 64, 3) and (out == 90).all()
    assert calls and calls[0] > 0
