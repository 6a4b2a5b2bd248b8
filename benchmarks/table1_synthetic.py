"""The paper's Table 1 on a synthetic cohort: every method, 4-fold cross-validation, one command.

    python benchmarks/table1_synthetic.py --out runs/table1            # ~1 h on 2 CPU cores
    python benchmarks/table1_synthetic.py --out runs/t --cores 40 --config my.toml   # smaller

Steps (each one maskllp library call; the equivalent command is printed):

1. ``maskllp synth``: a synthetic PD-L1 cohort with the confounders on (the generator's defaults:
   PD-L1-positive macrophages and immune cells, brown background in some cores, weak and partial
   membranes), the paper's imbalanced interval distribution, exact truth;
2. stage 1 on the cohort's annotations: the detector on its point-annotated cores, the binary
   tumour classifier on its points and regions (the mask M of the masked methods), and the
   three-class classifier on its points (the Det baseline), each trained once, as in the paper,
   where stage 1 was trained on separate annotated cores and used for all folds; stage 1 is then
   scored against every true cell of the cohort (``maskllp evaluate-detection``), so the table
   can be read knowing how good the masks were;
3. ``maskllp cv --methods all --folds 4``: the eleven methods on the same folds (stratified by
   interval, grouped by patient), exact TPS from the truth for MAE and cut-off agreement.

Settings: ``benchmarks/table1.toml`` (the budget: input size, epochs, learning rate), plus
``--config``. Writes ``RUN/benchmark.md`` (settings, time per step, the table) and leaves every
intermediate in ``RUN``. The interval labels are the only stage-2 supervision; the truth is read
only for the MAE / agreement columns.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from maskllp import __version__
from maskllp.config import config_from_mapping, merge_mappings, read_config_mapping, save_config
from maskllp.evaluation.detection_metrics import summary_line
from maskllp.methods import parse_methods
from maskllp.synth import generate_cohort
from maskllp.workflows.cross_validation import CrossValidationRequest, run_cross_validation
from maskllp.workflows.stage1_evaluation import evaluate_detection
from maskllp.workflows.train import run_train_classifier, run_train_detector

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run folder (must not exist)")
    ap.add_argument("--cores", type=int, default=200)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--config", type=Path, default=None, help="settings over benchmarks/table1.toml")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = read_config_mapping(HERE / "table1.toml")
    if args.config is not None:
        data = merge_mappings(data, read_config_mapping(args.config))
    cfg = config_from_mapping(data, "benchmark settings")
    three = config_from_mapping(merge_mappings(data, {"classifier": {"classes": "three"}}), "Det")
    out = args.out
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    times: dict[str, float] = {}

    def step(name: str, command: str, fn):
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
    methods = parse_methods(args.methods)
    truth = out / "cohort" / "truth.csv"
    report = step("stage-1 evaluation",
                  f"maskllp evaluate-detection {models / 'stage1'} {cohort} --truth {truth} {c}",
                  lambda: evaluate_detection(models / "stage1", cohort, cfg, truth, "cpu"))
    stage1_line = (f"Stage 1 against every true cell, {summary_line(report['overall'])} "
                   "(mean over cores).")
    print(stage1_line, flush=True)
    req = CrossValidationRequest(cohort, methods, out / "cv", models / "stage1", None, truth, models / "det")
    result = step(f"{cfg.cv.folds}-fold cross-validation",
                  f"maskllp cv {cohort} --methods {args.methods} --folds {cfg.cv.folds} --stage1 "
                  f"{models / 'stage1'} --det-model {models / 'det'} --truth {truth} --out {out / 'cv'} {c}",
                  lambda: run_cross_validation(req, cfg))
    total = sum(times.values())
    lines = [
        f"# Table 1 on a synthetic cohort ({args.cores} cores)",
        "",
        f"maskllp {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, CPU only; total {total / 60:.1f} min.",
        "",
        "| step | minutes |",
        "|---|---|",
        *[f"| {k} | {v / 60:.1f} |" for k, v in times.items()],
        "",
        stage1_line,
        "",
        "```",
        result.table.rstrip(),
        "```",
        "",
        "Settings: `config.yaml` in the run folder (benchmarks/table1.toml and any --config).",
    ]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\nTotal {total / 60:.1f} min; {out / 'benchmark.md'}")


if __name__ == "__main__":
    main()
