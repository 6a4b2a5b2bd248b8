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
