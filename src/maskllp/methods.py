"""The registry of Table 1 methods: each entry says what the method is and how it is fitted and predicts.

Every method is one frozen :class:`Method`. What differs between methods is data on the entry: the
head kind, the loss factory, whether the tumour mask is used, and its :class:`MethodFitting` (how it
is fitted on training cores, how a fitted model predicts, how it is saved and loaded). Cross-
validation (:mod:`maskllp.workflows.cross_validation`), ``maskllp train proportion`` and ``maskllp
predict`` call the entry and never ask which method it is.

========================  ==============================  ========  ====  ===========================
name                      Table 1                         head      mask  loss
========================  ==============================  ========  ====  ===========================
``det``                   Det                             count     no    (stage 1, 3-class, counted)
``class``                 Class                           class     no    5-way cross-entropy
``o-reg``                 O-Reg                           ordinal   no    cumulative BCE
``prop-nomask``           Prop w/o mask                   maps      no    KL proportion loss
``ours-nomask``           Ours w/o mask                   maps      no    weighted focal prop. loss
``lpi``                   LPI loss                        maps      yes   interval (LPI) loss
``prop``                  Prop                            maps      yes   KL proportion loss
``wprop``                 WProp                           maps      yes   1/width-weighted KL
``wprop-listnet``         WProp + ListNet                 maps      yes   WProp + ListNet
``focalprop``             FocalProp                       maps      yes   focal prop. loss, gamma 2
``ours``                  Ours                            maps      yes   weighted focal prop. loss
``ours-cells``            Ours (cells)                    cells     yes   KL proportion loss + clicks
``ours-cells-focal``      Ours (cells, w. focal)          cells     yes   weighted focal + clicks
``ours-cells-count``      Ours (cells, count lik.)        cells     yes   count likelihood + clicks
``ours-cells-cnn``        Ours (cells, CNN)               cells     yes   KL proportion loss + clicks
========================  ==============================  ========  ====  ===========================

After the eleven rows of Table 1 come maskllp's cell-level methods: ``ours-cells`` (p(positive) per
tumour cell from its stain measurements, trained on the cores' interval labels with the KL
proportion loss and on the clicked cells; the core's TPS the share of positive cells) and
``ours-cells-focal`` (the same with the paper's weighted focal proportion loss), ``ours-cells-cnn``
(``ours-cells`` whose network also reads each cell's hematoxylin / DAB patch through a small CNN,
so it learns features the fixed measurements miss). On the 200-core
dev cohort of docs/benchmark-table1.md the KL loss gave the cell method mF1 0.48 and MAE 6.9 pp,
the weighted focal loss 0.31 and 7.9 pp: the focal factor |r - r_hat|^2 all but silences the rare
high-TPS cores, whose midpoints the cells' mean approaches from below.

Three fittings serve the entries: :class:`Stage2Fitting` (the stage-2 network, trained on the
interval labels by :func:`maskllp.training.proportion.train_proportion_model`),
:class:`CountingFitting` (Det: a three-class stage-1 classifier trained on the point annotations,
cells counted by :class:`maskllp.detection.counting.CountingModel`) and :class:`CellFitting` (the
cell-level methods, :mod:`maskllp.training.cells`).

"w/o mask" methods use the same map network with M = 1 over the whole input image (the paper: they
"produce the PD-L1 rate directly from the entire image"; the white padding that squares a core is
glass like the background around any round core), so they differ from their masked twins only by
the mask.

Lightning is imported only when a method is fitted, so ``maskllp predict`` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from torch import nn

from maskllp.backbones import inference_device
from maskllp.config import Config
from maskllp.config.proportion import LossConfig
from maskllp.detection.cells import DetectedCells
from maskllp.detection.counting import CountingModel
from maskllp.detection.model import STAGE1_KIND, DetectorModel, Stage1Model
from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme, get_scheme
from maskllp.io.grid import ImageSource
from maskllp.io.images import open_image
from maskllp.io.manifest import Cohort
from maskllp.io.model_folder import read_model_config
from maskllp.predictions import ProportionKind, ProportionPrediction
from maskllp.proportion import losses
from maskllp.proportion.cells import CELL_MODEL_KIND, CellProportionModel, load_cell_model
from maskllp.proportion.inputs import InputFit, Stage2Item, input_mask, read_input_image
from maskllp.proportion.model import (
    MODEL_KIND,
    ProportionModel,
    Stage2Recipe,
    TrainingSummary,
    load_proportion_model,
)
from maskllp.proportion.network import NetworkSpec
from maskllp.proportion.uncertainty import RANGE_LEVEL, tps_interval
from maskllp.training.inputs import MaskSource, Stage1MaskSource

HeadKind = Literal["maps", "class", "ordinal", "count", "cells"]
LossFactory = Callable[[IntervalScheme, LossConfig], nn.Module]

STAGE1_SUBFOLDER = "stage1"
"""Where a stage-2 model folder that uses the tumour mask keeps the stage 1 that made its masks."""


# ===================================================================================== what is shared
@dataclass
class FitSetup:
    """What a run gives its methods besides the training cores (built once per run).

    ``mask_source``: where the training masks came from (stage 2 keeps its stage 1 with the model).
    Det: ``det_model``, a trained three-class stage-1 folder used as it is; otherwise a three-class
    classifier is trained per fit on the annotated training cores over the detector of ``stage1``.
    """

    mask_source: MaskSource | None = None
    stage1: Path | None = None
    det_model: Path | None = None
    cohort: Path | None = None
    """The cohort manifest (named in messages)."""
    scheme: IntervalScheme = field(default_factory=get_scheme)
    device: str = "cpu"
    _loaded: dict[str, object] = field(default_factory=dict, repr=False)

    def fixed_counting_model(self) -> CountingModel | None:
        """The ``det_model`` folder, loaded once (None when not given)."""
        if self.det_model is None:
            return None
        if "det_model" not in self._loaded:
            self._loaded["det_model"] = CountingModel.load(self.det_model, self.scheme, self.device)
        return self._loaded["det_model"]  # type: ignore[return-value]

    def detector(self) -> DetectorModel:
        """The detector of the ``stage1`` folder, loaded once."""
        if self.stage1 is None:
            raise InputError(None, "Det needs --stage1 MODEL_DIR (its detector; a three-class classifier is "
                                   "then trained per fold on the annotated training cores) or --det-model "
                                   "MODEL_DIR (a trained three-class stage-1 model)", "--methods")
        if "detector" not in self._loaded:
            self._loaded["detector"] = Stage1Model.load(self.stage1).detector
        return self._loaded["detector"]  # type: ignore[return-value]


@dataclass(frozen=True)
class CellCalls:
    """A cell-level method's calls on one core's tumour cells: level-0 ``yx`` (n, 2) float64 and
    ``positive`` (n,) float32 p(positive)."""

    yx: np.ndarray
    positive: np.ndarray


@dataclass
class CoreEstimate:
    """A fitted method's estimate for one new core, with what it was computed from (for figures)."""

    prediction: ProportionPrediction
    kind: ProportionKind
    """``masked ratio`` (s_p / (s_p + s_n)), ``interval midpoint`` (Class, O-Reg), ``cell count`` (Det)."""
    image: np.ndarray | None = None
    """(S, S, 3) uint8: the network's input image; None for Det."""
    mask: np.ndarray | None = None
    """(S, S) bool: the tumour mask M at the same size (all True for "w/o mask" methods)."""
    maps: np.ndarray | None = None
    """(2, S/8, S/8) float32 F_p, F_n; None for methods without maps."""
    tumour_area_fraction: float | None = None
    """Fraction of the core's pixels inside M (None when no tumour mask was made)."""
    fit: InputFit | None = None
    """Where the core lies on ``image`` (None for Det)."""
    cell_positive: np.ndarray | None = None
    """(N,) float32 p(positive) of each of stage 1's cells (NaN for cells that are not tumour
    cells); None when the method says nothing per cell (Class, O-Reg, w/o-mask methods)."""
    positivity: str | None = None
    """Where ``cell_positive`` comes from: ``cell method`` (each cell's own call; counting the calls
    gives the TPS), ``counted`` (Det: the same), ``maps`` (F_p / (F_p + F_n) of the map cell under
    the cell: a reading of the maps; the TPS is the masked sums' ratio, not this count)."""

    @property
    def tps_range(self) -> tuple[float, float] | None:
        """(low, high) 90 % TPS range (:mod:`maskllp.proportion.uncertainty`); None where the
        method gives none."""
        return self.prediction.tps_range


