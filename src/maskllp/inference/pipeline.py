"""End-to-end prediction: a core of any size -> TPS estimate, its interval, and the evidence.

What a prediction model folder is:

* a stage-2 ``proportion`` folder (``maskllp train proportion``). A method that uses the tumour mask
  carries the stage-1 folder that made its training masks inside it, as ``stage1/``, so the folder
  is all ``predict`` needs;
* or a three-class ``stage1`` folder: the paper's Det baseline, which counts cells.

Per core: stage 1 runs tiled on the full-resolution image (bounded memory), then the fitted method of
the registry (:mod:`maskllp.methods`) makes its estimate from the image and the cells: stage 2 reads
the core and builds its input exactly as in training and gives s_p, s_n and r_hat, or *undefined*
when there is no tumour cell; Det counts the cells.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from maskllp.backbones import inference_autocast, inference_device, inference_devices
from maskllp.classes import CellClass, ClassMapping
from maskllp.config import Config, save_config
from maskllp.config.review import ReviewConfig
from maskllp.detection.cells import DetectedCells
from maskllp.detection.model import Stage1Model
from maskllp.errors import InputError, NonFiniteOutputError, ProblemList
from maskllp.inference.detect import write_mask_geojson
from maskllp.inference.stain_check import core_stain_vectors, load_stain_range
from maskllp.intervals import IntervalScheme
from maskllp.io.annotations import write_detections_geojson
from maskllp.io.atomic import staged_directory, write_text_atomic
from maskllp.io.images import image_stems, open_image, write_image
from maskllp.io.manifest import images_or_cohort
from maskllp.methods import CoreEstimate, FittedMethod, Method, load_fitted
from maskllp.predictions import PredictionRow, predictions_csv
from maskllp.progress import terminal_progress
from maskllp.proportion.uncertainty import RANGE_LEVEL, straddled_cut_offs
from maskllp.report.cohort_report import write_cohort_report
from maskllp.report.overlay import (
    CloseUp,
    cell_calls_figure,
    densest_window,
    proportion_figure,
    summary_figure,
)
from maskllp.report.preview import draw_preview, preview_scale, read_preview
from maskllp.stains import StainRange


@dataclass
class Predictor:
    """A loaded prediction model: a fitted method of the registry and the stage 1 it runs first."""

    fitted: FittedMethod
    source: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where the networks run (where :meth:`load` put them)."""
    precision: str = "auto"
    """``auto``, ``32`` or ``bf16`` (:class:`~maskllp.config.inference.InferenceConfig`)."""
    views: int = 1
    """Flipped / rotated views of each core a stage-2 network averages over (``[inference] views``)."""
    stain_range: StainRange | None = None
    """The stains of the model's training cores (its folder's ``stain-range.json``; for Det, a
    three-class stage-1 folder, its annotated cores); None: not recorded (a folder saved before it
    was), and cores are not checked against it."""

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", stage1_dir: str | Path | None = None,
             scheme: IntervalScheme | None = None, precision: str = "auto", views: int = 1) -> Predictor:
        """Load a prediction model folder; ``stage1_dir`` replaces the stage 1 it carries.

        ``scheme`` bins Det's counts; stage-2 folders carry their own.
        """
        fitted = load_fitted(model_dir, device, stage1_dir, scheme)
        return cls(fitted, Path(model_dir), inference_device(device), precision, views,
                   load_stain_range(Path(model_dir)))

    @property
    def method(self) -> Method:
        return self.fitted.method

    @property
    def scheme(self) -> IntervalScheme:
        return self.fitted.scheme

    @property
    def stage1(self) -> Stage1Model | None:
        return self.fitted.stage1

    def predict(self, path: str | Path, mpp: float | None = None, name: str | None = None,
                want_maps: bool = True, review: ReviewConfig | None = None
                ) -> tuple[PredictionRow, CoreEstimate, DetectedCells | None]:
        """Predict one core image (any size). ``mpp`` overrides the image's pixel size.

        ``want_maps``: also compute F_p, F_n for the figure (one more forward pass; a map method
        with cells computes them anyway, for the cells' positive / negative calls). Returns the
        result row, what the estimate was computed from, and the cells stage 1 found (None when the
        method runs no stage 1).
        """
        path = Path(path)
        name = name or path.stem
        stage1 = self.stage1
        try:
            with inference_autocast(self.device, self.precision):
                with open_image(path, mpp) as reader:
                    cells = self.fitted.detect_cells(reader)
                    pixel = cells.mpp if cells is not None else reader.mpp
                    stains = core_stain_vectors(reader) if self.stain_range is not None else None
                estimate = self.fitted.estimate(path, mpp, cells, want_maps, self.views)
        except NonFiniteOutputError as e:
            raise InputError(self.source, f"{e}; on {path.name}") from None
        pred = estimate.prediction
        note = None
        if pred.proportion is None:
            note = "no tumour cells detected: TPS undefined" if cells is not None else "TPS undefined"
        n_tumour = None
        if cells is not None and stage1 is not None:
            n_tumour = int(cells.is_tumour(stage1.mask.tumour_threshold).sum())
        result = PredictionRow(
            name=name, image=str(path), method=self.method.name, proportion=pred.proportion,
            interval=None if pred.interval is None else self.scheme.names[pred.interval],
            proportion_kind=estimate.kind, s_p=pred.s_p, s_n=pred.s_n,
            cells=None if cells is None else len(cells), tumour_cells=n_tumour,
            tumour_area_fraction=estimate.tumour_area_fraction, mpp=pixel, note=note,
        )
        if estimate.tps_range is not None and pred.proportion is not None:
            result.proportion_low, result.proportion_high = estimate.tps_range
        review = review or ReviewConfig()
        unlike = (self.stain_range.departures(stains, review.stain_margin_deg, review.stain_od_margin)
                  if self.stain_range is not None and stains is not None else [])
        result.flags = "; ".join(review_flags(result, cells, review, unlike)) or None
        return result, estimate, cells


