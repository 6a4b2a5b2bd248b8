"""Stain measurements: rings around a cell centre, hand-checked on drawn cells."""

from __future__ import annotations

import numpy as np

from maskllp.detection.measurements import MEASUREMENT_NAMES, RING_EDGES_UM, ring_offsets, stain_measurements
from maskllp.stains import stain_densities


def test_rings_partition_the_disk_by_distance() -> None:
    rings = ring_offsets(1.0)  # 1 px per micron
    assert len(rings) == len(RING_EDGES_UM) - 1
    # 0-2 um: the pixels closer than 2 px: the centre, its 4 neighbours and 4 diagonals
    assert sorted(map(tuple, rings[0])) == sorted((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    everything = np.concatenate(rings)
    assert len(everything) == len({tuple(o) for o in everything})  # no pixel in two rings
    assert all(np.hypot(*o) < RING_EDGES_UM[-1] for o in everything)


def test_a_membrane_ring_shows_in_its_ring_and_a_nucleus_in_the_centre() -> None:
    size, px_per_um = 81, 2.0
    yy, xx = np.mgrid[:size, :size] - size // 2
    r_um = np.hypot(yy, xx) / px_per_um
    rgb = np.full((size, size, 3), 245, np.uint8)
    rgb[r_um < 3] = (90, 80, 170)                          # hematoxylin-blue nucleus
    rgb[(r_um >= 6.2) & (r_um < 7.8)] = (150, 90, 40)       # DAB-brown membrane
    m = stain_measurements(stain_densities(rgb, np.float32), np.array([[40.0, 40.0]]), px_per_um)[0]
    assert m.shape == (len(MEASUREMENT_NAMES),)
    by_name = dict(zip(MEASUREMENT_NAMES, m, strict=True))
    dab = [by_name[f"DAB mean {a:g}-{b:g} um"] for a, b in zip(RING_EDGES_UM[:-1], RING_EDGES_UM[1:],
                                                                strict=True)]
    assert int(np.argmax(dab)) == 3  # the 6-8 um ring
    assert by_name["hematoxylin mean 0-2 um"] > by_name["hematoxylin mean 8-10 um"] + 0.2
    assert by_name["DAB p90 6-8 um"] >= by_name["DAB mean 6-8 um"]


def test_sorted_sectors_tell_a_complete_membrane_from_a_stained_neighbour() -> None:
    size, px_per_um = 81, 2.0
    yy, xx = np.mgrid[:size, :size] - size // 2
    r_um = np.hypot(yy, xx) / px_per_um
    ring = (r_um >= 9) & (r_um < 11)
    complete = np.full((size, size, 3), 245, np.uint8)
    complete[ring] = (150, 90, 40)
    neighbour = np.full((size, size, 3), 245, np.uint8)
    neighbour[ring & (xx > 0) & (np.abs(yy) < xx * 0.4)] = (150, 90, 40)  # one side only
    cols = [i for i, n in enumerate(MEASUREMENT_NAMES) if n.startswith("DAB sector") and "8-12" in n]
    a, b = (stain_measurements(stain_densities(im, np.float32), np.array([[40.0, 40.0]]), px_per_um)[0, cols]
            for im in (complete, neighbour))
    assert np.all(np.diff(a) <= 1e-6) and np.all(np.diff(b) <= 1e-6)  # brightest first
    assert a[-1] > 0.1 and b[-1] < 0.02 and b[0] > 0.1  # all sectors stained vs one bright sector


def test_cells_at_the_window_edge_and_no_cells() -> None:
    stains = np.zeros((20, 20, 3), np.float32)
    stains[..., 2] = 0.5
    out = stain_measurements(stains, np.array([[0.0, 0.0], [19.0, 10.0]]), 2.0)
    dab = [i for i, n in enumerate(MEASUREMENT_NAMES) if n.startswith("DAB")]
    hema = [i for i, n in enumerate(MEASUREMENT_NAMES) if n.startswith("hematoxylin")]
    assert out.shape == (2, len(MEASUREMENT_NAMES)) and np.allclose(out[:, dab], 0.5)
    assert np.allclose(out[:, hema], 0.0)
    assert stain_measurements(stains, np.zeros((0, 2)), 2.0).shape == (0, len(MEASUREMENT_NAMES))


def _disk_image(radius_um: float, px_per_um: float = 2.0, size: int = 80, od: float = 0.6,
                semi_axes_um: tuple[float, float] | None = None) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size), 0.05, np.float32)
    c = size // 2
    if semi_axes_um is None:
        inside = (yy - c) ** 2 + (xx - c) ** 2 <= (radius_um * px_per_um) ** 2
    else:
        a, b = (s * px_per_um for s in semi_axes_um)
        inside = ((yy - c) / a) ** 2 + ((xx - c) / b) ** 2 <= 1
    img[inside] = od
    return img


