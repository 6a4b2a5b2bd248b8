"""Det, the counting baseline of Table 1: stage 1 with a three-class cell classifier, cells counted.

The proportion is n_positive / (n_positive + n_negative) over the detected tumour cells
(:func:`maskllp.detection.cells.count_proportion`); it uses no proportion label, and is undefined
when no tumour cell is found. ``s_p`` and ``s_n`` of a Det prediction are the two counts.
The three-class model is a stage-1 model folder trained with ``classifier.classes = "three"`` on
point annotations of positive tumour, negative tumour and non-tumour cells: given ready-made
(:meth:`CountingModel.load`), or trained here on the annotated cores of a training fold on top of a
trained detector (:func:`train_counting_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme
from maskllp.proportion.model import ProportionPrediction


class CountingModel:
    """A three-class stage-1 model that predicts proportions by counting cells."""

    def __init__(self, stage1: Any, scheme: IntervalScheme, source: str | Path | None = None) -> None:
        cfg = getattr(stage1, "classifier_config", None)
        if stage1.classifier is None or cfg is None or cfg.classes != "three":
            raise InputError(source, "Det needs a stage-1 model with a three-class classifier "
                                     "(classifier.classes = 'three')")
        self.stage1 = stage1
        self.scheme = scheme

    @classmethod
    def load(cls, path: str | Path, scheme: IntervalScheme, device: str = "cpu") -> CountingModel:
        from maskllp.inference.stage1 import Stage1Model

        return cls(Stage1Model.load(path, device=device), scheme, path)

    def predict_image(self, reader: Any) -> ProportionPrediction:
        """Detect, classify and count the cells of an open image (``maskllp.io.images.ImageReader``)."""
        from maskllp.detection.cells import count_proportion

        cells = self.stage1.detect(reader)
        n_pos, n_neg, proportion = count_proportion(cells, self.stage1.mask.tumour_threshold)
        interval = None if proportion is None else int(self.scheme.index_of(proportion))
        return ProportionPrediction(proportion, interval, float(n_pos), float(n_neg))

    def predict_entry(self, entry: Any) -> ProportionPrediction:
        """Prediction for a cohort entry (``.image``, ``.mpp``)."""
        from maskllp.io.images import open_image

        with open_image(entry.image, entry.mpp) as reader:
            return self.predict_image(reader)


def train_counting_model(entries: Sequence[Any], detector: Any, config: Any, work_dir: str | Path,
                         source: str | Path | None = None) -> CountingModel:
    """Det for a set of training cores: stage 1's classifier trained with three classes
    (``classifier.classes = "three"``) on the cores' point annotations (positive tumour, negative
    tumour, non-tumour; non-tumour regions too), on top of a trained ``detector``
    (:class:`maskllp.inference.stage1.DetectorModel`). Only cell annotations are used, no label.
    """
    from maskllp.io.manifest import Cohort
    from maskllp.training.stage1 import images_from_cohort, train_classifier

    three = replace(config, classifier=replace(config.classifier, classes="three"))
    scheme = config.intervals.build()
    annotated = [e for e in entries if e.points is not None or e.regions is not None]
    images = images_from_cohort(Cohort(Path(source or "."), scheme, annotated), three)
    if not any(im.has_points for im in images):
        raise InputError(source, "Det: no training core has point annotations to learn positive and negative "
                                 "tumour cells from (or give a trained three-class model, --det-model)")
    return CountingModel(train_classifier(images, detector, three, Path(work_dir)), scheme, source)
