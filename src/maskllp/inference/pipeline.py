"""End-to-end prediction: a core of any size -> TPS estimate, its interval, and the evidence.

What a prediction model folder is:

* a stage-2 ``proportion`` folder (``maskllp train proportion``). A method that uses the tumour mask
  carries the stage-1 folder that made its training masks inside it, as ``stage1/``, so the folder
  is all ``predict`` needs;
* or a three-class ``stage1`` folder: the paper's Det baseline, which counts cells.

Per core: stage 1 runs tiled on the full-resolution image (bounded memory), the core is read at the
pyramid level that suits stage 2's input size and fitted into its square exactly as in training
(:func:`maskllp.proportion.cache.read_core`, :func:`maskllp.proportion.masks.stage1_core_mask`), and
stage 2 gives s_p, s_n and r_hat, or *undefined* when there is no tumour cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskllp.errors import InputError

STAGE1_SUBFOLDER = "stage1"


@dataclass
class CoreResult:
    """The prediction for one core, as written to ``<name>.tps.json`` and ``predictions.csv``."""

    image: str
    name: str
    method: str
    proportion: float | None
    """TPS estimate in [0, 1]; None = undefined (see ``note``)."""
    interval: str | None
    proportion_kind: str
    """``masked ratio`` (s_p / (s_p + s_n)), ``interval midpoint`` (Class, O-Reg) or ``cell count``
    (Det)."""
    s_p: float | None = None
    s_n: float | None = None
    cells: int | None = None
    tumour_cells: int | None = None
    tumour_area_fraction: float | None = None
    """Fraction of the core's pixels inside the tumour mask M."""
    mpp: float | None = None
    note: str | None = None
    label: str | None = None
    """The core's label, when predicting a cohort manifest that has one."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CoreEvidence:
    """What the estimate was computed from (for the figure): stage-2 input and maps."""

    image: np.ndarray | None
    """(S, S, 3) uint8: the core fitted into the network's square (white padding); None for Det."""
    mask: np.ndarray | None
    """(S, S) bool: the tumour mask M at the same size (all True for "w/o mask" methods)."""
    maps: np.ndarray | None
    """(2, S/8, S/8) float32 F_p, F_n; None for methods without maps."""
    cells: Any = None
    """``DetectedCells`` of stage 1 (level-0 coordinates), or None when stage 1 did not run."""


