"""The paper's Table 1 on a synthetic cohort: every method, 4-fold cross-validation, one command.

    python benchmarks/table1_synthetic.py --out runs/table1            # ~4 h on 2 CPU cores (all steps)
    python benchmarks/table1_synthetic.py --out runs/t --cores 60 --skip ablations,oracle   # smaller

Steps (each one maskllp library call; the equivalent command is printed):

1. ``maskllp synth``: a synthetic PD-L1 cohort with the confounders on (the generator's defaults:
   PD-L1-positive macrophages and immune cells, brown background in some cores, weak and partial
   membranes, brown negative tumour cells, crowded nuclei, out-of-focus regions), the paper's
   imbalanced interval distribution, exact truth;
2. stage 1 on the cohort's annotations: the detector on its point-annotated cores, the tumour
   classifier on its points and regions (the mask M of the masked methods, the cells of
   ``ours-cells``), and the three-class classifier on its points (the Det baseline), each trained
   once and used for all folds, as in the paper; stage 1 is then scored against every true cell,
   per cell subtype (``maskllp evaluate-detection``);
3. ``maskllp cv --methods all``: the eleven Table 1 methods and the cell methods on the same folds
   (stratified by interval, grouped by patient), exact TPS from the truth for MAE and cut-off
   agreement, per-cell scores of the cell-level methods;
4. ablations of Ours (the pixel method), one setting back at a time: the paper's square input
   (``resize = "square"``), a constant learning rate, stain channels as input;
5. the oracle-mask rows: the masked pixel methods again with the true tumour cells' mask, so the
   cost of a wrong stage-1 mask is visible per method.

Settings: ``benchmarks/table1.toml`` (the budget: epochs, learning rate), plus ``--config``. Writes
``RUN/benchmark.md`` (settings, time per step, every table) and leaves every intermediate in
``RUN``. The interval labels (and the clicks of the point-annotated cores) are the only stage-2
supervision; the truth is read only for the MAE / agreement / per-cell columns and the oracle rows.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from maskllp import __version__
from maskllp.config import Config, config_from_mapping, merge_mappings, read_config_mapping, save_config
from maskllp.evaluation.detection_metrics import summary_line
from maskllp.methods import parse_methods
from maskllp.synth import generate_cohort
from maskllp.workflows.cross_validation import CrossValidationRequest, run_cross_validation
from maskllp.workflows.stage1_evaluation import evaluate_detection
from maskllp.workflows.train import run_train_classifier, run_train_detector

HERE = Path(__file__).parent
ABLATIONS: dict[str, dict[str, Any]] = {
    "square input (the paper's resize)": {"proportion": {"resize": "square"}},
    "constant learning rate": {"proportion": {"schedule": "constant"}},
    "stain channels as input": {"proportion": {"input_channels": "stain"}},
}
"""Ours with one setting changed from the defaults."""
ORACLE_METHODS = "lpi,prop,wprop,wprop-listnet,focalprop,ours"


def gpu_line() -> str:
    if not torch.cuda.is_available():
        return "CPU only"
    return f"{torch.cuda.get_device_name()} (trainer: see config.yaml)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run folder (must not exist)")
    ap.add_argument("--cores", type=int, default=200)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--config", type=Path, default=None, help="settings over benchmarks/table1.toml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated: ablations, oracle")
    ap.add_argument("--device", default="cpu",
                    help="torch device of the stage-1 evaluation (training and cv follow [trainer])")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    data = read_config_mapping(HERE / "table1.toml")
    if args.config is not None:
        data = merge_mappings(data, read_config_mapping(args.config))
    cfg = config_from_mapping(data, "benchmark settings")
    three = config_from_mapping(merge_mappings(data, {"classifier": {"classes": "three"}}), "Det")
    out = args.out
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    times: dict[str, float] = {}

    def step(name: str, command: str, fn: Callable[[], Any]) -> Any:
        print(f"\n== {name}\n   ({command})", flush=True)
        t0 = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - t0
        print(f"   {times[name] / 60:.1f} min", flush=True)
        return value

    c = f"-c {out / 'config.yaml'}"
    cohort = step("synthetic cohort", f"maskllp synth --n {args.cores} --out {out / 'cohort'} {c}",
                  lambda: generate_cohort(out / "cohort", args.cores, cfg))
    models = out / "models"
    step("detector", f"maskllp train detector {cohort} --out {models / 'detector'} {c}",
         lambda: run_train_detector(cohort, models / "detector", cfg))
    step("tumour classifier (mask)",
         f"maskllp train tumour-classifier {cohort} --detector {models / 'detector'} "
         f"--out {models / 'stage1'} {c}",
         lambda: run_train_classifier(cohort, models / "detector", models / "stage1", cfg))
    step("three-class classifier (Det)",
         f"maskllp train tumour-classifier {cohort} --detector {models / 'detector'} --classes three "
         f"--out {models / 'det'} {c}",
         lambda: run_train_classifier(cohort, models / "detector", models / "det", three))
    truth = out / "cohort" / "truth.csv"
    report = step("stage-1 evaluation",
                  f"maskllp evaluate-detection {models / 'stage1'} {cohort} --truth {truth} {c}",
                  lambda: evaluate_detection(models / "stage1", cohort, cfg, truth, args.device))
    stage1_line = (f"Stage 1 against every true cell, {summary_line(report['overall'])} "
                   "(mean over cores).")
    print(stage1_line, flush=True)

    def cross_validate(name: str, methods: str, run: Path, config: Config, mask_source: str | None = None
                       ) -> str:
        req = CrossValidationRequest(cohort, parse_methods(methods), run, models / "stage1", mask_source,
                                     truth, models / "det")
        mask = f" --mask-source {mask_source}" if mask_source else ""
        save_config(config, run.with_suffix(".yaml"))
        result = step(name, f"maskllp cv {cohort} --methods {methods} --folds {config.cv.folds} --stage1 "
                            f"{models / 'stage1'} --det-model {models / 'det'} --truth {truth}{mask} "
                            f"--out {run} -c {run.with_suffix('.yaml')}",
                      lambda: run_cross_validation(req, config))
        return result.table.rstrip()

    main_table = cross_validate(f"{cfg.cv.folds}-fold cross-validation", args.methods, out / "cv", cfg)
    tables = {"Table 1 (stage-1 masks)": main_table}
    if "ablations" not in skip:
        for name, change in ABLATIONS.items():
            ablated = config_from_mapping(merge_mappings(data, change), name)
            slug = name.split(" (")[0].replace(" ", "-")
            tables[f"Ours, {name}"] = cross_validate(f"ablation: {name}", "ours", out / f"ablation-{slug}",
                                                     ablated)
    if "oracle" not in skip:
        tables["Oracle masks (true tumour cells)"] = cross_validate(
            "oracle masks", ORACLE_METHODS, out / "cv-oracle", cfg, "truth")
    total = sum(times.values())
    lines = [
        f"# Table 1 on a synthetic cohort ({args.cores} cores)",
        "",
        f"maskllp {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, {gpu_line()}; total {total / 60:.1f} min.",
        "",
        "| step | minutes |",
        "|---|---|",
        *[f"| {k} | {v / 60:.1f} |" for k, v in times.items()],
        "",
        stage1_line,
    ]
    for name, table in tables.items():
        lines += ["", f"## {name}", "", "```", table, "```"]
    lines += ["", "Settings: `config.yaml` in the run folder (benchmarks/table1.toml and any --config); each "
                  "ablation's settings next to its run folder."]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\nTotal {total / 60:.1f} min; {out / 'benchmark.md'}")


if __name__ == "__main__":
    main()
