"""Cross-validation of Table 1 methods on a cohort: ``maskllp cv``.

Folds come from scikit-learn's ``StratifiedGroupKFold`` (strata: the labelled interval; groups: the
patient, so no patient has cores on both sides; shuffled with ``cv.seed``); every method sees the
same folds. For each method and fold a model is trained on the other folds (with its own validation
split for early stopping) and predicts the held-out cores. Stage-2 inputs (fitted cores and tumour
masks) are computed once and cached with the cohort (:mod:`maskllp.training.inputs`), then shared by
every method and fold. Every method is fitted and predicts through its registry entry
(:mod:`maskllp.methods`). Outputs under ``RUN_DIR`` (each file written atomically)::

    predictions.csv        one row per method and core (maskllp.predictions.PREDICTION_COLUMNS)
    table.txt/.csv/.md     the table in the paper's layout, with its footer
    confusion/<method>.csv rows: labelled interval, columns: predicted interval and "undefined"
    metrics.json           every number of the table, per-fold mF1, counts
    folds.csv              image, patient, label, fold
    config.yaml            the resolved configuration
    training/<method>/fold<k>/logs/   Lightning CSV logs; models/ with ``cv.save_models``
    progress/              run.json (what the run is) and <method>/fold<k>.json (each finished fold)

A run that is killed keeps every (method, fold) it finished in ``progress/``; ``maskllp cv ...
--resume`` with the same cohort, settings and folds fits only the rest. Each fold's fit is seeded
on its own (``trainer.seed``), so the resumed run's results equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from maskllp.config import Config, save_config
from maskllp.errors import InputError, NonFiniteOutputError
from maskllp.evaluation.detection_metrics import PositivityScores, positivity_scores
from maskllp.evaluation.metrics import interval_metrics, proportion_metrics, range_coverage
from maskllp.evaluation.table import (
    MethodScores,
    format_csv,
    format_markdown,
    format_text,
    table_cells,
    table_footer,
)
from maskllp.intervals import IntervalScheme
from maskllp.io.atomic import check_output_dir, mark_output, output_lock, write_text_atomic
from maskllp.io.files import read_csv_rows
from maskllp.io.images import image_stems, open_image
from maskllp.io.manifest import Cohort, CohortEntry, read_cohort
from maskllp.methods import FitSetup, Method
from maskllp.predictions import UNDEFINED, PredictionRow, ProportionPrediction, predictions_csv
from maskllp.progress import ProgressLines
from maskllp.proportion.inputs import InputSpec, Stage2Item
from maskllp.synth.truth import read_truth, read_truth_cells
from maskllp.training.inputs import (
    ItemCache,
    build_mask_source,
    default_cache_root,
    prepare_items,
    torch_device,
)
from maskllp.training.trainer import single_device


@dataclass(frozen=True)
class CrossValidationRequest:
    """What ``maskllp cv`` was asked to do."""

    cohort: Path
    methods: list[Method]
    out_dir: Path
    stage1: Path | None = None
    """Stage-1 model folder for the tumour masks of the masked methods."""
    mask_source: str | None = None
    """``stage1`` (default when ``stage1`` is given), ``truth`` (oracle masks from ``truth``)."""
    truth: Path | None = None
    """Synthetic truth CSV: exact proportions (and cells, for oracle masks)."""
    det_model: Path | None = None
    """Trained three-class stage-1 model folder for Det, used for every fold; unset: a three-class
    classifier is trained per fold on the annotated training cores, over the ``stage1`` detector."""
    overwrite: bool = False
    folds_file: Path | None = None
    """CSV with columns ``image`` and ``fold`` (0, 1, ...; e.g. a previous run's ``folds.csv``, or
    folds by site or scanner): these folds instead of stratified ones."""
    resume: bool = False
    """Continue the killed run in ``out_dir``: keep the (method, fold) pairs it finished."""


@dataclass(frozen=True)
class FoldPrediction:
    """One held-out core's prediction by one method."""

    method: Method
    fold: int
    item: Stage2Item
    name: str
    """The core's name in ``predictions.csv`` (its image's stem, made unique)."""
    prediction: ProportionPrediction

    def row(self, scheme: IntervalScheme) -> PredictionRow:
        it, pr, entry = self.item, self.prediction, self.item.entry
        return PredictionRow(
            name=self.name, image=str(entry.image) if entry is not None else it.name,
            method=self.method.name, proportion=pr.proportion,
            interval=None if pr.interval is None else scheme.names[pr.interval],
            proportion_kind=self.method.proportion_kind, s_p=pr.s_p, s_n=pr.s_n,
            label=entry.label_text if entry is not None else scheme.names[it.interval],
            patient=it.patient, fold=self.fold, truth=it.proportion,
            proportion_low=None if pr.tps_range is None else pr.tps_range[0],
            proportion_high=None if pr.tps_range is None else pr.tps_range[1],
        )