def review_flags(result: PredictionRow, cells: DetectedCells | None, review: ReviewConfig,
                 stain_departures: list[str] | None = None) -> list[str]:
    """Why a pathologist should look at this core: its TPS interval lies across a clinical cut-off,
    too few tumour cells for a TPS, no DAB signal at all (from the cells' stain measurements, when
    stage 1 measured them), stains unlike the training cores' (``stain_departures``, from
    :meth:`~maskllp.stains.StainRange.departures`)."""
    flags = []
    if result.proportion_low is not None and result.proportion_high is not None:
        for cut in straddled_cut_offs(result.proportion_low, result.proportion_high):
            flags.append(f"{int(100 * RANGE_LEVEL)} % range of the TPS {100 * result.proportion_low:.1f}-"
                         f"{100 * result.proportion_high:.1f} % lies across the {100 * cut:g} % cut-off")
    if result.tumour_cells is not None and result.tumour_cells < review.min_tumour_cells:
        flags.append(f"fewer than {review.min_tumour_cells} tumour cells ({result.tumour_cells})")
    if cells is not None and cells.measurements is not None and len(cells):
        ring = cells.geojson_measurements()["Cell: DAB OD max ring p90"]
        stained = float(np.mean(ring > review.stained_dab_od))
        if stained < review.min_stained_fraction:
            flags.append(f"no DAB signal ({100 * stained:.2f} % of cells stained): not an IHC stain, or a "
                         "failed one?")
    if stain_departures:
        flags.append("stain outside the training range: " + ", ".join(stain_departures))
    return flags


# ====================================================================================== runs
@dataclass
class PredictRun:
    """What ``maskllp predict`` was asked to do."""

    model_dir: Path
    inputs: list[Path]
    """Core images, or one cohort manifest (``.csv``)."""
    out_dir: Path
    mpp: float | None = None
    stage1_dir: Path | None = None
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:1``, or several GPUs ``cuda:0,1`` (one process each)."""
    overwrite: bool = False
    figures: bool = True
    devices: int | None = None
    """How many devices of ``device``'s kind, one process each (None: the one ``device`` names)."""


