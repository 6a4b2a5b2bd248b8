"""A whole synthetic cohort on disk, in the format real users give the tool, plus its truth.

Layout of the output folder::

    cohort.csv                 manifest: image, patient, label, points, regions, mpp
    config.yaml                the resolved settings that made it
    images/P001-c1.png         cores (PNG, JPEG with ``jpeg_quality``, tiled OME-TIFF when large)
    annotations/P001-c1.points.geojson    cell points (a few cores), QuPath GeoJSON
    annotations/P001-c1.regions.geojson   tumour / non-tumour polygons (a subset of cores)
    truth.csv, truth/P001-c1.csv          exact counts and every cell (never read by training)

Everything is a function of the seed: the plan (patients, TPS, which cores are annotated) comes
from one random stream, and each patient's stain and each core's layout from streams keyed by their
index, so a core does not change when the cohort grows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskllp.config import Config, save_config
from maskllp.config.synth import SynthConfig
from maskllp.intervals import IntervalScheme
from maskllp.io.annotations import write_point_annotations_geojson, write_regions_geojson
from maskllp.io.atomic import staged_directory
from maskllp.io.images import write_image, write_tiled_tiff
from maskllp.io.manifest import write_cohort
from maskllp.synth.annotate import draw_regions, point_annotations
from maskllp.synth.layout import build_layout, draw_patient_stain
from maskllp.synth.render import iter_tiles
from maskllp.synth.truth import CELLS_DIR, TRUTH_FILE, core_counts, exact_tps, write_cells, write_truth

if TYPE_CHECKING:
    from maskllp.synth.layout import CoreLayout

MANIFEST_FILE = "cohort.csv"
CONFIG_FILE = "config.yaml"
IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"

# Keys of the independent random streams (SeedSequence spawn keys).
_PLAN, _PATIENT, _CORE, _PIXELS, _ANNOTATION, _LABEL = range(6)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class CorePlan:
    """What the cohort decides about one core before drawing it."""

    index: int
    name: str
    """Image file stem, ``P<patient>-c<k>``."""
    patient: str
    patient_index: int
    tps: float | None
    """Target TPS (the exact one follows from whole cell counts); None: no tumour in the core."""
    points: bool
    regions: bool


def _draw_tps(rng: np.random.Generator, cfg: SynthConfig, bin_index: int) -> float:
    c = cfg.cohort
    if bin_index == 0 and rng.random() < c.tps_zero_fraction:
        return 0.0
    return float(rng.uniform(c.tps_bins[bin_index], c.tps_bins[bin_index + 1]))


def plan_cohort(n_cores: int, cfg: SynthConfig) -> list[CorePlan]:
    """Patients, target TPS and annotation flags of ``n_cores`` cores (deterministic in the seed).

    Each patient draws a TPS bin; each of their cores keeps it with probability
    ``patient_tps_concordance`` and draws a fresh bin otherwise (both from ``tps_bin_weights``, so
    the cohort-wide distribution is that of the weights).
    """
    if n_cores < 1:
        raise ValueError(f"a cohort needs at least one core, got {n_cores}")
    c = cfg.cohort
    weights = np.asarray(c.tps_bin_weights, float) / sum(c.tps_bin_weights)
    n_region = min(cfg.annotations.region_cores, n_cores)
    region_cores = set(_rng(cfg.seed, _PLAN, 1).choice(n_cores, n_region, replace=False).tolist())
    point_order = sorted(region_cores) + sorted(set(range(n_cores)) - region_cores)
    point_cores = set(point_order[: min(cfg.annotations.point_cores, n_cores)])
    rng = _rng(cfg.seed, _PLAN, 0)  # patients and TPS: a cohort of n cores starts like a larger one
    plans: list[CorePlan] = []
    patient = 0
    while len(plans) < n_cores:
        k = min(int(rng.integers(c.cores_per_patient[0], c.cores_per_patient[1] + 1)), n_cores - len(plans))
        patient_bin = int(rng.choice(len(weights), p=weights))
        pid = f"{c.patient_prefix}{patient + 1:03d}"
        for j in range(k):
            i = len(plans)
            b = patient_bin
            if rng.random() >= c.patient_tps_concordance:
                b = int(rng.choice(len(weights), p=weights))
            tps = None if rng.random() < c.tumour_free_fraction else _draw_tps(rng, cfg, b)
            plans.append(CorePlan(i, f"{pid}-c{j + 1}", pid, patient, tps,
                                  points=i in point_cores, regions=i in region_cores))
        patient += 1
    return plans


def make_core(plan: CorePlan, cfg: SynthConfig) -> CoreLayout:
    """The layout of one planned core (deterministic in the seed and the plan)."""
    patient = draw_patient_stain(_rng(cfg.seed, _PATIENT, plan.patient_index), cfg)
    pixel_seed = int(np.random.SeedSequence(cfg.seed, spawn_key=(_PIXELS, plan.index)).generate_state(1)[0])
    return build_layout(_rng(cfg.seed, _CORE, plan.index), pixel_seed, cfg, patient, plan.tps)


def pathologist_estimate(rng: np.random.Generator, tps: float, noise: float) -> float:
    """An eyeballed TPS: the exact one moved by a normal error of SD ``noise`` on the log-odds scale."""
    if noise == 0:
        return tps
    p = min(max(tps, 1e-3), 1 - 1e-3)
    logit = math.log(p / (1 - p)) + rng.normal(0.0, noise)
    return 1.0 / (1.0 + math.exp(-logit))


def image_suffix(cfg: SynthConfig) -> str:
    """``.ome.tif`` for large cores (or when asked), else ``.jpg`` with JPEG on, else ``.png``."""
    tiled = cfg.image_format == "ome.tif" or (cfg.image_format == "auto" and cfg.size > cfg.tiled_from)
    if tiled:
        return ".ome.tif"
    return ".jpg" if cfg.jpeg_quality is not None else ".png"


def write_core_image(path: Path, layout: CoreLayout, cfg: SynthConfig) -> None:
    """Render the core tile by tile into ``path`` (PNG/JPEG assembled in uint8; TIFF streamed)."""
    if path.name.endswith(".ome.tif"):
        write_tiled_tiff(path, layout.shape, iter_tiles(layout, cfg.tile), cfg.mpp, tile=cfg.tile,
                         jpeg_quality=cfg.jpeg_quality)
        return
    rgb = np.empty((*layout.shape, 3), np.uint8)
    for (top, left), piece in iter_tiles(layout, cfg.tile):
        rgb[top : top + piece.shape[0], left : left + piece.shape[1]] = piece
    write_image(path, rgb, mpp=cfg.mpp, jpeg_quality=cfg.jpeg_quality)


def _write_core(stage: Path, plan: CorePlan, cfg: SynthConfig, scheme: IntervalScheme
                ) -> tuple[dict[str, str], dict[str, str]]:
    """Write one core's image, annotations and cells file; return its manifest and truth rows."""
    layout = make_core(plan, cfg)
    image = f"{IMAGES_DIR}/{plan.name}{image_suffix(cfg)}"
    write_core_image(stage / image, layout, cfg)
    row = {"image": image, "patient": plan.patient, "mpp": f"{cfg.mpp:g}"}
    if plan.regions or plan.points:
        regions = draw_regions(_rng(cfg.seed, _ANNOTATION, plan.index), layout,
                               cfg.annotations.region_area_fraction)
        if plan.regions:
            row["regions"] = f"{ANNOTATIONS_DIR}/{plan.name}.regions.geojson"
            write_regions_geojson(stage / row["regions"], regions)
        if plan.points:
            row["points"] = f"{ANNOTATIONS_DIR}/{plan.name}.points.geojson"
            write_point_annotations_geojson(stage / row["points"],
                                            point_annotations(layout, regions, cfg.annotations.point_scope))
    counts = core_counts(layout.cells)
    tps = exact_tps(counts["n_positive_tumour"], counts["n_negative_tumour"])
    interval = label = ""
    if tps is not None:
        interval = scheme.names[scheme.index_of(tps)]
        estimate = pathologist_estimate(_rng(cfg.seed, _LABEL, plan.index), tps, cfg.cohort.label_noise)
        label = scheme.names[scheme.index_of(estimate)]
    row["label"] = label
    cells_file = f"{CELLS_DIR}/{plan.name}.csv"
    write_cells(stage / cells_file, layout.cells)
    truth = {"image": image, "patient": plan.patient, **{k: str(v) for k, v in counts.items()},
             "tps": "" if tps is None else repr(tps), "interval": interval, "label": label,
             "architecture": layout.architecture, "cells": cells_file}
    return row, truth


