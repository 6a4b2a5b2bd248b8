"""Synthetic PD-L1 / Ki-67 IHC cohorts with exact per-cell truth.

:func:`generate_cohort` writes a cohort folder (images, manifest, annotations, truth); the pieces
are :mod:`~maskllp.synth.layout` (cells as arrays), :mod:`~maskllp.synth.render` (pixels, by window),
:mod:`~maskllp.synth.annotate` (regions and points a pathologist would draw) and
:mod:`~maskllp.synth.truth` (the exact counts, and :func:`~maskllp.synth.truth.read_truth`).
"""

from maskllp.synth.cohort import generate_cohort

__all__ = ["generate_cohort"]