@dataclass
class CoreToPredict:
    """One core of a ``predict`` run: its image, unique name, pixel size and what the manifest says."""

    path: Path
    name: str
    mpp: float | None
    label: str | None = None
    patient: str | None = None
    truth: float | None = None


def _cores_of(run: PredictRun, config: Config) -> list[CoreToPredict]:
    """The cores to predict, every input checked before any work (all problems at once)."""
    given = images_or_cohort(run.inputs, config.intervals.build(), config.classes)
    paths = [p for p, _ in given]
    cores = [CoreToPredict(p, "", run.mpp) if e is None else
             CoreToPredict(p, "", run.mpp if run.mpp is not None else e.mpp, e.label_text, e.patient,
                   None if e.label is None else e.label.proportion) for p, e in given]
    if not cores:
        raise InputError(None, "no image to predict", "IMAGE")
    for core, stem in zip(cores, image_stems(paths), strict=True):
        core.name = stem
    problems = []
    for core in cores:
        try:
            with open_image(core.path, core.mpp):
                pass
        except InputError as e:
            problems.append(e)
    if problems:
        raise ProblemList(problems, f"{len(problems)} of {len(cores)} image(s) cannot be read")
    return cores


def predict_cores(run: PredictRun, config: Config,
                  progress: Callable[[int, int, PredictionRow], None] | None = None) -> list[PredictionRow]:
    """``maskllp predict``: every core's JSON, figure and cells, ``predictions.csv``, ``report.html``
    and ``config.yaml`` in ``run.out_dir``, which appears only when every core succeeded.

    ``run.device`` naming several devices (``cuda:0,1``; ``cpu`` with ``run.devices`` 2) predicts
    through Lightning's predict loop, one process per device, each core once
    (:mod:`maskllp.inference.distributed`); the outputs are the same as one process writes, in
    manifest order."""
    devices = inference_devices(run.device, run.devices)
    cores = _cores_of(run, config)
    predictor = Predictor.load(run.model_dir, devices[0] if len(devices) == 1 else "cpu", run.stage1_dir,
                               config.intervals.build(), config.inference.precision, config.inference.views)
    inputs = [run.model_dir, run.stage1_dir, *run.inputs, *(c.path for c in cores)]
    with staged_directory(run.out_dir, run.overwrite, inputs) as stage:
        if len(devices) > 1:
            from maskllp.inference.distributed import predict_on_devices

            results = predict_on_devices(run, config, cores, devices, stage)
        else:
            results = []
            for i, core in enumerate(cores):
                results.append(predict_core(predictor, core, run.figures, config, stage))
                if progress is not None:
                    progress(i + 1, len(cores), results[-1])
        write_text_atomic(stage / "predictions.csv", predictions_csv(results))
        write_cohort_report(stage / "report.html", results, predictor.scheme, str(run.model_dir))
        save_config(config, stage / "config.yaml")
    return results


def progress_line(i: int, n: int, row: PredictionRow) -> str:
    """The line ``predict`` prints when core ``i`` of ``n`` is done."""
    tps = "undefined" if row.proportion is None else f"{100 * row.proportion:.1f} %"
    return (f"[{i}/{n}] {row.name}: TPS {tps} ({row.interval or 'no interval'})"
            + (f"; {row.note}" if row.note else ""))


def predict_progress(echo: Callable[[str], None], stream: TextIO | None = None
                     ) -> Callable[[int, int, PredictionRow], None]:
    """``predict``'s progress over cores: a bar redrawn in place when ``stream`` (standard output by
    default) is a terminal (:func:`maskllp.progress.terminal_progress`); otherwise (a log file, a
    pipe) the :func:`progress_line` of each core as it is done."""
    bar = terminal_progress("predict", echo, stream)

    def report(i: int, n: int, row: PredictionRow) -> None:
        if bar.bar_stream is not None:
            bar(i, n)
        else:
            echo(progress_line(i, n, row))

    return report


