"""Stage 1 on one large core: seconds and peak memory of tiled detection + classification and of the
tumour mask, with randomly initialised networks (the work per tile does not depend on the weights).

The core is procedural (pixels computed per window, like a reader of a tiled TIFF), so the memory
measured is the pipeline's own: the image is never held whole. The peak threshold is set on the
first tile so that detections have a realistic density (one cell per ``--cell-um`` squared).

    python benchmarks/bench_stage1.py --size 10000 --threads 2 [--precision bf16] [--read-ahead 0]

It also prints the arithmetic floor: the FLOPs of the networks over every tile's window (counted with
``torch.utils.flop_counter`` on one window) and of the classifier's patch encoder over every cell,
the rate of a bare matrix product of the same dtype on the same machine in the same run (fp32, or
bf16 with ``--precision bf16``), the time that rate would need for those FLOPs, and the ratio of
the pipeline's time to it. The tumour classifier is the
default one (measurements and each cell's hematoxylin patch).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
from maskllp.detection.mask import tumour_mask
from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet
from maskllp.io.grid import read_model_window


class ProceduralCore:
    """A (size, size) RGB core: dark round nuclei on a hexagonal lattice inside a disc, glass around."""

    def __init__(self, size: int, mpp: float = 0.5, spacing_px: float = 24.0) -> None:
        self.shape = (size, size)
        self.mpp = mpp
        self.level_downsamples = [1.0]
        self.spacing = spacing_px
        self.path = f"<procedural {size} px>"

    def best_level(self, downsample: float) -> int:
        return 0

    def read_window(self, top: int, left: int, height: int, width: int, level: int = 0) -> np.ndarray:
        yy, xx = np.mgrid[top : top + height, left : left + width].astype(np.float32)
        s = self.spacing
        row = np.round(yy / (s * 0.866))
        cy = row * s * 0.866
        cx = np.round((xx - (row % 2) * s / 2) / s) * s + (row % 2) * s / 2
        nucleus = ((yy - cy) ** 2 + (xx - cx) ** 2) < (0.3 * s) ** 2
        r = self.shape[0] / 2
        tissue = ((yy - r) ** 2 + (xx - r) ** 2) < (0.95 * r) ** 2
        out = np.full((height, width, 3), 240, np.uint8)
        out[tissue] = (215, 200, 210)
        out[tissue & nucleus] = (70, 70, 150)
        return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_rate(threads: int, device: str, seconds: float = 2.0, n: int = 2048,
                dtype: torch.dtype = torch.float32) -> float:
    """Measured FLOP/s of an (n x n) @ (n x n) product of ``dtype``, repeated for about ``seconds``."""
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3 if cuda else 1):  # warm-up
        a @ b
    if cuda:
        torch.cuda.synchronize()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if cuda:
        torch.cuda.synchronize()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0)


def window_flops(model: Stage1Model, window_px: int) -> int:
    """FLOPs of the networks on one (window_px x window_px) tile window."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, window_px, window_px, device=model.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.detector.net.eval()(x)
        if isinstance(model.classifier, torch.nn.Module) and hasattr(model.classifier, "feature_map"):
            model.classifier.eval().feature_map(x)
    return int(counter.get_total_flops())