class FittedMethod(Protocol):
    """A method fitted on training cores (or loaded from its model folder)."""

    method: Method
    scheme: IntervalScheme
    summary: TrainingSummary | None

    @property
    def stage1(self) -> Stage1Model | None:
        """The stage 1 a new core goes through before :meth:`estimate` (None: none needed)."""
        ...

    def detect_cells(self, reader: ImageSource) -> DetectedCells | None:
        """Stage 1 on an open core image, as :meth:`estimate` needs it (None: no stage 1)."""
        ...

    def predict_items(self, items: Sequence[Stage2Item], batch_size: int = 8, views: int = 1
                      ) -> list[ProportionPrediction]:
        """Predictions for prepared cohort cores, in their order (cross-validation). ``views``: how
        many flipped / rotated views of each core a stage-2 network averages over
        (:data:`maskllp.proportion.model.VIEWS`); the cell methods and Det see no image views."""
        ...

    def positive_calls(self, items: Sequence[Stage2Item]) -> list[CellCalls | None]:
        """Per core, the method's call on each of its tumour cells (None: not a cell-level method)."""
        ...

    def estimate(self, image: Path, mpp: float | None, cells: DetectedCells | None,
                 want_maps: bool = True, views: int = 1) -> CoreEstimate:
        """The estimate for a new core image, given the cells :attr:`stage1` found in it (``views``:
        as for :meth:`predict_items`)."""
        ...

    def save(self, path: Path) -> Path:
        """Write the model folder ``path`` (atomically); ``maskllp predict`` needs nothing else."""
        ...