def generate_cohort(out_dir: str | os.PathLike[str], n_cores: int, config: SynthConfig | Config,
                    *, overwrite: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a synthetic cohort of ``n_cores`` cores into ``out_dir``; return the manifest's path.

    ``config`` is the ``[synth]`` section or a whole :class:`maskllp.config.Config` (whose interval
    scheme then names the labels; the default is the paper's five intervals). The folder appears
    only when complete; an existing non-empty ``out_dir`` is refused unless ``overwrite``.
    ``progress(done, total)`` is called after each core.
    """
    run_config = config if isinstance(config, Config) else Config(synth=config)
    cfg = run_config.synth
    scheme = run_config.intervals.build()
    plans = plan_cohort(n_cores, cfg)
    out_dir = Path(out_dir)
    with staged_directory(out_dir, overwrite=overwrite) as stage:
        for sub in (IMAGES_DIR, ANNOTATIONS_DIR, CELLS_DIR):
            (stage / sub).mkdir()
        rows, truth = [], []
        for done, plan in enumerate(plans, start=1):
            row, true_row = _write_core(stage, plan, cfg, scheme)
            rows.append(row)
            truth.append(true_row)
            if progress is not None:
                progress(done, len(plans))
        write_cohort(stage / MANIFEST_FILE, rows)
        write_truth(stage / TRUTH_FILE, truth)
        save_config(run_config, stage / CONFIG_FILE)
    return out_dir / MANIFEST_FILE