def patch_flops(model: Stage1Model, n_cells: int) -> int:
    """FLOPs of the measurement classifier's patch encoder over ``n_cells`` patches (0 when the
    classifier reads none): it runs once per detected cell, so its work grows with the cells."""
    from torch.utils.flop_counter import FlopCounterMode

    from maskllp.detection.cell_classifier import MeasurementClassifier
    from maskllp.detection.patches import patch_side_px

    net = model.classifier
    if not isinstance(net, MeasurementClassifier) or net.encoder is None:
        return 0
    side = patch_side_px(1.0 / model.detector.mpp)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval().encode(torch.zeros((1, 1, side, side), dtype=torch.uint8, device=model.device))
    return int(counter.get_total_flops()) * n_cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10000, help="core side in pixels")
    ap.add_argument("--tile", type=int, default=TilingConfig.tile)
    ap.add_argument("--overlap", type=int, default=TilingConfig.overlap)
    ap.add_argument("--backbone", default=ClassifierConfig.backbone)
    ap.add_argument("--feature-layer", default=ClassifierConfig.feature_layer)
    ap.add_argument("--mask-downsample", default="1,4", help="comma-separated mask resolutions to time")
    ap.add_argument("--cell-um", type=float, default=12.0, help="one detection per this many microns squared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32", choices=["32", "bf16"],
                    help="networks under bf16 autocast (as predict's 'auto' where bf16 is native) or fp32")
    ap.add_argument("--read-ahead", type=int, default=TilingConfig.read_ahead,
                    help="windows read ahead by a background thread (0: in line)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = ProceduralCore(args.size)
    det_cfg = DetectorConfig()
    cls_cfg = ClassifierConfig(backbone=args.backbone, feature_layer=args.feature_layer)
    detector = DetectorModel(build_unet(det_cfg), det_cfg, image.mpp, 0.0, 3.0)
    model = Stage1Model(detector, build_classifier(cls_cfg), cls_cfg, MaskConfig(),
                        TilingConfig(args.tile, args.overlap, args.read_ahead), torch.device(args.device))
    model.detector.net.to(model.device)
    model.classifier.to(model.device)

    grid = model.grid_for(image)
    first = model.tiles(grid)[0]
    window = read_model_window(image, grid, *first.window_origin, first.window, first.window)
    from maskllp.backbones import inference_autocast, rgb_to_tensor

    with inference_autocast(model.device, args.precision):  # the threshold from the heatmap detect sees
        heat = detector.heatmap(rgb_to_tensor(window, model.device))
    per_px = (image.mpp / args.cell_um) ** 2
    detector.peak_threshold = float(np.quantile(heat, 1.0 - 4.0 * per_px))

    base = peak_rss_mib()
    t0 = time.perf_counter()
    with inference_autocast(model.device, args.precision):
        cells = model.detect(image)
    t1 = time.perf_counter()
    detect_rss = peak_rss_mib()
    masks = []
    alpha_px = model.mask.alpha_um / image.mpp
    for d in (float(v) for v in args.mask_downsample.split(",")):
        t = time.perf_counter()  # worst case: every detected cell is a tumour cell
        mask = tumour_mask(cells.yx, np.ones(len(cells), bool), cells.shape, alpha_px, d)
        masks.append((d, mask.shape, time.perf_counter() - t))
        del mask
    n_tiles = len(model.tiles(grid))
    print(f"core {args.size} x {args.size} px at {image.mpp} um/px; tile {args.tile} + overlap "
          f"{model.margin} (window {first.window} px); {n_tiles} tiles; {args.threads} CPU threads; "
          f"device {args.device}; precision {args.precision}; read-ahead {args.read_ahead}; classifier "
          f"{'measurements' if cls_cfg.kind == 'measurements' else f'{args.backbone}/{args.feature_layer}'}")
    print(f"detect + classify: {t1 - t0:.1f} s ({(t1 - t0) / n_tiles:.2f} s per tile), {len(cells)} cells")
    for d, shape, seconds in masks:
        print(f"tumour mask of all {len(cells)} cells at downsample {d:g}: {shape[0]} x {shape[1]}, "
              f"{seconds:.2f} s")
    tile_flops = window_flops(model, first.window) * n_tiles
    cell_flops = patch_flops(model, len(cells))
    flops = tile_flops + cell_flops
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    # A GPU reaches its matmul rate only on large products (an H200's bf16 needs n of several thousand).
    rate = matmul_rate(args.threads, args.device, dtype=dtype,
                       n=8192 if args.device.startswith("cuda") else 2048)
    floor = flops / rate
    print(f"arithmetic floor: {flops / 1e9:.0f} GFLOP ({tile_flops / 1e9:.0f} over {n_tiles} windows, "
          f"{cell_flops / 1e9:.0f} in the patch encoder over {len(cells)} cells); a bare "
          f"{'bf16' if args.precision == 'bf16' else 'fp32'} matmul runs at "
          f"{rate / 1e9:.0f} GFLOP/s here, so {floor:.1f} s; the pipeline took {t1 - t0:.1f} s = "
          f"{(t1 - t0) / floor:.2f}x the floor")
    print(f"peak RSS: {base:.0f} MiB after loading, {detect_rss:.0f} MiB after detection, "
          f"{peak_rss_mib():.0f} MiB after the masks (a full-resolution float32 heatmap alone would be "
          f"{args.size * args.size * 4 / 2**20:.0f} MiB)")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved "
              f"({torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()