class MethodFitting(Protocol):
    """How the methods of one kind are fitted, and how their model folders are read back."""

    folder_kind: str
    """The ``kind`` of the model folders this fitting writes."""

    def check(self, method: Method, setup: FitSetup) -> None:
        """Raise InputError, before any work, when ``setup`` lacks what ``fit`` needs."""
        ...

    def fit(self, method: Method, items: Sequence[Stage2Item], setup: FitSetup, config: Config,
            work_dir: Path) -> FittedMethod:
        ...

    def load(self, method: Method, path: Path, device: str, stage1_dir: Path | None,
             scheme: IntervalScheme) -> FittedMethod:
        ...


# ===================================================================================== stage 2
@dataclass
class Stage2Fitted:
    """A stage-2 network and, for a method that uses the mask, the stage 1 that makes its masks."""

    method: Method
    model: ProportionModel
    stage1: Stage1Model | None = None
    mask_source: str | None = None
    """``stage1``, ``truth`` or ``none``: where the training masks came from (kept in the folder)."""

    @property
    def scheme(self) -> IntervalScheme:
        return self.model.scheme

    @property
    def summary(self) -> TrainingSummary | None:
        return self.model.summary

    def predict_items(self, items: Sequence[Stage2Item], batch_size: int = 8, views: int = 1
                      ) -> list[ProportionPrediction]:
        return self.model.predict_items(list(items), batch_size, views)

    def detect_cells(self, reader: ImageSource) -> DetectedCells | None:
        return None if self.stage1 is None else self.stage1.detect(reader, measure=True)

    def positive_calls(self, items: Sequence[Stage2Item]) -> list[CellCalls | None]:
        return [None] * len(items)

    def network_input(self, image: Path, mpp: float | None, cells: DetectedCells | None
                      ) -> tuple[np.ndarray, np.ndarray, InputFit, np.ndarray | None]:
        """The network's (H, W, 3) image, (H, W) mask and fit of a core, built exactly as for
        training (:class:`maskllp.training.inputs.ItemCache`), and the mask at the core's own shape
        (None without cells: M = 1)."""
        rgb, fit = read_input_image(image, mpp, self.model.input)
        content = None
        if cells is not None and self.stage1 is not None:
            content = self.stage1.mask_at(cells, fit.content_shape)
        mask = input_mask(np.ones(fit.content_shape, bool) if content is None else content, fit)
        return rgb, mask, fit, content

    def estimate(self, image: Path, mpp: float | None, cells: DetectedCells | None,
                 want_maps: bool = True, views: int = 1) -> CoreEstimate:
        rgb, mask, fit, content = self.network_input(image, mpp, cells)
        pred = self.model.predict_cores([(rgb, mask, fit)], views=views)[0]
        # the maps also give the cells their positive / negative call (the cells GeoJSON), so they
        # are computed whenever there are cells, figure or not
        has_cells = cells is not None and self.stage1 is not None
        maps = (self.model.maps(rgb, mask, fit)
                if self.method.head == "maps" and (want_maps or has_cells) else None)
        area = float(content.mean()) if content is not None and content.size else None
        positive = None
        if maps is not None and cells is not None and self.stage1 is not None:
            positive = maps_at_cells(maps, cells, fit, self.stage1.mask.tumour_threshold)
        return CoreEstimate(pred, self.method.proportion_kind, rgb, mask, maps, area, fit=fit,
                            cell_positive=positive, positivity=None if positive is None else "maps")

    def to(self, device: str) -> Stage2Fitted:
        self.model.to(device)
        return self

    def save(self, path: Path) -> Path:
        extra = {} if self.mask_source is None else {"mask_source": self.mask_source}
        self.model.save(path, extra)
        if self.stage1 is not None:
            self.stage1.save(Path(path) / STAGE1_SUBFOLDER)
        return Path(path)


