"""Tiny hand-drawn cores for stage-1 tests: dark round cells on a light background."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskllp.classes import CellClass


def draw_cells(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 image, (N, 2) cell centres, (N,) classes: big dark-blue tumour cells on
    the left half, small brown non-tumour cells on the right half, on a grid with jitter."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.float32)
    yy, xx = np.mgrid[:size, :size]
    centres, classes = [], []
    for y in range(6, size - 4, 12):
        for x in range(6, size - 4, 12):
            cy, cx = y + rng.uniform(-2, 2), x + rng.uniform(-2, 2)
            tumour = cx < size / 2
            r = 4.0 if tumour else 2.5
            colour = (70, 60, 150) if tumour else (150, 100, 60)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[inside] = colour
            centres.append((cy, cx))
            classes.append(CellClass.NEGATIVE_TUMOUR if tumour else CellClass.NON_TUMOUR)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.array(centres), np.array(classes, np.int8)


@pytest.fixture
def make_core():
    """The :func:`draw_cells` factory."""
    return draw_cells


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
