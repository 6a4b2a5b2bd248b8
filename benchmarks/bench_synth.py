"""Synthetic cohort generator: speed, memory, and colour realism against real IHC images.

    python benchmarks/bench_synth.py speed   [--cores 12] [--size 1024]   cores per minute, written
    python benchmarks/bench_synth.py big     [--size 10000]               one large core: seconds, peak RSS
    python benchmarks/bench_synth.py realism [--figure PATH]              OD statistics vs real samples
    python benchmarks/bench_synth.py detect  [--cores 8]                  a classical blob detector vs truth

Every run prints its settings. Set OMP_NUM_THREADS=1 for numbers comparable with docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KI67_CROP = SHARED_DATA / "qupath-ki67-crops" / "OS-2-ndpi-center512.png"
KI67_MPP = 0.2271


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def speed(cores: int, size: int) -> None:
    from maskllp.config.synth import SynthConfig
    from maskllp.synth import generate_cohort
    from maskllp.synth.cohort import make_core, plan_cohort
    from maskllp.synth.render import render_core

    cfg = SynthConfig(size=size, seed=1)
    print(f"speed: {cores} cores of {size} px, mpp {cfg.mpp}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    t0, c0 = time.perf_counter(), time.process_time()
    for plan in plan_cohort(cores, cfg):
        render_core(make_core(plan, cfg))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  layout + render only : {60 * cores / wall:6.1f} cores/min wall, "
          f"{cpu / cores:.2f} s CPU per core")
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        generate_cohort(Path(tmp) / "cohort", cores, cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  whole cohort on disk : {60 * cores / wall:6.1f} cores/min wall, "
          f"{cpu / cores:.2f} s CPU per core (PNG, annotations, truth)")


def big(size: int) -> None:
    from maskllp.config.synth import SynthConfig
    from maskllp.synth.cohort import make_core, plan_cohort, write_core_image
    from maskllp.synth.truth import write_cells

    cfg = SynthConfig(size=size, seed=1, image_format="ome.tif")
    print(f"big: one {size} x {size} px core, mpp {cfg.mpp}, tiles {cfg.tile} px, tiled pyramidal OME-TIFF")
    print(f"  peak RSS at start: {_rss_mb():.0f} MB")
    plan = next(p for p in plan_cohort(8, cfg) if p.tps is not None and p.tps > 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        layout = make_core(plan, cfg)
        t1 = time.perf_counter()
        print(f"  layout: {t1 - t0:.1f} s, {len(layout.cells)} cells ({layout.architecture}), "
              f"peak RSS {_rss_mb():.0f} MB")
        path = Path(tmp) / "core.ome.tif"
        write_core_image(path, layout, cfg)
        write_cells(Path(tmp) / "cells.csv", layout.cells)
        t2 = time.perf_counter()
        print(f"  render + write: {t2 - t1:.1f} s ({path.stat().st_size / 2**20:.0f} MB file)")
    print(f"  total {t2 - t0:.1f} s, peak RSS {_rss_mb():.0f} MB")


def _synthetic_cores(n: int, size: int, mpp: float, marker: str, bins: list[float]) -> list[np.ndarray]:
    """``n`` cores with TPS drawn from the paper's intervals with weights ``bins``."""
    from maskllp.config.synth import CohortDrawConfig, SynthConfig
    from maskllp.synth.cohort import make_core, plan_cohort
    from maskllp.synth.render import render_core

    cfg = SynthConfig(size=size, mpp=mpp, marker=marker, seed=11,
                      cohort=CohortDrawConfig(tps_bin_weights=bins))
    return [render_core(make_core(p, cfg)) for p in plan_cohort(n, cfg)]


def _row(name: str, stats: list[dict]) -> str:
    def cell(stain: str, key: str) -> str:
        v = np.array([s[stain][key] for s in stats])
        return f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f}±{v.std():.3f}"

    brown = np.array([s["brown_fraction"] for s in stats])
    b = f"{brown.mean():.2f}" if len(brown) == 1 else f"{brown.mean():.2f}±{brown.std():.2f}"
    return (f"| {name} | {cell('hematoxylin', 'mean')} | {cell('hematoxylin', 'p50')} | "
            f"{cell('hematoxylin', 'p95')} | {cell('dab', 'mean')} | {cell('dab', 'p50')} | "
            f"{cell('dab', 'p95')} | {cell('dab', 'p99')} | {b} |")