def map_ratio_at(maps: np.ndarray, yx: np.ndarray, image_shape: tuple[int, int], fit: InputFit) -> np.ndarray:
    """(N,) float32 F_p / (F_p + F_n) of the map cell under each point: ``maps`` (2, h, w) of the
    canvas ``fit`` places the core on; ``yx`` (N, 2) level-0 index coordinates of an image of
    ``image_shape`` (height, width)."""
    if not len(yx):
        return np.zeros(0, np.float32)
    canvas = fit.from_level0(yx, image_shape)
    stride = np.array([fit.height / maps.shape[1], fit.width / maps.shape[2]])
    last = [maps.shape[1] - 1, maps.shape[2] - 1]
    idx = np.clip(np.floor((canvas + 0.5) / stride).astype(np.int64), 0, last)
    f_p, f_n = maps[0][idx[:, 0], idx[:, 1]], maps[1][idx[:, 0], idx[:, 1]]
    return (f_p / np.maximum(f_p + f_n, 1e-12)).astype(np.float32)


def maps_at_cells(maps: np.ndarray, cells: DetectedCells, fit: InputFit, threshold: float) -> np.ndarray:
    """(N,) float32 :func:`map_ratio_at` each tumour cell of ``cells`` (NaN for the others)."""
    out = np.full(len(cells), np.nan, np.float32)
    tumour = cells.is_tumour(threshold)
    out[tumour] = map_ratio_at(maps, cells.yx[tumour], cells.shape, fit)
    return out


class Stage2Fitting:
    """Fitting of the map, class and ordinal methods: one network trained on the interval labels."""

    folder_kind = MODEL_KIND

    def check(self, method: Method, setup: FitSetup) -> None:
        return None

    def fit(self, method: Method, items: Sequence[Stage2Item], setup: FitSetup, config: Config,
            work_dir: Path) -> Stage2Fitted:
        from maskllp.training.proportion import train_proportion_model  # imports Lightning

        model = train_proportion_model(list(items), method.recipe(config), config, work_dir)
        source = setup.mask_source
        stage1 = source.model if method.uses_mask and isinstance(source, Stage1MaskSource) else None
        return Stage2Fitted(method, model, stage1, None if source is None else source.name)

    def load(self, method: Method, path: Path, device: str, stage1_dir: Path | None,
             scheme: IntervalScheme) -> Stage2Fitted:
        model = load_proportion_model(path).to(device)
        stage1 = None
        if method.uses_mask:
            where = stage1_folder(method, path, stage1_dir)
            stage1 = Stage1Model.load(where, device=device)
            if stage1.classifier is None:
                raise InputError(where, "a detector-only model gives no tumour mask (need stage1)")
        return Stage2Fitted(method, model, stage1)


