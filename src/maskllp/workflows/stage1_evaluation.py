"""``maskllp evaluate-detection``: stage 1 on every core of a cohort against its true cells.

Truth: a synthetic cohort's ``truth.csv`` (every drawn cell), or each core's point annotations, which
must then mark every cell of the core. The per-core and pooled scores come from
:mod:`maskllp.evaluation.detection_metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maskllp.backbones import inference_autocast
from maskllp.classes import ClassMapping
from maskllp.config import Config, to_mapping
from maskllp.detection.model import Stage1Model, image_mpp
from maskllp.errors import InputError
from maskllp.evaluation.detection_metrics import EvaluationSettings, evaluate_cells, summarise
from maskllp.io.annotations import read_annotations
from maskllp.io.images import open_image
from maskllp.io.manifest import CohortEntry, read_cohort
from maskllp.synth.cells import SUBTYPE_NAMES, Subtype
from maskllp.synth.truth import CoreTruth, read_truth, read_truth_cells


def _truth_of(entry: CohortEntry, truth: dict[str, CoreTruth] | None, mapping: ClassMapping
              ) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """True cells of a cohort entry (yx, classes, subtype names): the synthetic truth's cells file,
    else the entry's points (no subtypes)."""
    if truth is not None:
        core = truth.get(entry.image.name)
        if core is None:
            return None
        cells = read_truth_cells(core.cells_path)
        return cells.yx, cells.classes, [SUBTYPE_NAMES[Subtype(int(s))] for s in cells.subtypes]
    if entry.points is None:
        return None
    points = read_annotations(entry.points, mapping).points
    return points.yx, points.classes, None


def evaluate_detection(model_dir: Path, cohort_path: Path, config: Config, truth_path: Path | None = None,
                       device: str = "cpu") -> dict[str, Any]:
    """Stage 1 on every core of a cohort against its true cells; a JSON-ready report.

    Cores without truth are listed as skipped. Matching radius ``detector.match_radius_um``; mask
    Dice at ``mask.downsample`` against the mask of the true tumour cells with the same alpha.
    """
    model = Stage1Model.load(model_dir, device, tiling=config.tiling, mask=config.mask)
    if model.classifier is None:
        raise InputError(model_dir, "a detector-only model: evaluation needs a stage-1 folder")
    cohort = read_cohort(cohort_path, config.intervals.build(), mapping=config.classes)
    truth = read_truth(truth_path) if truth_path is not None else None
    default = config.detector.default_mpp or model.detector.config.default_mpp
    cores, skipped = [], []
    for entry in cohort.entries:
        true_cells = _truth_of(entry, truth, config.classes)
        if true_cells is None:
            skipped.append(entry.image.name)
            continue
        with open_image(entry.image, entry.mpp) as reader, inference_autocast(model.device,
                                                                              config.inference.precision):
            mpp = image_mpp(reader, default, f"{entry.image} (line {entry.line})")
            cells = model.detect(reader, mpp=mpp)
        settings = EvaluationSettings(config.detector.match_radius_um / mpp, model.mask.alpha_um / mpp,
                                      model.mask.tumour_threshold, config.mask.downsample)
        yx, classes, subtypes = true_cells
        cores.append(evaluate_cells(cells, yx, classes, settings, entry.image.name, subtypes))
    return {"model": str(model_dir), "cohort": str(cohort_path), "config": to_mapping(config),
            "truth": str(truth_path) if truth_path else "point annotations",
            "match_radius_um": config.detector.match_radius_um, "alpha_um": model.mask.alpha_um,
            "overall": summarise(cores), "cores": [c.as_dict() for c in cores], "skipped": skipped}