def predict_core(predictor: Predictor, core: CoreToPredict, figures: bool, config: Config,
                 stage: Path) -> PredictionRow:
    """Predict one core and write its files into ``stage`` (its JSON, cells and mask GeoJSON, and with
    ``figures`` its preview and figure); return its row."""
    result, estimate, cells = predictor.predict(core.path, core.mpp, core.name, figures, config.review)
    result.label, result.patient, result.truth = core.label, core.patient, core.truth
    if cells is not None and predictor.stage1 is not None:
        classes = called_classes(predictor.stage1, cells, estimate)
        if estimate.positivity in ("cell method", "counted"):  # the TPS is their count
            result.positive_cells = int((classes == CellClass.POSITIVE_TUMOUR).sum())
            result.negative_cells = int((classes == CellClass.NEGATIVE_TUMOUR).sum())
        _write_cells(predictor.stage1, cells, classes, estimate, core, stage, config.classes)
        if figures:
            preview, scale = _write_preview(predictor.stage1, cells, classes, core,
                                            stage / f"{core.name}.preview.png")
            if estimate.image is None and estimate.cell_positive is not None:  # a cell-level method
                close_up = _close_up(core, cells, classes, (1 / scale, 1 / scale, 0.0, 0.0),
                                     estimate.cell_positive)
                cell_calls_figure(preview, close_up, _figure_title(predictor, result),
                                  stage / f"{core.name}.figure.png")
    write_text_atomic(stage / f"{core.name}.tps.json", json.dumps(result.to_json(), indent=2) + "\n")
    if figures and estimate.image is not None:
        close_up = None
        if cells is not None and estimate.fit is not None and predictor.stage1 is not None \
                and estimate.maps is not None:  # only the maps figure shows a close-up
            shape = (cells.shape[0], cells.shape[1])
            sy, sx = estimate.fit.level0_scale(shape)
            close_up = _close_up(core, cells, classes, (sy, sx, estimate.fit.top, estimate.fit.left))
        _write_figure(predictor, result, estimate, stage / f"{core.name}.figure.png", close_up)
    return result


POSITIVITY_NOTES = {
    "cell method": "each tumour cell's call by the cell-level method; counting them gives the TPS",
    "counted": "the three-class classifier's call (Det); counting them gives the TPS",
    "maps": "F_p / (F_p + F_n) of the map under the cell; the TPS is the masked sums' ratio, not this count",
}
"""What a cells GeoJSON's positive / negative classes mean, by where they come from."""


def _write_cells(stage1: Stage1Model, cells: DetectedCells, classes: np.ndarray, estimate: CoreEstimate,
                 core: CoreToPredict, stage: Path, mapping: ClassMapping) -> None:
    """Stage-1 cells as QuPath detections: ``Tumor: Positive`` / ``Tumor: Negative`` by the method's
    call on each tumour cell where it makes one (else ``Tumor``), ``Stroma`` for the others (or
    ``mapping``'s written names); scores and optical densities as measurements; where the calls
    come from in each cell's metadata. ``classes``: :func:`called_classes`."""
    measurements = cells.geojson_measurements()
    metadata = None
    if estimate.cell_positive is not None:
        measurements["Positive probability"] = estimate.cell_positive
        metadata = {"Positivity": POSITIVITY_NOTES[estimate.positivity or "maps"]}
    write_detections_geojson(stage / f"{core.name}.cells.geojson", cells.yx, classes, measurements,
                             metadata, mapping)
    write_mask_geojson(stage / f"{core.name}.mask.geojson", stage1, cells, mapping)