# ===================================================================================== Det
@dataclass
class CountingFitted:
    """Det: a three-class stage-1 model; every prediction counts the cells it finds."""

    method: Method
    counting: CountingModel
    summary: TrainingSummary | None = None
    _seen: dict[int, DetectedCells] = field(default_factory=dict, repr=False)
    """Cells of the cores predicted so far (by item identity), for :meth:`positive_calls`."""

    @property
    def scheme(self) -> IntervalScheme:
        return self.counting.scheme

    @property
    def stage1(self) -> Stage1Model:
        return self.counting.stage1

    def detect_cells(self, reader: ImageSource) -> DetectedCells:
        return self.counting.stage1.detect(reader, measure=True)

    def _cells(self, item: Stage2Item) -> DetectedCells:
        if id(item) not in self._seen:
            if item.entry is None:
                raise ValueError(f"Det reads the core image, and item {item.name} has no manifest entry")
            with open_image(item.entry.image, item.entry.mpp) as reader:
                self._seen[id(item)] = self.detect_cells(reader)
        return self._seen[id(item)]

    def predict_items(self, items: Sequence[Stage2Item], batch_size: int = 8, views: int = 1
                      ) -> list[ProportionPrediction]:
        return [self._prediction(self._cells(it)) for it in items]

    def _prediction(self, cells: DetectedCells) -> ProportionPrediction:
        """The count, with the Poisson-binomial range of its tumour cells' p(positive) (Det learns
        from no interval label: no conformal margin widens it)."""
        pred = self.counting.predict_cells(cells)
        if pred.proportion is None:
            return pred
        return replace(pred, tps_range=tps_interval(self._positive(cells), RANGE_LEVEL))

    def positive_calls(self, items: Sequence[Stage2Item]) -> list[CellCalls | None]:
        out: list[CellCalls | None] = []
        for it in items:
            cells = self._cells(it)
            p = self._positive(cells)
            keep = ~np.isnan(p)
            out.append(CellCalls(cells.yx[keep], p[keep]))
        return out

    def _positive(self, cells: DetectedCells) -> np.ndarray:
        """(N,) p(positive | tumour) of each tumour cell, NaN for the others."""
        positive = np.full(len(cells), np.nan, np.float32)
        if cells.class_probs is not None:
            tumour = cells.is_tumour(self.stage1.mask.tumour_threshold)
            probs = cells.class_probs[tumour]
            positive[tumour] = probs[:, 0] / np.maximum(probs[:, 0] + probs[:, 1], 1e-12)
        return positive

    def estimate(self, image: Path, mpp: float | None, cells: DetectedCells | None,
                 want_maps: bool = True, views: int = 1) -> CoreEstimate:
        if cells is None:
            raise ValueError("Det counts the cells stage 1 found: pass them")
        return CoreEstimate(self._prediction(cells), self.method.proportion_kind,
                            cell_positive=self._positive(cells), positivity="counted")

    def to(self, device: str) -> CountingFitted:
        return self

    def save(self, path: Path) -> Path:
        return self.counting.stage1.save(path)


class CountingFitting:
    """Fitting of Det: the stage-1 classifier trained with three classes (positive tumour, negative
    tumour, non-tumour) on the point annotations of the training cores, over a trained detector; no
    proportion label is used. Or a given trained three-class model (``FitSetup.det_model``)."""

    folder_kind = STAGE1_KIND

    def check(self, method: Method, setup: FitSetup) -> None:
        if setup.fixed_counting_model() is None:
            setup.detector()

    def fit(self, method: Method, items: Sequence[Stage2Item], setup: FitSetup, config: Config,
            work_dir: Path) -> CountingFitted:
        fixed = setup.fixed_counting_model()
        if fixed is not None:
            return CountingFitted(method, fixed)
        from maskllp.training.stage1 import images_from_cohort, train_classifier  # imports Lightning

        three = replace(config, classifier=replace(config.classifier, classes="three"))
        scheme = config.intervals.build()
        entries = [it.entry for it in items if it.entry is not None]
        annotated = [e for e in entries if e.annotated]
        images = images_from_cohort(Cohort(Path(setup.cohort or "."), scheme, annotated), three)
        if not any(len(im.labelled_points_yx) for im in images):
            raise InputError(setup.cohort, "Det: no training core has point annotations to learn positive "
                                           "and negative tumour cells from (or give a trained three-class "
                                           "model, --det-model)")
        stage1 = train_classifier(images, setup.detector(), three, Path(work_dir))
        return CountingFitted(method, CountingModel(stage1, scheme, setup.cohort))

    def load(self, method: Method, path: Path, device: str, stage1_dir: Path | None,
             scheme: IntervalScheme) -> CountingFitted:
        return CountingFitted(method, CountingModel.load(path, scheme, device=device))