# ------------------------------------------------------------------------------------------ folds
def make_folds(intervals: Sequence[int], patients: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """(N,) int fold index of each core: stratified by interval, grouped by patient, seeded.

    Raises ValueError when there are fewer patients than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.unique(np.asarray(patients), return_inverse=True)[1]
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"{len(np.unique(groups))} patients cannot make {n_folds} folds")
    folds = np.full(len(intervals), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(intervals)), np.asarray(intervals), groups)):
        folds[test] = k
    return folds


def read_folds(path: Path, names: Sequence[str], images: Sequence[Path]) -> np.ndarray:
    """(N,) int fold of each core from a CSV with columns ``image`` and ``fold``.

    ``image`` names a core by its name in ``predictions.csv`` / ``folds.csv`` (``names``), its
    file name, or its path as the manifest gives it (``images``). Every core needs a fold; folds are
    0, 1, ... with none empty. InputError naming the file and the first problem otherwise.
    """
    rows = read_csv_rows(path, ("image", "fold"))
    by_key: dict[str, int] = {}
    for line, row in rows:
        try:
            fold = int(row["fold"])
        except ValueError:
            raise InputError(path, f"line {line}: fold {row['fold']!r} is not a whole number") from None
        if fold < 0:
            raise InputError(path, f"line {line}: fold {fold} is negative")
        by_key[row["image"].strip()] = fold
    folds = np.full(len(names), -1, dtype=np.int64)
    for i, (name, image) in enumerate(zip(names, images, strict=True)):
        for key in (name, image.name, str(image)):
            if key in by_key:
                folds[i] = by_key[key]
                break
        else:
            raise InputError(path, f"no fold for core {name} ({image})")
    present = set(folds.tolist())
    if len(present) < 2 or present != set(range(max(present) + 1)):
        raise InputError(path, f"folds must be 0, 1, ... with at least two and none empty, got "
                               f"{sorted(present)}")
    return folds


def training_subset(train: np.ndarray, cap: int | None, seed: int, fold: int) -> np.ndarray:
    """The training cores of ``fold`` a method sees: all of ``train`` (indices), or ``cap`` of them
    (a seeded permutation's head, so a smaller cap's subset lies inside a larger one's)."""
    if cap is None or cap >= len(train):
        return train
    order = np.random.default_rng([seed, fold]).permutation(len(train))
    return np.sort(train[order[:cap]])


# ------------------------------------------------------------------------------------------ truth
def read_exact_truth(path: Path) -> dict[str, float | None]:
    """Image file name -> exact TPS (None: no tumour cell) from a synthetic truth CSV."""
    return {name: t.tps for name, t in read_truth(path).items()}


# ------------------------------------------------------------------------------------------ setup
def labelled_entries(cohort: Cohort, echo: Callable[[str], None]) -> list[CohortEntry]:
    """The cohort's labelled cores; unlabelled ones (no TPS recorded) are left out, and said so."""
    entries = [e for e in cohort.entries if e.label is not None]
    left_out = [e.line for e in cohort.entries if e.label is None]
    if left_out:
        lines = ", ".join(map(str, left_out[:10])) + (" ..." if len(left_out) > 10 else "")
        echo(f"{len(left_out)} core(s) without a label left out of cross-validation (lines {lines})")
    if not entries:
        raise InputError(cohort.path, "no labelled core: cross-validation needs labels")
    return entries


# ------------------------------------------------------------------------------------------ run
TrueCells = dict[str, tuple[np.ndarray, np.ndarray]]
"""Image file name -> (true cell yx (M, 2) level 0, their CellClass values), from synthetic truth."""


def read_true_cells(path: Path, names: Sequence[str]) -> TrueCells:
    """Every true cell of the named cores of a synthetic truth CSV (names without truth left out)."""
    truth = read_truth(path)
    out: TrueCells = {}
    for name in names:
        if name in truth:
            cells = read_truth_cells(truth[name].cells_path)
            out[name] = (cells.yx, cells.classes)
    return out


class FoldProgress:
    """``RUN_DIR/progress``: what a run is (``run.json``) and the results of each (method, fold) it
    finished (``<method>/fold<k>.json``), so that a killed run resumes where it stopped."""

    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir / "progress"

    def check_same_run(self, identity: dict[str, object], resume: bool, out_dir: Path) -> None:
        """Write ``run.json``; with ``resume``, first check that the run in ``out_dir`` is this one."""
        path = self.root / "run.json"
        if resume:
            try:
                before = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise InputError(out_dir, "--resume: no interrupted cv run here (no progress/run.json)",
                                 "--out") from None
            changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
            if changed:
                raise InputError(out_dir, "--resume: the run here was made with other inputs or settings "
                                          f"(differs in: {', '.join(changed)}); rerun without --resume "
                                          "(with --overwrite) or choose another --out", "--out")
        write_text_atomic(path, json.dumps(identity, indent=1, sort_keys=True) + "\n")

    def _path(self, method: Method, fold: int) -> Path:
        return self.root / method.name / f"fold{fold}.json"

    def save(self, method: Method, fold: int, test: np.ndarray, out: Sequence[ProportionPrediction],
             note: str, cells: PositivityScores | None) -> None:
        data = {"test": [int(i) for i in test],
                "predictions": [[p.proportion, p.interval, p.s_p, p.s_n, *(p.tps_range or (None, None))]
                                for p in out],
                "note": note, "cells": None if cells is None else [cells.tp, cells.fp, cells.fn, cells.tn]}
        write_text_atomic(self._path(method, fold), json.dumps(data) + "\n")

    def load(self, method: Method, fold: int, test: np.ndarray
             ) -> tuple[list[ProportionPrediction], str, PositivityScores | None] | None:
        """A finished fold's (predictions, note, cell scores), or None when it did not finish."""
        path = self._path(method, fold)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["test"] != [int(i) for i in test]:
            raise InputError(path, "holds other held-out cores than this fold: rerun without --resume")
        preds = [ProportionPrediction(*row[:4], tps_range=None if len(row) < 6 or row[4] is None
                                      else (float(row[4]), float(row[5])))
                 for row in data["predictions"]]
        cells = None if data["cells"] is None else PositivityScores(*data["cells"])
        return preds, data["note"], cells


def _add(total: PositivityScores | None, more: PositivityScores | None) -> PositivityScores | None:
    return more if total is None else total if more is None else total + more


def _train_and_predict(method: Method, items: list[Stage2Item], names: list[str], folds: np.ndarray,
                       setup: FitSetup, config: Config, out_dir: Path, echo: Callable[[str], None],
                       true_cells: TrueCells | None = None
                       ) -> tuple[list[FoldPrediction], PositivityScores | None]:
    """Out-of-fold predictions of one method for every core (``names``: the cores' names) and, for a
    cell-level method with ``true_cells``, its pooled per-cell positive / negative calls. Folds
    finished by an interrupted run (``out_dir/progress``) are taken from it."""
    preds: list[FoldPrediction] = []
    cell_scores: PositivityScores | None = None
    progress = FoldProgress(out_dir)
    for k in range(int(folds.max()) + 1):
        test = np.flatnonzero(folds == k)
        done = progress.load(method, k, test)
        if done is not None:
            out, note, fold_cells = done
            preds += [FoldPrediction(method, k, items[i], names[i], p)
                      for i, p in zip(test, out, strict=True)]
            cell_scores = _add(cell_scores, fold_cells)
            echo(f"  {method.name} fold {k}: {len(test)} cores, kept from the interrupted run{note}")
            continue
        available = np.flatnonzero(folds != k)
        subset = training_subset(available, config.cv.train_cores, config.cv.seed, k)
        train = [items[i] for i in subset]
        work = out_dir / "training" / method.name / f"fold{k}"
        shutil.rmtree(work, ignore_errors=True)  # what a killed fit left
        fitted = method.fit(train, setup, config, work)
        if config.cv.save_models:
            fitted.save(out_dir / "models" / f"{method.name}-fold{k}")
        fitted.to(torch_device(config.trainer))
        try:
            out = fitted.predict_items([items[i] for i in test], config.proportion.batch_size,
                                       config.inference.views)
        except NonFiniteOutputError as e:
            raise NonFiniteOutputError(f"{method.name}, fold {k}: {e}; lower proportion.lr?") from None
        s = fitted.summary
        note = "" if s is None else (
            f"; trained on {s.n_train} (+{s.n_val} validation) cores"
            + (f" of {len(available)}" if len(subset) < len(available) else "")
            + f", best epoch {s.best_epoch}"
            + s.refit_note()
            + (f", {s.n_skipped} left out (empty mask)" if s.n_skipped else ""))
        preds += [FoldPrediction(method, k, items[i], names[i], p) for i, p in zip(test, out, strict=True)]
        fold_cells: PositivityScores | None = None
        if true_cells is not None:
            calls = fitted.positive_calls([items[i] for i in test])
            for i, c in zip(test, calls, strict=True):
                if c is None or items[i].name not in true_cells or items[i].entry is None:
                    continue
                with open_image(items[i].entry.image, items[i].entry.mpp) as reader:
                    mpp = reader.mpp
                radius = config.detector.match_radius_um / (mpp or 1.0)
                score = positivity_scores(c.yx, c.positive > 0.5, *true_cells[items[i].name], radius)
                fold_cells = _add(fold_cells, score)
        cell_scores = _add(cell_scores, fold_cells)
        progress.save(method, k, test, out, note, fold_cells)
        echo(f"  {method.name} fold {k}: {len(test)} cores predicted{note}")
    return preds, cell_scores


def _scores(method: Method, preds: list[FoldPrediction], scheme: IntervalScheme, mask: str,
            cutoffs: Sequence[float], cells: PositivityScores | None = None) -> MethodScores:
    def interval(p: FoldPrediction) -> int:
        return UNDEFINED if p.prediction.interval is None else p.prediction.interval

    true = [p.item.interval for p in preds]
    pooled = interval_metrics(true, [interval(p) for p in preds], len(scheme))
    fold_mf1 = tuple(
        interval_metrics([p.item.interval for p in preds if p.fold == k],
                         [interval(p) for p in preds if p.fold == k], len(scheme)).mf1
        for k in sorted({p.fold for p in preds})
    )
    exact = proportion_metrics([p.item.proportion for p in preds], [p.prediction.proportion for p in preds],
                               cutoffs)
    ranges = range_coverage([p.prediction.tps_range for p in preds], true,
                            [p.item.proportion for p in preds], scheme)
    return MethodScores(method.name, method.display_name, mask, pooled, exact, fold_mf1,
                        interval_only=not method.predicts_proportion, cells=cells, ranges=ranges)


def _score_line(s: MethodScores) -> str:
    """One line of a method's pooled scores, printed as soon as its folds are done."""
    m, p = s.intervals, s.proportions
    mae = "" if p is None or p.mae is None else f", MAE {100 * p.mae:.1f} pp"
    folds = " ".join(f"{v:.3f}" for v in s.fold_mf1)
    return f"mF1 {m.mf1:.3f} (folds {folds}){mae}, {m.n_undefined} undefined"


def confusion_csv(scores: MethodScores, scheme: IntervalScheme) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label \\ predicted", *scheme.names, "undefined"])
    for name, row in zip(scheme.names, scores.intervals.confusion, strict=True):
        w.writerow([name, *[int(v) for v in row]])
    return buf.getvalue()


def _metrics_json(scores: Sequence[MethodScores], scheme: IntervalScheme) -> str:
    data = []
    for s in scores:
        m, p = s.intervals, s.proportions
        data.append({
            "method": s.name, "display_name": s.display_name, "mask": s.mask,
            "recall": dict(zip(scheme.names, m.recall.round(6).tolist(), strict=True)),
            "precision": dict(zip(scheme.names, m.precision.round(6).tolist(), strict=True)),
            "mrecall": round(m.mrecall, 6), "mprecision": round(m.mprecision, 6), "mf1": round(m.mf1, 6),
            "fold_mf1": [round(v, 6) for v in s.fold_mf1], "n": m.n, "n_undefined": m.n_undefined,
            "exact": None if p is None else {"n": p.n, "n_undefined": p.n_undefined, "mae": p.mae,
                                             "agreement": {str(c): a for c, a in p.agreement.items()}},
            "cells": None if s.cells is None else s.cells.as_dict(),
            "tps_range": None if s.ranges is None else asdict(s.ranges),
        })
    return json.dumps(data, indent=2) + "\n"


def _write_tables(out_dir: Path, scores: list[MethodScores], scheme: IntervalScheme, config: Config,
                  req: CrossValidationRequest, n_cores: int, mask_source: str) -> str:
    """table.txt / .csv / .md and metrics.json of the methods in ``scores``; returns the text table."""
    header, rows = table_cells(scores, scheme, config.cv.cutoffs)
    masked_used = mask_source if any(m.uses_mask for m in req.methods) else None
    footer = table_footer(scores, n_cores, config.cv.folds, masked_used, config.cv.seed,
                          None if req.folds_file is None else str(req.folds_file), config.cv.train_cores)
    text = format_text(header, rows, footer)
    write_text_atomic(out_dir / "table.txt", text)
    write_text_atomic(out_dir / "table.csv", format_csv(header, rows))
    write_text_atomic(out_dir / "table.md", format_markdown(header, rows, footer))
    write_text_atomic(out_dir / "metrics.json", _metrics_json(scores, scheme))
    return text


def _folds_csv(items: Sequence[Stage2Item], folds: np.ndarray, scheme: IntervalScheme) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "patient", "label", "fold"])
    for it, k in zip(items, folds, strict=True):
        w.writerow([it.name, it.patient, scheme.names[it.interval], int(k)])
    return buf.getvalue()