def called_classes(stage1: Stage1Model, cells: DetectedCells, estimate: CoreEstimate) -> np.ndarray:
    """(N,) CellClass of each cell as ``predict`` reports it: ``POSITIVE_TUMOUR`` / ``NEGATIVE_TUMOUR``
    by the method's call (p(positive) > 0.5) where it makes one, ``NON_TUMOUR`` for the others;
    stage 1's own classes when the method says nothing per cell."""
    if estimate.cell_positive is None:
        return cells.cell_classes(stage1.mask.tumour_threshold)
    p = estimate.cell_positive
    called = np.where(p > 0.5, CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR)
    return np.where(~np.isnan(p), called, CellClass.NON_TUMOUR).astype(np.int8)


PREVIEW_SIDE = 512
"""Longer side of the per-core preview ``predict`` writes (and the report's thumbnails)."""


def _write_preview(stage1: Stage1Model, cells: DetectedCells, classes: np.ndarray, core: CoreToPredict,
                   path: Path) -> tuple[np.ndarray, float]:
    """The core reduced to at most :data:`PREVIEW_SIDE` px, the tumour mask tinted, each cell a dot in
    the colour of its call (QuPath's: positive red, negative blue, stroma green); returns the drawn
    preview and its scale (level-0 pixels per preview pixel)."""
    with open_image(core.path, core.mpp) as reader:
        scale = preview_scale(reader.shape, PREVIEW_SIDE)
        small = read_preview(reader, scale)
    mask = stage1.tumour_mask(cells, downsample=scale)[: small.shape[0], : small.shape[1]]
    drawn = draw_preview(small, scale, cells.yx, classes, mask)
    write_image(path, drawn)
    return drawn, scale


CLOSE_UP_UM = 120.0
"""Width (microns) of the figure's full-resolution close-up (a few dozen cells)."""


def _close_up(core: CoreToPredict, cells: DetectedCells, classes: np.ndarray,
              to_panel: tuple[float, float, float, float], positive: np.ndarray | None = None) -> CloseUp:
    """The window of :data:`CLOSE_UP_UM` at level 0 that holds the most tumour cells (the most cells
    when there is none), read at full resolution, with its cells (and their ``positive``, (N,)
    p(positive), when given) and where it lies on the whole-core panel: ``to_panel`` = (sy, sx, oy,
    ox), panel pixel = o + s * level-0 pixel."""
    with open_image(core.path, core.mpp) as reader:
        shape, mpp = reader.shape, reader.mpp
        side = max(64, round(CLOSE_UP_UM / mpp)) if mpp else 256
        tumour = classes != CellClass.NON_TUMOUR
        top, left = densest_window(cells.yx[tumour] if tumour.any() else cells.yx, shape, side)
        height, width = min(side, shape[0]), min(side, shape[1])
        rgb = reader.read_window(top, left, height, width)
    yx = cells.yx - np.array([top, left], np.float64)
    inside = (yx[:, 0] >= 0) & (yx[:, 0] < height) & (yx[:, 1] >= 0) & (yx[:, 1] < width)
    sy, sx, oy, ox = to_panel
    box = (oy + top * sy, ox + left * sx, oy + (top + height) * sy, ox + (left + width) * sx)
    return CloseUp(rgb, yx[inside], classes[inside], box, mpp,
                   None if positive is None else np.asarray(positive)[inside])


def _figure_title(predictor: Predictor, result: PredictionRow) -> str:
    tps = "undefined" if result.proportion is None else f"{100 * result.proportion:.1f} %"
    reach = ("" if result.proportion_low is None or result.proportion_high is None
             else f", 90 % range {100 * result.proportion_low:.1f}-{100 * result.proportion_high:.1f} %")
    interval = result.interval or "no interval"
    return f"{result.name}: {predictor.method.display_name} — TPS {tps}{reach} ({interval})"


def _write_figure(predictor: Predictor, result: PredictionRow, evidence: CoreEstimate, path: Path,
                  close_up: CloseUp | None = None) -> None:
    title = _figure_title(predictor, result)
    if evidence.maps is None:
        summary_figure(evidence.image, evidence.mask, title, path)
    else:
        proportion_figure(evidence.image, evidence.mask, evidence.maps[0], evidence.maps[1], title, path,
                          close_up)