# ===================================================================================== cells
@dataclass
class CellFitted:
    """The cell-level method: stage 1 (with measurements) finds the tumour cells, the cell network
    gives each p(positive), their mean is the core's TPS."""

    method: Method
    model: CellProportionModel
    stage1: Stage1Model
    cells_of: Callable[[Stage2Item], DetectedCells] | None = None
    """Where a cohort core's cells come from in cross-validation (the run's stage-1 cache)."""

    @property
    def scheme(self) -> IntervalScheme:
        return self.model.scheme

    @property
    def summary(self) -> TrainingSummary | None:
        return self.model.summary

    @property
    def n_trunk(self) -> int:
        return self.model.net.spec.n_trunk

    @property
    def threshold(self) -> float:
        return self.stage1.mask.tumour_threshold

    def detect_cells(self, reader: ImageSource) -> DetectedCells:
        return self.stage1.detect(reader, measure=True, patches=self.model.reads_patches)

    def _tumour_inputs(self, cells: DetectedCells) -> tuple[np.ndarray, np.ndarray | None]:
        """The tumour cells' features and, for a network that reads them, their patches."""
        patches = cells.tumour_patches(self.threshold) if self.model.reads_patches else None
        return cells.tumour_features(self.threshold, self.n_trunk), patches

    def _cells(self, item: Stage2Item) -> DetectedCells:
        if self.cells_of is not None:
            return self.cells_of(item)
        if item.entry is None:
            raise ValueError(f"the cell method reads the core image, and item {item.name} has no entry")
        with open_image(item.entry.image, item.entry.mpp) as reader:
            return self.detect_cells(reader)

    def predict_items(self, items: Sequence[Stage2Item], batch_size: int = 8, views: int = 1
                      ) -> list[ProportionPrediction]:
        return [self.model.predict_features(*self._tumour_inputs(self._cells(it))) for it in items]

    def positive_calls(self, items: Sequence[Stage2Item]) -> list[CellCalls | None]:
        out: list[CellCalls | None] = []
        for it in items:
            cells = self._cells(it)
            features, patches = self._tumour_inputs(cells)
            out.append(CellCalls(cells.yx[cells.is_tumour(self.threshold)],
                                 self.model.cell_probabilities(features, patches=patches)))
        return out

    def estimate(self, image: Path, mpp: float | None, cells: DetectedCells | None,
                 want_maps: bool = True, views: int = 1) -> CoreEstimate:
        if cells is None:
            raise ValueError("the cell method needs stage 1's measured cells: pass detect_cells(reader)")
        features, patches = self._tumour_inputs(cells)
        tumour = cells.is_tumour(self.threshold)
        logits = self.model.cell_logits(features, patches)  # one pass: the calls, the count, the range
        positive = np.full(len(cells), np.nan, np.float32)
        positive[tumour] = self.model.probabilities_of(logits)
        return CoreEstimate(self.model.predict_logits(logits), self.method.proportion_kind,
                            cell_positive=positive, positivity="cell method")

    def to(self, device: str) -> CellFitted:
        return self

    def save(self, path: Path) -> Path:
        self.model.save(path, {"mask_source": "stage1"})
        self.stage1.save(Path(path) / STAGE1_SUBFOLDER)
        return Path(path)


class CellFitting:
    """Fitting of ``ours-cells``: the cell network trained on bags of tumour cells (the cores'
    interval labels) and on the clicked cells of the point-annotated cores. With ``patches`` the
    network also reads each cell's hematoxylin / DAB patch through its own small CNN
    (``ours-cells-cnn``)."""

    folder_kind = CELL_MODEL_KIND

    def __init__(self, patches: bool = False) -> None:
        self.patches = patches

    def check(self, method: Method, setup: FitSetup) -> None:
        if setup.stage1 is None or not (setup.mask_source is None or isinstance(setup.mask_source,
                                                                                   Stage1MaskSource)):
            raise InputError(None, f"{method.name} learns from the cells stage 1 finds: give --stage1 "
                                   "MODEL_DIR (oracle masks give no cell measurements)", "--methods")

    def fit(self, method: Method, items: Sequence[Stage2Item], setup: FitSetup, config: Config,
            work_dir: Path) -> CellFitted:
        from maskllp.training.cells import make_bag, train_cell_model  # imports Lightning

        source = setup.mask_source
        if not isinstance(source, Stage1MaskSource):
            raise InputError(None, f"{method.name} learns from the cells stage 1 finds: give --stage1 "
                                   "MODEL_DIR (oracle masks give no cell measurements)", "--methods")
        stage1 = source.model
        width = stage1.trunk_width
        n_trunk = width if config.proportion.cells.trunk_features else 0
        threshold = stage1.mask.tumour_threshold
        bags = [make_bag(it.name, it.interval, source.cells(it.entry, self.patches), it.entry, config,
                         threshold, n_trunk, self.patches)
                for it in items if it.entry is not None]
        loss = method.build_loss(config.intervals.build(), config.proportion.loss)
        model = train_cell_model(bags, method.name, loss, n_trunk, config, work_dir)

        def cells_of(item: Stage2Item) -> DetectedCells:
            if item.entry is None:
                raise ValueError(f"item {item.name} has no manifest entry")
            return source.cells(item.entry, self.patches)

        return CellFitted(method, model, stage1, cells_of)

    def load(self, method: Method, path: Path, device: str, stage1_dir: Path | None,
             scheme: IntervalScheme) -> CellFitted:
        model = load_cell_model(path)
        where = stage1_folder(method, path, stage1_dir)
        stage1 = Stage1Model.load(where, device=device)
        if stage1.classifier is None:
            raise InputError(where, "a detector-only model finds no tumour cells (need stage1)")
        return CellFitted(method, model, stage1)