def realism(figure: Path | None) -> None:
    from PIL import Image
    from skimage.data import immunohistochemistry

    from maskllp.synth.realism import stain_statistics

    ihc = immunohistochemistry()
    ki67 = np.asarray(Image.open(KI67_CROP).convert("RGB"))
    # Like with like: the FHL2 sample stains nearly every tumour cell, the Ki-67 crop has 12-20 %
    # positive nuclei (QuPath's counts); all intervals shown too.
    pdl1_high = _synthetic_cores(8, 512, 0.5, "membrane", [0, 0, 0, 0, 1])
    pdl1_all = _synthetic_cores(10, 512, 0.5, "membrane", [1, 1, 1, 1, 1])
    ki67_low = _synthetic_cores(6, 512, KI67_MPP, "nucleus", [0, 1, 0, 0, 0])
    print("realism: OD statistics on tissue pixels (mean RGB OD > 0.1), skimage hed_from_rgb deconvolution;")
    print("synthetic rows: mean ± SD over cores")
    print("| image | H mean | H p50 | H p95 | DAB mean | DAB p50 | DAB p95 | DAB p99 | brown share |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(_row("real: skimage immunohistochemistry() (FHL2)", [stain_statistics(ihc)]))
    print(_row("synthetic PD-L1, TPS 75-100 %, 8 cores", [stain_statistics(c) for c in pdl1_high]))
    print(_row("synthetic PD-L1, TPS in all 5 intervals, 10 cores", [stain_statistics(c) for c in pdl1_all]))
    print(_row("real: OS-2 Ki-67 crop (0.227 um/px)", [stain_statistics(ki67)]))
    print(_row("synthetic Ki-67, 1-25 % positive, 6 cores at 0.227 um/px",
               [stain_statistics(c) for c in ki67_low]))
    if figure is not None:
        _figure(figure, ihc, ki67)


def _figure(path: Path, ihc: np.ndarray, ki67: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from maskllp.config.synth import StainConfig, SynthConfig, TissueConfig
    from maskllp.synth.layout import build_layout, draw_patient_stain
    from maskllp.synth.render import render_core, render_window
    from maskllp.synth.truth import core_counts, exact_tps

    def core(seed, tps, arch, size=1024, mpp=0.5, marker="membrane", stain=None):
        cfg = SynthConfig(size=size, mpp=mpp, marker=marker, tissue=TissueConfig(architecture_weights=arch),
                          stain=stain or StainConfig(nonspecific_core_fraction=0.0))
        rng = np.random.default_rng(seed)
        return build_layout(rng, 500 + seed, cfg, draw_patient_stain(rng, cfg), tps)

    def title(layout, what):
        c = core_counts(layout.cells)
        t = exact_tps(c["n_positive_tumour"], c["n_negative_tumour"])
        n_tumour = c["n_positive_tumour"] + c["n_negative_tumour"]
        return f"{what}\nTPS {100 * t:.1f} % ({c['n_positive_tumour']}/{n_tumour})"

    panels = [(ihc, "real: scikit-image IHC sample\n(FHL2, DAB + hematoxylin)")]
    for seed, tps, arch, what in [(1, 0.9, [0, 0, 1], "glands"), (2, 0.4, [0, 1, 0], "sheet"),
                                  (3, 0.05, [1, 0, 0], "nests")]:
        lay = core(seed, tps, arch)
        panels.append((render_window(lay, 256, 256, 512, 512), title(lay, f"synthetic PD-L1, {what}")))
    panels.append((ki67, "real: Ki-67, OS-2 (0.227 um/px)"))
    lay = core(5, 0.25, [0, 1, 0], size=2048, mpp=KI67_MPP, marker="nucleus")
    panels.append((render_window(lay, 768, 768, 512, 512), title(lay, "synthetic Ki-67 (0.227 um/px)")))
    confounded = StainConfig(nonspecific_core_fraction=1.0, positive_macrophage_fraction=(0.8, 0.8),
                             positive_lymphocyte_fraction=(0.3, 0.3))
    lay = core(6, 0.0, [1, 0, 0], stain=confounded)
    panels.append((render_window(lay, 256, 256, 512, 512),
                   title(lay, "synthetic PD-L1, brown immune cells")))
    lay = core(7, 0.3, [1, 1, 0], size=1024)
    panels.append((render_core(lay)[::2, ::2], title(lay, "a whole synthetic core (1024 px, shown at 1/2)")))
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6))
    for ax, (img, text) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(img)
        ax.set_title(text, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"figure: {path}")


def detect(cores: int) -> None:
    """How findable the drawn cells are without learning: LoG blobs on H + DAB OD vs the truth.

    A floor, not a target: a trained heatmap U-Net should do better; a perfect score here would mean
    the cells are too easy.
    """
    from scipy.spatial import cKDTree
    from skimage.feature import blob_log

    from maskllp.config.synth import CohortDrawConfig, SynthConfig
    from maskllp.stains import unmix_hd
    from maskllp.synth.cohort import make_core, plan_cohort
    from maskllp.synth.render import render_core

    cfg = SynthConfig(size=512, seed=2, cohort=CohortDrawConfig(tps_bin_weights=[1, 1, 1, 1, 1]))
    radius_px = 5.0 / cfg.mpp
    print(f"detect: LoG (sigma 2.5-8 px) on H + 0.5 DAB OD, {cores} cores of 512 px; a match is within "
          f"{radius_px:g} px (5 um), one to one")
    layouts = [make_core(p, cfg) for p in plan_cohort(cores, cfg)]
    images = [unmix_hd(render_core(lay)) for lay in layouts]
    for threshold in (0.05, 0.1, 0.15):
        tp = fp = fn = 0
        for lay, (h, d) in zip(layouts, images, strict=True):
            found = blob_log(np.clip(h + 0.5 * d, 0, None), min_sigma=2.5, max_sigma=8, num_sigma=6,
                             threshold=threshold)[:, :2]
            hits = 0
            if len(found):
                dist, idx = cKDTree(found).query(lay.cells.yx, k=1)
                used: set[int] = set()
                for i in np.argsort(dist):
                    if dist[i] < radius_px and idx[i] not in used:
                        used.add(int(idx[i]))
                        hits += 1
            tp, fn, fp = tp + hits, fn + len(lay.cells) - hits, fp + len(found) - hits
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        print(f"  threshold {threshold:.2f}: precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f} "
              f"({tp + fn} true cells)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--cores", type=int, default=12)
    p.add_argument("--size", type=int, default=1024)
    p = sub.add_parser("big")
    p.add_argument("--size", type=int, default=10000)
    p = sub.add_parser("realism")
    p.add_argument("--figure", type=Path, default=None)
    p = sub.add_parser("detect")
    p.add_argument("--cores", type=int, default=8)
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.cores, args.size)
    elif args.what == "big":
        big(args.size)
    elif args.what == "detect":
        detect(args.cores)
    else:
        realism(args.figure)


if __name__ == "__main__":
    main()