def test_the_nucleus_of_a_disk_by_hand() -> None:
    from maskllp.detection.measurements import NUCLEUS_NAMES, nucleus_measurements

    centre = np.array([[40.0, 40.0]])
    for r in (2.5, 4.0, 6.0):  # a lymphocyte's radius, a small and a large tumour nucleus (um)
        area, ecc, mean, sd, contrast = nucleus_measurements(_disk_image(r), centre, 2.0)[0]
        assert abs(area - np.pi * r * r) < 0.06 * np.pi * r * r
        assert ecc < 0.05 and abs(mean - 0.6) < 1e-3 and sd < 1e-3 and abs(contrast - 0.55) < 1e-3
    # the same disk at another resolution: the same microns
    a1 = nucleus_measurements(_disk_image(4.0, 2.0), centre, 2.0)[0, 0]
    a2 = nucleus_measurements(_disk_image(4.0, 4.0, size=160), centre * 2, 4.0)[0, 0]
    assert abs(a1 - a2) < 0.06 * a1
    spindle = nucleus_measurements(_disk_image(0, semi_axes_um=(2.0, 8.0)), centre, 2.0)[0]
    assert spindle[1] > 0.8  # a fibroblast-like nucleus is eccentric
    rng = np.random.default_rng(0)
    coarse = _disk_image(4.0)
    coarse[coarse > 0.5] += rng.normal(0, 0.1, int((coarse > 0.5).sum())).astype(np.float32)
    assert nucleus_measurements(coarse, centre, 2.0)[0, 3] > 0.05  # clumped chromatin: a spread of OD
    assert nucleus_measurements(coarse, np.zeros((0, 2)), 2.0).shape == (0, len(NUCLEUS_NAMES))


def test_a_classifier_with_nucleus_features_round_trips_and_detects(tmp_path) -> None:
    from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
    from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet

    det_cfg = DetectorConfig(base_channels=4, depth=2)
    cls_cfg = ClassifierConfig(kind="measurements", nucleus_features=True)
    detector = DetectorModel(build_unet(det_cfg), det_cfg, 0.5, -1e9, 3.0)
    model = Stage1Model(detector, build_classifier(cls_cfg), cls_cfg, MaskConfig(),
                        TilingConfig(tile=64, overlap=16))
    loaded = Stage1Model.load(model.save(tmp_path / "s1"))
    assert loaded.classifier.spec.nucleus
    rgb = np.random.default_rng(0).integers(60, 250, (48, 64, 3), dtype=np.uint8)
    from maskllp.io.grid import ArrayImage

    cells = loaded.detect(ArrayImage(rgb, 0.5))
    assert cells.nucleus is not None and cells.nucleus.shape == (len(cells), 5)
    assert np.isfinite(cells.tumour_score).all()


def _measurements_pixel_by_pixel(stains: np.ndarray, yx: np.ndarray, px_per_um: float) -> np.ndarray:
    """The definition, one indexed pixel at a time (the implementation before it was vectorised):
    clipped coordinates, per-ring mean and np.quantile, sector means sorted brightest first."""
    from maskllp.detection.measurements import (
        NUCLEUS_ANNULUS_UM,
        SECTOR_ANNULI_UM,
        STATISTICS,
        sector_offsets,
    )

    h, w = stains.shape[:2]
    hema, dab = stains[..., 0].astype(np.float32), stains[..., 2].astype(np.float32)
    c = np.rint(yx).astype(np.int64)

    def gather(image, offsets):
        return image[np.clip(c[:, None, 0] + offsets[None, :, 0], 0, h - 1),
                     np.clip(c[:, None, 1] + offsets[None, :, 1], 0, w - 1)]

    columns = []
    for offsets in ring_offsets(px_per_um):
        hv, dv = gather(hema, offsets), gather(dab, offsets)
        columns += [hv.mean(axis=1), dv.mean(axis=1), np.quantile(dv, 0.9, axis=1)]
    assert len(columns) == len(RING_EDGES_UM[1:]) * len(STATISTICS)
    for image, (a, b) in [(dab, ab) for ab in SECTOR_ANNULI_UM] + [(hema, NUCLEUS_ANNULUS_UM)]:
        offsets, sector = sector_offsets(px_per_um, a, b)
        values = gather(image, offsets)
        means = np.stack([values[:, sector == k].mean(axis=1) for k in range(8)], axis=1)
        columns += list((-np.sort(-means, axis=1)).T)
    return np.stack(columns, axis=1).astype(np.float32)


def test_the_measurements_equal_their_pixel_by_pixel_definition_also_at_and_past_the_edges() -> None:
    rng = np.random.default_rng(3)
    stains = (rng.random((90, 70, 3)) * 2).astype(np.float32)
    yx = np.concatenate([rng.uniform(-50, 130, (300, 2)), [[0, 0], [89, 69], [-400, 900], [45.5, 0.49]]])
    for px_per_um in (2.0, 0.7, 3.3):
        fast = stain_measurements(stains, yx, px_per_um)
        slow = _measurements_pixel_by_pixel(stains, yx, px_per_um)
        p90 = ["p90" in name for name in MEASUREMENT_NAMES]
        np.testing.assert_array_equal(fast[:, p90], slow[:, p90])  # order statistics: exact
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)  # means: float32 summation order


def test_row_quantile_is_numpys_quantile_bit_for_bit() -> None:
    from maskllp.detection.measurements import row_quantile

    rng = np.random.default_rng(4)
    for k in [1, 2, 3, 7, 10, 11, 12, 50, 101, 700]:
        values = (rng.random((40, k)) * rng.choice([0.01, 1.0, 3.0], (40, 1))).astype(np.float32)
        values[0] = 0.25  # ties
        for q in (0.1, 0.5, 0.9):
            np.testing.assert_array_equal(row_quantile(values, q), np.quantile(values, q, axis=1))