# ===================================================================================== the registry
@dataclass(frozen=True)
class Method:
    """One row of Table 1."""

    name: str
    display_name: str
    head: HeadKind
    loss_factory: LossFactory | None
    """Builds the loss from the interval scheme and ``[proportion.loss]``; None for ``det``."""
    uses_mask: bool
    fitting: MethodFitting

    @property
    def predicts_proportion(self) -> bool:
        """Whether the method estimates a proportion (map, count, cell heads) or only an interval."""
        return self.head in ("maps", "count", "cells")

    @property
    def proportion_kind(self) -> ProportionKind:
        """What its proportion is: a masked ratio (maps), a cell count (Det), a mean over the tumour
        cells (cell-level method) or an interval midpoint (Class, O-Reg)."""
        kinds: dict[str, ProportionKind] = {"maps": "masked ratio", "count": "cell count",
                                            "cells": "cell mean"}
        return kinds.get(self.head, "interval midpoint")

    def build_loss(self, scheme: IntervalScheme, cfg: LossConfig) -> nn.Module:
        """The method's loss for ``scheme``; InputError when ``[proportion.loss]`` does not fit it."""
        if self.loss_factory is None:
            raise ValueError(f"method {self.name!r} is not trained with a stage-2 loss")
        try:
            return self.loss_factory(scheme, cfg)
        except ValueError as e:
            raise InputError(None, f"{e} (scheme {scheme.name!r} has {len(scheme)} intervals)",
                             "section proportion.loss") from None

    def network_spec(self, n_intervals: int) -> NetworkSpec:
        """The stage-2 network of this method for a scheme of ``n_intervals`` intervals."""
        if self.head == "maps":
            return NetworkSpec("maps", 2, masked=self.uses_mask)
        if self.head == "class":
            return NetworkSpec("class", n_intervals)
        if self.head == "ordinal":
            return NetworkSpec("ordinal", n_intervals - 1)
        raise ValueError(f"method {self.name!r} has no stage-2 network (it works on stage-1 cells)")

    def recipe(self, config: Config) -> Stage2Recipe:
        """The stage-2 network and loss of this method for ``config``'s scheme and loss settings."""
        scheme = config.intervals.build()
        spec = replace(self.network_spec(len(scheme)), input_channels=config.proportion.input_channels)
        return Stage2Recipe(self.name, spec, self.build_loss(scheme, config.proportion.loss))

    def check(self, setup: FitSetup) -> None:
        """InputError, before any work, when ``setup`` lacks what fitting this method needs."""
        self.fitting.check(self, setup)

    def fit(self, items: Sequence[Stage2Item], setup: FitSetup, config: Config, work_dir: Path
            ) -> FittedMethod:
        """Fit the method on labelled training cores (``work_dir`` receives the training logs)."""
        return self.fitting.fit(self, items, setup, config, Path(work_dir))