@dataclass
class Predictor:
    """A loaded prediction model: stage 2 (maps / class / ordinal) or Det, and stage 1 if needed."""

    method: Any
    """The ``maskllp.methods.Method`` registry entry."""
    scheme: Any
    proportion_model: Any = None
    stage1: Any = None
    counting: Any = None
    source: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", stage1_dir: str | Path | None = None,
             scheme: Any = None) -> Predictor:
        """Load a prediction model folder; ``stage1_dir`` replaces the stage 1 it carries.

        ``scheme`` (an ``IntervalScheme``) bins Det's counts; stage-2 folders carry their own.
        """
        from maskllp.inference.model_folder import load_model_folder
        from maskllp.inference.stage1 import STAGE1_KIND, Stage1Model
        from maskllp.methods import get_method
        from maskllp.proportion.model import MODEL_KIND, load_proportion_model

        model_dir = Path(model_dir)
        kind = load_model_folder(model_dir, (MODEL_KIND, STAGE1_KIND)).kind
        if kind == STAGE1_KIND:
            from maskllp.intervals import get_scheme
            from maskllp.proportion.counting import CountingModel

            counting = CountingModel.load(model_dir, scheme or get_scheme(), device=device)
            return cls(get_method("det"), counting.scheme, counting=counting, stage1=counting.stage1,
                       source=model_dir)
        model = load_proportion_model(model_dir).to(device)
        stage1 = None
        if model.method.uses_mask:
            where = Path(stage1_dir) if stage1_dir is not None else model_dir / STAGE1_SUBFOLDER
            if not where.is_dir():
                raise InputError(model_dir, f"method {model.method.name!r} needs a tumour mask but the "
                                            "model carries no stage1/ folder (trained with oracle masks?); "
                                            "give --stage1 STAGE1_DIR")
            stage1 = Stage1Model.load(where, device=device)
            if stage1.classifier is None:
                raise InputError(where, "a detector-only model gives no tumour mask (need stage1)")
        return cls(model.method, model.scheme, proportion_model=model, stage1=stage1, source=model_dir)

    @property
    def input_size(self) -> int | None:
        return None if self.proportion_model is None else self.proportion_model.input_size

    def predict(self, path: str | Path, mpp: float | None = None, name: str | None = None,
                want_maps: bool = True) -> tuple[CoreResult, CoreEvidence]:
        """Predict one core image (any size). ``mpp`` overrides the image's pixel size.

        ``want_maps``: also compute F_p, F_n for the figure (one more forward pass).
        """
        from maskllp.io.images import open_image

        path = Path(path)
        name = name or path.stem
        with open_image(path, mpp) as reader:
            cells = self.stage1.detect(reader) if self.stage1 is not None else None
            pixel = cells.mpp if cells is not None else reader.mpp
        if self.counting is not None:
            return self._counted(path, name, cells), CoreEvidence(None, None, None, cells)
        return self._estimated(path, name, mpp, cells, pixel, want_maps)

    def _counted(self, path: Path, name: str, cells: Any) -> CoreResult:
        from maskllp.detection.cells import count_proportion

        n_pos, n_neg, proportion = count_proportion(cells, self.stage1.mask.tumour_threshold)
        return CoreResult(
            str(path), name, self.method.name, proportion,
            None if proportion is None else self.scheme.names[self.scheme.index_of(proportion)],
            "cell count", float(n_pos), float(n_neg), len(cells), n_pos + n_neg, None, cells.mpp,
            None if proportion is not None else "no tumour cells detected: TPS undefined",
        )

    def _estimated(self, path: Path, name: str, mpp: float | None, cells: Any, pixel: float | None,
                   want_maps: bool) -> tuple[CoreResult, CoreEvidence]:
        from maskllp.proportion.cache import read_core
        from maskllp.proportion.data import place_on_square
        from maskllp.proportion.masks import stage1_core_mask

        model = self.proportion_model
        rgb, fit = read_core(path, mpp, model.input_size)
        image = place_on_square(rgb, fit, 255)
        if cells is not None:
            content = stage1_core_mask(self.stage1, cells, fit.content_shape)
        else:
            content = np.ones(fit.content_shape, dtype=bool)
        mask = place_on_square(content, fit, False)
        pred = model.predict_batch(image[None], mask[None])[0]
        kind = "masked ratio" if pred.s_p is not None else "interval midpoint"
        note = None
        if pred.proportion is None:
            note = "no tumour cells detected: TPS undefined" if cells is not None else "TPS undefined"
        n_tumour = None
        if cells is not None:
            n_tumour = int(cells.is_tumour(self.stage1.mask.tumour_threshold).sum())
        result = CoreResult(
            str(path), name, self.method.name, pred.proportion,
            None if pred.interval is None else self.scheme.names[pred.interval], kind,
            pred.s_p, pred.s_n, None if cells is None else len(cells), n_tumour,
            float(content.mean()) if cells is not None and content.size else None, pixel, note,
        )
        maps = model.maps(image, mask) if want_maps and self.method.head == "maps" else None
        return result, CoreEvidence(image, mask, maps, cells)


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
    overwrite: bool = False
    figures: bool = True


@dataclass
class _Core:
    path: Path
    name: str
    mpp: float | None
    label: str | None = None


