"""Does a core's TPS depend on how much glass lies around it? Stage 2's physical scale, measured.

    python benchmarks/scale_invariance.py COHORT.csv TRUTH.csv MODEL [MODEL ...] --out runs/scale

Each core of ``COHORT.csv`` (a synthetic cohort the models never saw) is predicted as it is and
centred on a white canvas ``--pad`` times larger (the same cells, more glass around them: what a
core cut wider, or a scanner's larger field, gives). A model that sees every core at one pixel size
(``proportion.resize = "pixel-size"``) gets the same cells either way; one that squashes each core
to a square of fixed side (the paper's ``"square"``) sees the padded core's cells ``pad`` times
smaller than in training. Printed per model: the TPS MAE against the truth on the cores as they are
and padded, and the mean / largest change of a core's TPS. The padded images are written under
``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from maskllp.config import Config
from maskllp.inference.pipeline import Predictor
from maskllp.io.images import open_image, write_image
from maskllp.io.manifest import read_cohort
from maskllp.synth.truth import read_truth


def padded_copy(image: Path, mpp: float | None, factor: float, out: Path) -> Path:
    """``image`` centred on a white canvas ``factor`` times its size, written to ``out``."""
    with open_image(image, mpp) as reader:
        rgb = reader.read_window(0, 0, *reader.shape)
    h, w = rgb.shape[:2]
    canvas = np.full((round(h * factor), round(w * factor), 3), 255, np.uint8)
    top, left = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[top: top + h, left: left + w] = rgb
    write_image(out, canvas)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohort", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--pad", type=float, default=2.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    scheme = Config().intervals.build()
    truth = read_truth(args.truth)
    entries = read_cohort(args.cohort, scheme).entries
    (args.out / "padded").mkdir(parents=True, exist_ok=True)
    padded = [padded_copy(e.image, e.mpp, args.pad, args.out / "padded" / f"{e.image.stem}.png")
              for e in entries]
    exact = np.array([truth[e.image.name].tps for e in entries])
    print(f"{len(entries)} cores, padded {args.pad:g}x")
    for model in args.models:
        predictor = Predictor.load(model)
        as_is = np.array([predictor.predict(e.image, e.mpp, want_maps=False)[0].proportion for e in entries],
                         dtype=float)
        wide = np.array([predictor.predict(p, e.mpp, want_maps=False)[0].proportion
                         for p, e in zip(padded, entries, strict=True)], dtype=float)
        change = np.abs(as_is - wide)
        print(f"{model}: MAE {100 * np.nanmean(np.abs(as_is - exact)):.1f} pp as they are, "
              f"{100 * np.nanmean(np.abs(wide - exact)):.1f} pp padded; TPS change mean "
              f"{100 * np.nanmean(change):.1f} pp, largest {100 * np.nanmax(change):.1f} pp")


if __name__ == "__main__":
    main()