@dataclass(frozen=True)
class CrossValidationResult:
    scores: list[MethodScores]
    table: str
    """The table as printed (with its footer)."""
    predictions: list[FoldPrediction]


def _run_identity(req: CrossValidationRequest, config: Config, items: Sequence[Stage2Item], folds: np.ndarray,
                  mask_source: str) -> dict[str, object]:
    """What makes two cv runs the same for ``--resume``: the cohort's content, the cores and their
    folds, the stage-1 / Det / truth files, the mask source and every setting."""
    from maskllp.config import to_mapping
    from maskllp.training.inputs import path_digest

    return {"cohort": path_digest(req.cohort), "cores": [it.name for it in items],
            "folds": [int(f) for f in folds], "stage1": path_digest(req.stage1),
            "det_model": path_digest(req.det_model),
            "truth": path_digest(req.truth), "mask_source": mask_source,
            "config": json.loads(json.dumps(to_mapping(config), default=str))}


def run_cross_validation(req: CrossValidationRequest, config: Config,
                         echo: Callable[[str], None] = print,
                         progress: Callable[[str], Callable[[int, int], None]] | None = None
                         ) -> CrossValidationResult:
    """Cross-validate ``req.methods`` on ``req.cohort``; write everything under ``req.out_dir``.
    ``progress(step)`` makes the reporter of a long step's ``(done, total)`` (default: a
    :class:`~maskllp.progress.ProgressLines` through ``echo``)."""
    config = replace(config, trainer=single_device(config.trainer))
    root = default_cache_root(req.cohort, config.proportion.cache_dir)
    inputs = [req.cohort, req.stage1, req.truth, req.det_model, req.folds_file, root]
    out_dir = check_output_dir(req.out_dir, req.overwrite or req.resume, inputs)
    with output_lock(out_dir):
        return _run(req, config, out_dir, root, echo, progress or (lambda what: ProgressLines(what, echo)))