STAGE2 = Stage2Fitting()
COUNTING = CountingFitting()
CELLS = CellFitting()
CELL_PATCHES = CellFitting(patches=True)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("det", "Det", "count", None, False, COUNTING),
        Method("class", "Class", "class", losses.class_loss, False, STAGE2),
        Method("o-reg", "O-Reg", "ordinal", losses.ordinal_loss, False, STAGE2),
        Method("prop-nomask", "Prop w/o mask", "maps", losses.proportion_loss, False, STAGE2),
        Method("ours-nomask", "Ours w/o mask", "maps", losses.weighted_focal_proportion_loss, False,
               STAGE2),
        Method("lpi", "LPI loss", "maps", losses.interval_loss, True, STAGE2),
        Method("prop", "Prop", "maps", losses.proportion_loss, True, STAGE2),
        Method("wprop", "WProp", "maps", losses.weighted_proportion_loss, True, STAGE2),
        Method("wprop-listnet", "WProp + ListNet", "maps", losses.wprop_listnet_loss, True,
               STAGE2),
        Method("focalprop", "FocalProp", "maps", losses.focal_proportion_loss, True, STAGE2),
        Method("ours", "Ours", "maps", losses.weighted_focal_proportion_loss, True, STAGE2),
        Method("ours-cells", "Ours (cells)", "cells", losses.proportion_loss, True, CELLS),
        Method("ours-cells-focal", "Ours (cells, w. focal)", "cells", losses.weighted_focal_proportion_loss,
               True, CELLS),
        Method("ours-cells-count", "Ours (cells, count lik.)", "cells", losses.count_interval_likelihood,
               True, CELLS),
        Method("ours-cells-cnn", "Ours (cells, CNN)", "cells", losses.proportion_loss, True, CELL_PATCHES),
    )
}
"""Every Table 1 method, in the order of the table, then maskllp's cell-level method."""


def get_method(name: str) -> Method:
    """The registry entry called ``name`` (case-insensitive); InputError for an unknown name."""
    key = name.strip().lower()
    if key not in METHODS:
        raise InputError(None, f"unknown method {name!r} (known: {', '.join(METHODS)})", "method")
    return METHODS[key]


def parse_methods(text: str) -> list[Method]:
    """``"all"`` or a comma-separated list of names -> methods, in the order given, no repeats."""
    names = [t for t in (s.strip() for s in text.split(",")) if t]
    if not names:
        raise InputError(None, "no method given (names, comma-separated, or 'all')", "--methods")
    if any(n.lower() == "all" for n in names):
        return list(METHODS.values())
    out: list[Method] = []
    for n in names:
        m = get_method(n)
        if m not in out:
            out.append(m)
    return out


def method_of_folder(path: str | Path) -> Method:
    """The method a model folder was fitted as: a ``proportion`` folder names it; a ``stage1`` folder
    is the counting method (Det). InputError for anything else."""
    kinds = tuple(dict.fromkeys(m.fitting.folder_kind for m in METHODS.values()))
    kind, config = read_model_config(path, kinds)
    candidates = [m for m in METHODS.values() if m.fitting.folder_kind == kind]
    if len(candidates) == 1:
        return candidates[0]
    try:
        return get_method(str(config["method"]))
    except (KeyError, InputError) as e:
        raise InputError(path, f"broken {kind} model folder ({e})") from None


def stage1_folder(method: Method, path: Path, stage1_dir: Path | None) -> Path:
    """The stage-1 folder a mask-using model folder ``path`` predicts with: ``stage1_dir`` (the
    ``--stage1`` option) when given, else the ``stage1/`` it carries. InputError when missing."""
    if stage1_dir is not None:
        if not Path(stage1_dir).is_dir():
            raise InputError(stage1_dir, "stage-1 folder not found", "--stage1")
        return Path(stage1_dir)
    where = Path(path) / STAGE1_SUBFOLDER
    if not where.is_dir():
        raise InputError(path, f"method {method.name!r} needs a tumour mask but the model carries no "
                               "stage1/ folder (trained with oracle masks?); give --stage1 STAGE1_DIR")
    return where


def load_fitted(path: str | Path, device: str = "cpu", stage1_dir: str | Path | None = None,
                scheme: IntervalScheme | None = None) -> FittedMethod:
    """A fitted method from its model folder. ``stage1_dir`` replaces the stage 1 a stage-2 folder
    carries; ``scheme`` bins Det's counts (stage-2 folders carry their own)."""
    method = method_of_folder(path)
    device = str(inference_device(device))
    return method.fitting.load(method, Path(path), device, None if stage1_dir is None else Path(stage1_dir),
                               scheme or get_scheme())
