"""Shared test fixtures: small, generic, CPU-only, no downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of hand-made test files (see tests/fixtures/README.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def ihc_rgb() -> np.ndarray:
    """The real IHC image scikit-image ships (512 x 512 x 3 uint8, DAB + haematoxylin)."""
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(1234)


@pytest.fixture
def random_rgb(rng: np.random.Generator) -> np.ndarray:
    """A random (70, 90, 3) uint8 image (odd sizes on purpose)."""
    return rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
