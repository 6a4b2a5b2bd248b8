"""Det, the counting baseline of Table 1: stage 1 with a three-class cell classifier, cells counted.

The proportion is n_positive / (n_positive + n_negative) over the detected tumour cells
(:func:`maskllp.detection.cells.count_proportion`); it uses no proportion label, and is undefined
when no tumour cell is found. ``s_p`` and ``s_n`` of a Det prediction are the two counts.
The three-class model is a stage-1 model folder trained with ``classifier.classes = "three"`` on
point annotations of positive tumour, negative tumour and non-tumour cells. Every Det prediction,
in cross-validation and in ``maskllp predict``, goes through :meth:`CountingModel.predict_cells`.
"""

from __future__ import annotations

from pathlib import Path

from maskllp.detection.cells import DetectedCells, count_proportion
from maskllp.detection.model import Stage1Model
from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme
from maskllp.io.grid import ImageSource
from maskllp.predictions import ProportionPrediction


class CountingModel:
    """A three-class stage-1 model that predicts proportions by counting cells."""

    def __init__(self, stage1: Stage1Model, scheme: IntervalScheme, source: str | Path | None = None) -> None:
        cfg = stage1.classifier_config
        if stage1.classifier is None or cfg is None or cfg.classes != "three":
            raise InputError(source, "Det needs a stage-1 model with a three-class classifier "
                                     "(classifier.classes = 'three')")
        self.stage1 = stage1
        self.scheme = scheme

    @classmethod
    def load(cls, path: str | Path, scheme: IntervalScheme, device: str = "cpu") -> CountingModel:
        return cls(Stage1Model.load(path, device=device), scheme, path)

    def predict_cells(self, cells: DetectedCells) -> ProportionPrediction:
        """The counted proportion of a core's detected cells, its interval, and the two counts."""
        n_pos, n_neg, proportion = count_proportion(cells, self.stage1.mask.tumour_threshold)
        interval = None if proportion is None else int(self.scheme.index_of(proportion))
        return ProportionPrediction(proportion, interval, float(n_pos), float(n_neg))

    def predict_image(self, reader: ImageSource) -> ProportionPrediction:
        """Detect, classify and count the cells of an open image."""
        return self.predict_cells(self.stage1.detect(reader))
