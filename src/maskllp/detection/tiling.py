"""Tiles for running the stage-1 networks over images of any size.

A :class:`Tile` has an *interior*, which tiles partition, and a larger square *window* (the interior
plus ``margin`` on each side) that the networks see. Interiors are multiples of the networks' stride
apart, so every window is a shift of every other by a multiple of the stride: away from the window
border the outputs do not depend on where tiles fall. Each result (a peak, a cell) is kept by the
one tile whose interior holds it, so tiles never produce duplicates.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from maskllp.io.grid import ImageSource, ModelGrid, read_model_window


@dataclass(frozen=True)
class Tile:
    """Interior rows [top, top + height) x cols [left, left + width) of the model grid, seen
    through the square window of side ``window`` starting at (top - margin, left - margin)."""

    top: int
    left: int
    height: int
    width: int
    margin: int
    window: int

    @property
    def window_origin(self) -> tuple[int, int]:
        return self.top - self.margin, self.left - self.margin

    def holds(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N,) bool: whether integer model-grid positions lie in this tile's interior."""
        return ((rows >= self.top) & (rows < self.top + self.height)
                & (cols >= self.left) & (cols < self.left + self.width))


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def tile_grid(region: tuple[int, int, int, int], tile: int, margin: int, stride: int) -> list[Tile]:
    """Tiles whose interiors partition ``region`` = (top, left, height, width) of the model grid.

    ``tile`` and ``margin`` are rounded up to multiples of ``stride``; every window has side
    tile + 2 margin (the last row and column of tiles reach past the region: they see real context
    or white, and keep only what lies inside). A tile larger than the region gives one pass.
    """
    top, left, height, width = region
    if height <= 0 or width <= 0:
        return []
    tile = min(round_up(max(tile, stride), stride), round_up(max(height, width), stride))
    margin = round_up(max(margin, 0), stride)
    tiles = []
    for r in range(top, top + height, tile):
        for c in range(left, left + width, tile):
            tiles.append(Tile(r, c, min(tile, top + height - r), min(tile, left + width - c), margin,
                              tile + 2 * margin))
    return tiles


def single_pass_tile(region: tuple[int, int, int, int], stride: int) -> int:
    """The tile side that covers ``region`` in one pass (for comparisons with tiled runs)."""
    return round_up(max(region[2], region[3]), stride)


def iter_windows(image: ImageSource, grid: ModelGrid, tiles: list[Tile], read_ahead: int = 0
                 ) -> Iterator[tuple[Tile, np.ndarray]]:
    """Each tile with its (window, window, 3) uint8 model-grid window, in ``tiles``' order.

    ``read_ahead`` > 0: the next ``read_ahead`` windows are read and resampled by one background
    thread while the caller computes on the current one (decoding and resampling release the GIL),
    so reading overlaps compute; the windows and their order are the same, a read's error is raised
    where that window is asked for, and at most ``read_ahead`` + 1 windows are held at once.
    """
    def read(t: Tile) -> np.ndarray:
        top, left = t.window_origin
        return read_model_window(image, grid, top, left, t.window, t.window)

    if read_ahead <= 0 or len(tiles) < 2:
        for t in tiles:
            yield t, read(t)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskllp-read") as pool:
        pending: deque[tuple[Tile, Future[np.ndarray]]] = deque()
        queue = iter(tiles)
        try:
            for t in islice(queue, read_ahead):
                pending.append((t, pool.submit(read, t)))
            while pending:
                t, future = pending.popleft()
                window = future.result()
                following = next(queue, None)
                if following is not None:
                    pending.append((following, pool.submit(read, following)))
                yield t, window
        finally:  # the caller stopped early or a read failed: drop what was not started
            for _, future in pending:
                future.cancel()
