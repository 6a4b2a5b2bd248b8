"""How often does the "stain outside the training range" flag fire, on cores of the training lab and
of another lab?

    python benchmarks/stain_range.py SITE_A.csv SITE_B.csv [--train-share 0.75] [--seed 0]
    python benchmarks/stain_range.py --images TRAIN_IMAGE... --against OTHER_IMAGE...

Cohort mode: site A's patients are split at random into training (``--train-share``) and held-out
ones; the range is that of the training cores (as ``maskllp train proportion`` records it,
:mod:`maskllp.inference.stain_check`), and every held-out site-A core and every site-B core is
checked as ``maskllp predict`` checks it ([review] margins of the default config). Printed: the
share flagged on each side (held-out site A: false alarms; site B: detections), by check
(hematoxylin colour, DAB colour, hematoxylin strength), and the angles measured.

Image mode: the range of the ``--images`` (with their own pixel size, else 1 um/px), then each
``--against`` image checked against it (for instance one slide scanned twice).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from maskllp.config.review import ReviewConfig
from maskllp.inference.stain_check import core_stain_vectors
from maskllp.intervals import PAPER_FIVE
from maskllp.io.images import open_image
from maskllp.io.manifest import read_cohort
from maskllp.stains import StainRange, StainVectors, angle_deg

CHECKS = ("hematoxylin colour", "DAB colour", "hematoxylin strength")


def stains_of(path: Path, mpp: float | None) -> StainVectors | None:
    with open_image(path, mpp) as reader:
        if reader.mpp is None:
            reader.mpp = 1.0
        return core_stain_vectors(reader)


def describe(label: str, stains: list[StainVectors | None], stain_range: StainRange,
             review: ReviewConfig) -> None:
    known = [s for s in stains if s is not None]
    found = [stain_range.departures(s, review.stain_margin_deg, review.stain_od_margin) for s in known]
    flagged = sum(1 for f in found if f)
    h_deg = [angle_deg(s.hematoxylin, stain_range.hematoxylin) for s in known]
    d_deg = [angle_deg(s.dab, stain_range.dab) for s in known if s.dab is not None and stain_range.dab]
    print(f"{label}: {len(stains)} cores ({len(stains) - len(known)} without tissue), flagged "
          f"{flagged} ({100 * flagged / max(len(known), 1):.0f} %)")
    for check in CHECKS:
        n = sum(1 for f in found if any(x.startswith(check) for x in f))
        print(f"    {check}: {n}")
    print(f"    hematoxylin angle from the training mean: median {np.median(h_deg):.1f}, "
          f"max {max(h_deg):.1f} deg")
    if d_deg:
        print(f"    DAB angle from the training mean: median {np.median(d_deg):.1f}, "
              f"max {max(d_deg):.1f} deg "
              f"({len(d_deg)} cores with DAB)")
    print(f"    hematoxylin strength: {min(s.hematoxylin_od for s in known):.2f}-"
          f"{max(s.hematoxylin_od for s in known):.2f} OD")


def print_range(stain_range: StainRange) -> None:
    r = stain_range
    dab = "none" if r.dab is None else f"{np.round(r.dab, 3)} (cores within {r.dab_max_deg:.1f} deg)"
    print(f"range of {r.cores} training cores: hematoxylin {np.round(r.hematoxylin, 3)} (cores within "
          f"{r.hematoxylin_max_deg:.1f} deg), DAB {dab}, hematoxylin strength {r.hematoxylin_od[0]:.2f}-"
          f"{r.hematoxylin_od[1]:.2f} OD")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site_a", nargs="?", type=Path)
    ap.add_argument("site_b", nargs="?", type=Path)
    ap.add_argument("--train-share", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", nargs="+", type=Path)
    ap.add_argument("--against", nargs="+", type=Path)
    args = ap.parse_args()
    review = ReviewConfig()
    print(f"margins: {review.stain_margin_deg} deg, strength x(1 +- {review.stain_od_margin})")
    if args.images:
        stain_range = StainRange.of([s for s in (stains_of(p, None) for p in args.images) if s is not None])
        print_range(stain_range)
        for p in args.against or []:
            s = stains_of(p, None)
            found = ([] if s is None
                     else stain_range.departures(s, review.stain_margin_deg, review.stain_od_margin))
            print(f"{p.name}: {'; '.join(found) or 'inside the range'}")
        return
    a = read_cohort(args.site_a, PAPER_FIVE).entries
    b = read_cohort(args.site_b, PAPER_FIVE).entries
    patients = sorted({e.patient for e in a})
    rng = np.random.default_rng(args.seed)
    train_patients = set(rng.permutation(patients)[: round(args.train_share * len(patients))])
    a_stains = [stains_of(e.image, e.mpp) for e in a]
    train = [s for e, s in zip(a, a_stains, strict=True) if e.patient in train_patients and s is not None]
    held = [s for e, s in zip(a, a_stains, strict=True) if e.patient not in train_patients]
    stain_range = StainRange.of(train)
    print_range(stain_range)
    describe("site A, held-out patients", held, stain_range, review)
    describe("site B", [stains_of(e.image, e.mpp) for e in b], stain_range, review)


if __name__ == "__main__":
    main()
