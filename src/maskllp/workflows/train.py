"""Training runs that read a cohort and write a model folder: ``maskllp train detector``, ``maskllp
train tumour-classifier`` and ``maskllp train proportion``.

Each writes its folder atomically (nothing appears unless the run succeeds), with the run's
Lightning logs and the resolved ``config.yaml``; the extra processes of a multi-GPU (DDP) run write
nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from maskllp.config import Config, save_config, to_mapping
from maskllp.detection.model import Stage1Model
from maskllp.errors import InputError
from maskllp.inference.stain_check import core_stain_vectors, save_stain_range
from maskllp.io.atomic import check_output_dir, output_lock, staged_directory
from maskllp.io.images import open_image
from maskllp.io.manifest import CohortEntry, read_cohort
from maskllp.methods import FitSetup, FittedMethod, Method, get_method
from maskllp.proportion.inputs import InputSpec
from maskllp.stains import StainVectors
from maskllp.training.inputs import (
    ItemCache,
    build_mask_source,
    default_cache_root,
    path_digest,
    prepare_items,
    torch_device,
)
from maskllp.training.stage1 import (
    TrainingImage,
    finish_model_folder,
    images_from_cohort,
    partially_clicked,
    train_classifier,
    train_detector,
    work_dir_for,
)
from maskllp.training.trainer import is_global_zero

log = logging.getLogger("maskllp")


def _cohort_images(cohort_path: Path, config: Config) -> list[TrainingImage]:
    cohort = read_cohort(cohort_path, config.intervals.build(), mapping=config.classes)
    return images_from_cohort(cohort, config)


def resumable(config: Config) -> Config:
    """``config`` with resume checkpoints on (every ``train`` command writes them)."""
    return replace(config, trainer=replace(config.trainer, resume_checkpoints=True))


def training_work_dir(out_dir: Path, config: Config, inputs: list[Path | None], resume: bool) -> Path:
    """The scratch folder of a training run into ``out_dir``; with ``resume`` the one a killed run
    left (refused, naming what differs, when that run had other inputs or settings)."""
    work = work_dir_for(Path(out_dir), resume)
    identity = {"config": json.loads(json.dumps(to_mapping(config), default=str)),
                "inputs": {str(p): path_digest(p) for p in inputs if p is not None and Path(p).exists()}}
    path = work / "run.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in ("config", "inputs") if before.get(k) != identity[k])
        if changed:
            raise InputError(out_dir, "--resume: the killed run was made with other "
                                      f"{' and '.join(changed)}; rerun without --resume", "--resume")
    else:
        path.write_text(json.dumps(identity, sort_keys=True), encoding="utf-8")
    return work


def run_train_detector(cohort_path: Path, out_dir: Path, config: Config, overwrite: bool = False,
                       resume: bool = False) -> Path | None:
    """``maskllp train detector``: train h on the cohort's point-annotated cores; write a ``detector``
    model folder (plus ``logs/`` and ``config.yaml``) at ``out_dir``. Returns its path (None in the
    extra processes of a DDP run, which save nothing)."""
    check_output_dir(out_dir, overwrite, [cohort_path])
    with output_lock(Path(out_dir)):
        return _train_detector(cohort_path, out_dir, resumable(config), resume)


def _train_detector(cohort_path: Path, out_dir: Path, config: Config, resume: bool) -> Path | None:
    images = _cohort_images(cohort_path, config)
    if not any(im.has_points for im in images):
        raise InputError(cohort_path, "no core has point annotations: the detector needs some (cores with "
                                      "every cell clicked, in the points column; partial_points never count)")
    for im in images:
        covered = partially_clicked(im)
        if covered is not None:
            raise InputError(cohort_path, f"every clicked cell lies inside the region annotations, which "
                             f"cover {100 * covered:.0f} % of the image: the detector needs every cell of a "
                             f"point-annotated core clicked (unclicked cells would be learnt as "
                             f"background); click the whole core or crop the image to the clicked area",
                             f"core {im.name}")
    work = training_work_dir(out_dir, config, [cohort_path], resume)
    try:
        detector = train_detector(images, config, work)
        model = Stage1Model(detector, mask=config.mask, tiling=config.tiling)
        return finish_model_folder(model, out_dir, work, config) if is_global_zero() else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_train_classifier(cohort_path: Path, detector_dir: Path, out_dir: Path, config: Config,
                         overwrite: bool = False, resume: bool = False) -> Path | None:
    """``maskllp train tumour-classifier``: detect cells on the cohort's annotated cores with the
    detector of ``detector_dir`` (a ``detector`` or ``stage1`` folder), train g on the labelled ones,
    and write a self-contained ``stage1`` folder (both networks) at ``out_dir``; None in the extra
    processes of a DDP run."""
    check_output_dir(out_dir, overwrite, [cohort_path, detector_dir])
    with output_lock(Path(out_dir)):
        return _train_classifier(cohort_path, detector_dir, out_dir, resumable(config), resume)


def _train_classifier(cohort_path: Path, detector_dir: Path, out_dir: Path, config: Config,
                      resume: bool) -> Path | None:
    detector = Stage1Model.load(detector_dir).detector
    images = _cohort_images(cohort_path, config)
    if not images:
        raise InputError(cohort_path, "no core has point or region annotations: the classifier needs some")
    work = training_work_dir(out_dir, config, [cohort_path, detector_dir], resume)
    try:
        model = train_classifier(images, detector, config, work)
        if not is_global_zero():
            return None
        path = finish_model_folder(model, out_dir, work, config)
        # the stains of the cores it learnt from: a three-class folder is Det's model, whose
        # predictions are then flagged on cores stained unlike them, as a stage-2 model's are
        save_stain_range(path, [_image_stains(im) for im in images])
        return path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stain_vectors(entry: CohortEntry) -> StainVectors | None:
    with open_image(entry.image, entry.mpp) as reader:
        return core_stain_vectors(reader)


def _image_stains(image: TrainingImage) -> StainVectors | None:
    if not isinstance(image.source, Path):
        return None
    with open_image(image.source, image.mpp) as reader:
        return core_stain_vectors(reader)


def train_on_cohort(cohort_path: str | Path, method: Method | str, config: Config, out_dir: str | Path, *,
                    stage1: Path | None = None, mask_source: str | None = None,
                    truth: Path | None = None, det_model: Path | None = None,
                    overwrite: bool = False, resume: bool = False) -> FittedMethod | None:
    """``maskllp train proportion``: fit ``method`` on every labelled core of a cohort and save its
    model folder ``out_dir`` (None in the extra processes of a multi-GPU DDP run, which save nothing).

    Tumour masks come from ``stage1`` (or oracle ``truth`` masks with ``mask_source = "truth"``) and
    are cached with the cohort; Det trains its three-class classifier over the detector of
    ``stage1``. ``out_dir`` receives the model folder, its ``logs/`` and the resolved ``config.yaml``.
    """
    method = get_method(method) if isinstance(method, str) else method
    inputs = [cohort_path, stage1, truth, det_model]
    out_dir = check_output_dir(out_dir, overwrite, inputs)
    with output_lock(out_dir):
        return _train_on_cohort(Path(cohort_path), method, resumable(config), out_dir, stage1, mask_source,
                                truth, det_model, overwrite, inputs, resume)


def _train_on_cohort(cohort_path: Path, method: Method, config: Config, out_dir: Path, stage1: Path | None,
                     mask_source: str | None, truth: Path | None, det_model: Path | None, overwrite: bool,
                     inputs: list[Path | None], resume: bool = False) -> FittedMethod | None:
    scheme = config.intervals.build()
    cohort = read_cohort(cohort_path, scheme, mapping=config.classes)
    entries = [e for e in cohort.entries if e.label is not None]
    if len(entries) < len(cohort.entries):
        log.warning("%d unlabelled core(s) left out of training", len(cohort.entries) - len(entries))
    if not entries:
        raise InputError(cohort_path, "no labelled core to train on")
    root = default_cache_root(cohort_path, config.proportion.cache_dir)
    source = build_mask_source([method.name] if method.uses_mask else [], mask_source, stage1, truth,
                               entries, config, root)
    setup = FitSetup(source, stage1, det_model, Path(cohort_path), scheme, torch_device(config.trainer))
    method.check(setup)
    items = prepare_items(entries, scheme, source, ItemCache(root, InputSpec.from_config(config.proportion)))
    run_config = replace(config, proportion=replace(config.proportion, method=method.name))
    work = training_work_dir(out_dir, run_config, inputs, resume)
    try:
        fitted = method.fit(items, setup, config, work)
        if not is_global_zero():  # the extra processes of a DDP run save nothing
            return None
        stains = [_stain_vectors(e) for e in entries]
        with staged_directory(out_dir, overwrite, inputs) as stage:
            fitted.save(stage)
            save_stain_range(stage, stains)
            for name in ("logs", "checkpoints"):
                if (work / name).is_dir():
                    shutil.move(str(work / name), str(stage / name))
            save_config(config, stage / "config.yaml")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return fitted