def _cores_of(run: PredictRun, config: Any) -> list[_Core]:
    """The cores to predict, every input checked before any work (all problems at once)."""
    from maskllp.errors import ProblemList
    from maskllp.inference.stage1 import unique_stems
    from maskllp.io.images import open_image

    if len(run.inputs) == 1 and run.inputs[0].suffix.lower() == ".csv":
        from maskllp.io.manifest import read_cohort

        cohort = read_cohort(run.inputs[0], config.intervals.build(), mapping=config.classes)
        paths = [e.image for e in cohort.entries]
        cores = [_Core(e.image, "", run.mpp or e.mpp, e.label_text) for e in cohort.entries]
    else:
        paths = list(run.inputs)
        cores = [_Core(p, "", run.mpp) for p in paths]
    if not cores:
        raise InputError(None, "no image to predict", "IMAGE")
    for core, stem in zip(cores, unique_stems(paths), strict=True):
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


PREDICTION_COLUMNS = ("name", "image", "method", "proportion", "percent", "interval", "proportion_kind",
                      "s_p", "s_n", "cells", "tumour_cells", "tumour_area_fraction", "mpp", "label", "note")


def predictions_csv_text(results: list[CoreResult]) -> str:
    """One CSV row per core (empty cells for undefined values)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for r in results:
        row = r.to_json()
        row["percent"] = None if r.proportion is None else round(100 * r.proportion, 2)
        writer.writerow(["" if row[c] is None else _fmt(row[c]) for c in PREDICTION_COLUMNS])
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def predict_cores(run: PredictRun, config: Any, progress: Any = None) -> list[CoreResult]:
    """``maskllp predict``: every core's JSON, figure and cells, ``predictions.csv``, ``report.html``
    and ``config.yaml`` in ``run.out_dir``, which appears only when every core succeeded."""
    import json

    from maskllp.config import save_config
    from maskllp.io.atomic import staged_directory, write_text_atomic
    from maskllp.report.cohort_report import write_cohort_report

    cores = _cores_of(run, config)
    predictor = Predictor.load(run.model_dir, run.device, run.stage1_dir, config.intervals.build())
    results: list[CoreResult] = []
    with staged_directory(run.out_dir, run.overwrite) as stage:
        for i, core in enumerate(cores):
            result, evidence = predictor.predict(core.path, core.mpp, core.name, run.figures)
            result.label = core.label
            results.append(result)
            write_text_atomic(stage / f"{core.name}.tps.json", json.dumps(result.to_json(), indent=2) + "\n")
            if evidence.cells is not None:
                _write_cells(predictor, evidence.cells, core, stage)
            if run.figures and evidence.image is not None:
                _write_figure(predictor, result, evidence, stage / f"{core.name}.figure.png")
            if progress is not None:
                progress(i + 1, len(cores), result)
        write_text_atomic(stage / "predictions.csv", predictions_csv_text(results))
        write_cohort_report(stage / "report.html", results, predictor.scheme, str(run.model_dir))
        save_config(config, stage / "config.yaml")
    return results


def _write_cells(predictor: Predictor, cells: Any, core: _Core, stage: Path) -> None:
    """Stage-1 cells as QuPath detections, scores as measurements."""
    from maskllp.io.annotations import write_detections_geojson

    classes = cells.cell_classes(predictor.stage1.mask.tumour_threshold)
    write_detections_geojson(stage / f"{core.name}.cells.geojson", cells.yx, classes, cells.measurements())


def _write_figure(predictor: Predictor, result: CoreResult, evidence: CoreEvidence, path: Path) -> None:
    from maskllp.report.overlay import proportion_figure, summary_figure

    tps = "undefined" if result.proportion is None else f"{100 * result.proportion:.1f} %"
    title = f"{result.name}: {predictor.method.display_name} — TPS {tps} ({result.interval or 'no interval'})"
    if evidence.maps is None:
        summary_figure(evidence.image, evidence.mask, title, path)
    else:
        proportion_figure(evidence.image, evidence.mask, evidence.maps[0], evidence.maps[1], title, path)
