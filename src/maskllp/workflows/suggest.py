"""``maskllp suggest``: the cells of a cohort a pathologist should label next for stage 1.

Stage 1 runs on every core (its cells cached where ``maskllp cv`` and ``train proportion`` cache
them); the cells that annotations already label are left out; :func:`maskllp.detection.suggest.cells_to_label`
ranks the rest. Written into ``out`` (all or nothing):

* ``suggestions.csv``: rank, image, QuPath x / y (level-0 pixels), the tumour score, stage 1's call,
  and the file the point is in;
* ``points/<image stem>.suggested.geojson`` per core with suggestions: one unclassified QuPath point
  annotation per cell, named ``suggestion <rank>``. Import it into QuPath, give each point its class
  (Tumor / Stroma, or Positive / Negative for tumour cells), export the annotations and name the
  file in the manifest's ``partial_points`` column of that core; ``maskllp train tumour-classifier``
  then learns from them (points left unclassified are skipped), and so do the cell methods' clicks.
  The detector never reads ``partial_points``: it would learn every unclicked cell as background.
  The next ``maskllp suggest`` leaves the cells they label out.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskllp.config import Config, save_config
from maskllp.detection.suggest import STRATEGIES, Strategy, cells_to_label
from maskllp.errors import InputError
from maskllp.io.annotations import write_suggested_points_geojson
from maskllp.io.atomic import check_output_dir, staged_directory
from maskllp.io.manifest import read_cohort
from maskllp.training.inputs import Stage1MaskSource, default_cache_root
from maskllp.training.stage1 import cell_labels, images_from_cohort

log = logging.getLogger("maskllp")

SUGGESTIONS_FILE = "suggestions.csv"
POINTS_DIR = "points"


@dataclass(frozen=True)
class SuggestRun:
    """What ``maskllp suggest`` was asked: a stage-1 folder, a cohort, how many cells, how chosen."""

    stage1: Path
    cohort: Path
    out: Path
    n: int = 100
    strategy: Strategy = "diverse"
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InputError(None, f"--n must be at least 1, got {self.n}", "--n")
        if self.strategy not in STRATEGIES:
            raise InputError(None, f"unknown strategy {self.strategy!r}; choose one of "
                                   f"{', '.join(STRATEGIES)}", "--strategy")


@dataclass(frozen=True)
class Suggestion:
    rank: int
    image: str
    x: float
    """QuPath x (level-0 pixels, pixel centres at +0.5)."""
    y: float
    tumour_score: float
    called_tumour: bool
    points_file: str


def suggest_cells(run: SuggestRun, config: Config,
                  progress: Callable[[int, int], None] | None = None) -> list[Suggestion]:
    """Rank the unlabelled cells of ``run.cohort`` and write them into ``run.out`` (see the module)."""
    inputs = [run.cohort, run.stage1]
    check_output_dir(run.out, run.overwrite, inputs)  # before stage 1 runs and fills its cache
    cohort = read_cohort(run.cohort, config.intervals.build(), mapping=config.classes)
    source = Stage1MaskSource(run.stage1, run.device,
                              cells_root=default_cache_root(run.cohort, config.proportion.cache_dir))
    threshold = source.model.mask.tumour_threshold
    annotated = {im.source: im for im in images_from_cohort(cohort, config)}
    scores, features, labelled, cells_of = [], [], [], []
    for k, entry in enumerate(cohort.entries):
        cells = source.cells(entry)
        taken = np.zeros(len(cells), bool)
        image = annotated.get(entry.image)
        if image is not None and len(cells):
            taken = cell_labels(cells.yx, image, "tumour", config.detector.match_radius_um / cells.mpp) >= 0
        scores.append(cells.tumour_score)
        features.append(cells.measurements if cells.measurements is not None
                        else np.zeros((len(cells), 0), np.float32))
        labelled.append(taken)
        cells_of.append(cells)
        if progress is not None:
            progress(k + 1, len(cohort.entries))
    chosen = cells_to_label(scores, features, labelled, run.n, run.strategy, seed=run.seed)
    if not chosen:
        raise InputError(run.cohort, "no unlabelled detected cell to suggest (every cell is labelled, "
                                     "or stage 1 found none)")
    out: list[Suggestion] = []
    per_core: dict[int, list[tuple[int, int]]] = {}
    for rank, (core, cell) in enumerate(chosen, start=1):
        per_core.setdefault(core, []).append((rank, cell))
    stems = _unique_stems([cohort.entries[c].image for c in sorted(per_core)])
    with staged_directory(run.out, run.overwrite, inputs) as stage:
        (stage / POINTS_DIR).mkdir()
        for core, picks in sorted(per_core.items()):
            entry, cells = cohort.entries[core], cells_of[core]
            name = f"{POINTS_DIR}/{stems[entry.image]}.suggested.geojson"
            idx = np.array([cell for _, cell in picks])
            write_suggested_points_geojson(stage / name, cells.yx[idx], [f"suggestion {r}" for r, _ in picks])
            for rank, cell in picks:
                p = float(cells.tumour_score[cell])
                out.append(Suggestion(rank, str(entry.image), float(cells.yx[cell, 1]) + 0.5,
                                      float(cells.yx[cell, 0]) + 0.5, p, bool(p > threshold), name))
        out.sort(key=lambda s: s.rank)
        (stage / SUGGESTIONS_FILE).write_text(_csv_text(out), encoding="utf-8")
        save_config(config, stage / "config.yaml")
    log.info("%d cells suggested over %d cores", len(out), len(per_core))
    return out


def _unique_stems(images: list[Path]) -> dict[Path, str]:
    """A file stem per image, made unique with ``-2``, ``-3``, ... (two folders may hold one name)."""
    seen: dict[str, int] = {}
    out = {}
    for image in images:
        stem = image.stem
        seen[stem] = seen.get(stem, 0) + 1
        out[image] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return out


def _csv_text(rows: list[Suggestion]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "image", "x", "y", "tumour_score", "stage1_call", "points_file"])
    for s in rows:
        w.writerow([s.rank, s.image, f"{s.x:.2f}", f"{s.y:.2f}", f"{s.tumour_score:.4f}",
                    "tumour" if s.called_tumour else "non-tumour", s.points_file])
    return buf.getvalue()
