"""Benchmark: write and read a large core as a tiled pyramidal OME-TIFF, by window.

Prints the time and traced Python memory (numpy allocations; imagecodecs' own buffers are not
traced) of: streaming the image to disk tile by tile, opening it, reading random windows at level 0,
reading a whole downsampled level, and, for comparison, decoding the whole image with tifffile.

    OMP_NUM_THREADS=1 python benchmarks/io_windows.py --size 10000 --tile 512 --window 512

The pixels are the scikit-image IHC sample repeated (real tissue statistics, so compression is
realistic), written with deflate (or JPEG with --jpeg-quality).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def tiles(size: int, tile: int, source: np.ndarray):
    sh, sw = source.shape[:2]
    for top in range(0, size, tile):
        for left in range(0, size, tile):
            h, w = min(tile, size - top), min(tile, size - left)
            rows = (np.arange(top, top + h) % sh)[:, None]
            cols = (np.arange(left, left + w) % sw)[None, :]
            yield (top, left), source[rows, cols]


def measure(label: str, fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{label:<48} {seconds:8.3f} s   peak traced {peak / 2**20:8.1f} MiB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--jpeg-quality", type=int, default=None)
    args = parser.parse_args()

    import tifffile
    from skimage.data import immunohistochemistry

    from maskllp.io.images import open_image, write_tiled_tiff

    source = immunohistochemistry()
    size, tile = args.size, args.tile
    print(f"image {size} x {size} x 3 uint8 = {size * size * 3 / 2**20:.0f} MiB decoded; tile {tile}; "
          f"compression {'jpeg q' + str(args.jpeg_quality) if args.jpeg_quality else 'deflate'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "core.ome.tif"
        measure("write_tiled_tiff (streamed, with pyramid)",
                lambda: write_tiled_tiff(path, (size, size), tiles(size, tile, source), mpp=0.25,
                                         tile=tile, jpeg_quality=args.jpeg_quality))
        print(f"file size {path.stat().st_size / 2**20:.1f} MiB")
        reader = measure("open_image", lambda: open_image(path))
        print(f"levels {reader.level_shapes}")
        rng = np.random.default_rng(0)
        corners = rng.integers(0, size - args.window, size=(args.windows, 2))

        def read_windows():
            for top, left in corners:
                reader._backend._cache.clear()  # cold: decode every tile each time
                reader.read_window(int(top), int(left), args.window, args.window)

        t0 = time.perf_counter()
        measure(f"{args.windows} random {args.window}-px windows, level 0, cold", read_windows)
        per = (time.perf_counter() - t0) / args.windows
        print(f"  = {per * 1000:.1f} ms per window")
        level = reader.best_level(8.0)
        measure(f"whole level {level} ({reader.level_shapes[level]})", lambda: reader.read(level))
        reader.close()
        measure("baseline: tifffile.imread whole level 0", lambda: tifffile.imread(path))


if __name__ == "__main__":
    main()
