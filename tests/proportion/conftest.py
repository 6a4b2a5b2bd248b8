"""Tiny stage-2 items and a CPU config shared by the stage-2 tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskllp.config import Config
from maskllp.intervals import PAPER_FIVE
from maskllp.proportion.data import Stage2Item

SIZE = 64


def tiny_items(n: int = 10, size: int = SIZE, seed: int = 0) -> list[Stage2Item]:
    """``n`` random cores, intervals cycling 0..4, a square tumour mask (the last core's mask empty)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = i % 5
        mask = np.zeros((size, size), bool)
        if i != n - 1:
            mask[8:40, 8 + i: 40 + i] = True
        items.append(Stage2Item(f"core{i}.png", f"p{i // 2}", k, float(PAPER_FIVE.midpoints[k]), None,
                                rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mask))
    return items


def tiny_config(size: int = SIZE) -> Config:
    cfg = Config()
    cfg.proportion.input_size = size
    cfg.proportion.batch_size = 4
    cfg.proportion.max_steps = 2
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.devices = "1"
    cfg.trainer.progress_bar = False
    return cfg


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def items() -> list[Stage2Item]:
    return tiny_items()


@pytest.fixture
def cpu_config() -> Config:
    return tiny_config()