def _run(req: CrossValidationRequest, config: Config, out_dir: Path, root: Path,
         echo: Callable[[str], None], progress: Callable[[str], Callable[[int, int], None]]
         ) -> CrossValidationResult:
    scheme = config.intervals.build()
    cohort = read_cohort(req.cohort, scheme, mapping=config.classes)
    entries = labelled_entries(cohort, echo)
    exact = read_exact_truth(req.truth) if req.truth is not None else None
    names = image_stems([e.image for e in entries])
    if req.folds_file is not None:
        folds = read_folds(req.folds_file, names, [e.image for e in entries])
        config = replace(config, cv=replace(config.cv, folds=int(folds.max()) + 1))
    else:
        try:
            folds = make_folds([e.label.interval for e in entries], [e.patient for e in entries],
                               config.cv.folds, config.cv.seed)
        except ValueError as e:
            raise InputError(req.cohort, str(e), "cv.folds") from None
    setup = FitSetup(None, req.stage1, req.det_model, req.cohort, scheme, torch_device(config.trainer))
    for method in req.methods:
        method.check(setup)
    needs_mask = [m.name for m in req.methods if m.uses_mask]
    source = build_mask_source(needs_mask, req.mask_source, req.stage1, req.truth, entries, config, root)
    setup.mask_source = source
    cache = ItemCache(root, InputSpec.from_config(config.proportion))
    echo(f"preparing {len(entries)} cores, inputs {cache.spec.key} (masks: {source.name}; "
         f"cache {cache.root})")
    items = prepare_items(entries, scheme, source, cache, exact, progress("preparing cores"))
    identity = _run_identity(req, config, items, folds, source.name)
    if req.resume and (out_dir / "progress" / "run.json").is_file():
        FoldProgress(out_dir).check_same_run(identity, True, out_dir)
        echo(f"resuming the run in {out_dir}")
    else:
        if out_dir.exists():  # check_output_dir let it through: empty, or maskllp's own with --overwrite
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        mark_output(out_dir)
        FoldProgress(out_dir).check_same_run(identity, False, out_dir)
    write_text_atomic(out_dir / "folds.csv", _folds_csv(items, folds, scheme))
    save_config(config, out_dir / "config.yaml")
    mask_label = "oracle" if source.name == "truth" else "yes"
    true_cells = read_true_cells(req.truth, [it.name for it in items]) if req.truth is not None else None
    preds: list[FoldPrediction] = []
    scores: list[MethodScores] = []
    text = ""
    for method in req.methods:
        echo(f"{method.display_name}: {config.cv.folds} folds")
        mpreds, cell_scores = _train_and_predict(method, items, names, folds, setup, config, out_dir, echo,
                                                 true_cells)
        preds += mpreds
        write_text_atomic(out_dir / "predictions.csv", predictions_csv([p.row(scheme) for p in preds]))
        scores.append(_scores(method, mpreds, scheme, mask_label if method.uses_mask else "",
                              config.cv.cutoffs, cell_scores))
        write_text_atomic(out_dir / "confusion" / f"{method.name}.csv", confusion_csv(scores[-1], scheme))
        # the tables so far: an interrupted run keeps every method it finished
        text = _write_tables(out_dir, scores, scheme, config, req, len(items), source.name)
        echo(f"  {method.display_name}: {_score_line(scores[-1])}")
    echo(text)
    return CrossValidationResult(scores, text, preds)
