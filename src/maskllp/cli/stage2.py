"""Stage-2 commands: ``maskllp cv``, ``maskllp train proportion``, ``maskllp plot-loss``."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app, train_app
from maskllp.cli.common import (
    ACCELERATOR_OPTION,
    CONFIG_OPTION,
    DEVICES_OPTION,
    OVERWRITE_OPTION,
    PRETRAINED_OPTION,
    RESUME_OPTION,
    STRATEGY_OPTION,
    TRAIN_DEVICE_OPTION,
    trainer_overrides,
)

STAGE1_OPTION = typer.Option(None, "--stage1", help="Stage-1 model folder: tumour masks for the masked "
                             "methods (computed once, cached with the cohort).")
MASK_SOURCE_OPTION = typer.Option(None, "--mask-source", help="'stage1' (default with --stage1) or "
                                  "'truth': ORACLE masks from synthetic truth (needs --truth).")
TRUTH_OPTION = typer.Option(None, "--truth", help="Synthetic truth CSV: exact proportions (MAE, "
                            "agreement at the cut-offs) and cells for oracle masks.")
INPUT_SIZE_OPTION = typer.Option(None, "--input-size", help="Side of the network input (multiple of "
                                 "32; the paper: 2048). Overrides proportion.input_size.")
MAX_EPOCHS_OPTION = typer.Option(None, "--max-epochs", help="Overrides proportion.max_epochs.")


@app.command("cv")
def cross_validate(
    cohort: Path = typer.Argument(..., help="Cohort manifest (CSV) with a label for every core."),
    methods: str = typer.Option("all", "--methods", help="Comma-separated method names or 'all': "
                                "det, class, o-reg, prop-nomask, ours-nomask, lpi, prop, wprop, "
                                "wprop-listnet, focalprop, ours, ours-cells, ours-cells-focal."),
    folds: int | None = typer.Option(None, "--folds", help="Number of folds (default: cv.folds, 4)."),
    out: Path = typer.Option(..., "--out", help="Run folder for predictions, tables, logs."),
    stage1: Path | None = STAGE1_OPTION,
    mask_source: str | None = MASK_SOURCE_OPTION,
    truth: Path | None = TRUTH_OPTION,
    det_model: Path | None = typer.Option(None, "--det-model", help="Trained three-class stage-1 model "
                                          "for Det, used for every fold (default: a three-class "
                                          "classifier trained per fold over the --stage1 detector)."),
    folds_from: Path | None = typer.Option(None, "--folds-from", help="CSV with columns image, fold: "
                                           "these folds (e.g. by site or scanner, or a run's "
                                           "folds.csv) instead of stratified ones."),
    train_cores: int | None = typer.Option(None, "--train-cores", help="Train each fold on at most "
                                           "this many cores (seeded subset; a learning curve)."),
    input_size: int | None = INPUT_SIZE_OPTION,
    max_epochs: int | None = MAX_EPOCHS_OPTION,
    pretrained_weights: Path | None = PRETRAINED_OPTION,
    device: str | None = TRAIN_DEVICE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run in --out (same cohort, "
                                "settings and folds): the methods and folds it finished are kept, the "
                                "rest run; the results equal an uninterrupted run's."),
    config: list[Path] | None = CONFIG_OPTION,
    accelerator: str | None = ACCELERATOR_OPTION,
) -> None:
    """Cross-validate Table 1 methods (same folds for all); print and save the table. A killed run
    continues with --resume."""
    from maskllp.cli.common import load_run_config
    from maskllp.methods import parse_methods
    from maskllp.progress import terminal_progress
    from maskllp.workflows.cross_validation import CrossValidationRequest, run_cross_validation

    cfg = load_run_config(config, {"cv": {"folds": folds, "train_cores": train_cores},
                                   "proportion": {"input_size": input_size, "max_epochs": max_epochs,
                                                  "pretrained_weights": pretrained_weights},
                                   "trainer": trainer_overrides(device, accelerator=accelerator)})
    request = CrossValidationRequest(cohort, parse_methods(methods), out, stage1, mask_source, truth,
                                     det_model, overwrite, folds_from, resume)
    run_cross_validation(request, cfg, echo=typer.echo,
                         progress=lambda what: terminal_progress(what, typer.echo))


@train_app.command("proportion")
def train_proportion(
    cohort: Path = typer.Argument(..., help="Cohort manifest (CSV); labelled cores are used."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    method: str | None = typer.Option(None, "--method", help="Table 1 method (default: "
                                      "proportion.method, 'ours')."),
    stage1: Path | None = STAGE1_OPTION,
    mask_source: str | None = MASK_SOURCE_OPTION,
    truth: Path | None = TRUTH_OPTION,
    input_size: int | None = INPUT_SIZE_OPTION,
    max_epochs: int | None = MAX_EPOCHS_OPTION,
    pretrained_weights: Path | None = PRETRAINED_OPTION,
    device: str | None = TRAIN_DEVICE_OPTION,
    devices: str | None = DEVICES_OPTION,
    strategy: str | None = STRATEGY_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    resume: bool = RESUME_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
    accelerator: str | None = ACCELERATOR_OPTION,
) -> None:
    """Train a stage-2 proportion model on a cohort and save it as a model folder (with the stage 1
    that made its masks, so that 'maskllp predict' needs nothing else)."""
    from maskllp.cli.common import load_run_config
    from maskllp.workflows.train import train_on_cohort

    cfg = load_run_config(config, {"proportion": {"method": method, "input_size": input_size,
                                                  "max_epochs": max_epochs,
                                                  "pretrained_weights": pretrained_weights},
                                   "trainer": trainer_overrides(device, devices, strategy, accelerator)})
    fitted = train_on_cohort(cohort, cfg.proportion.method, cfg, out, stage1=stage1,
                             mask_source=mask_source, truth=truth, overwrite=overwrite, resume=resume)
    if fitted is None:  # an extra process of a multi-GPU (DDP) run: rank 0 reports
        return
    s = fitted.summary
    trained = "" if s is None else f" {s.describe()};"
    typer.echo(f"{fitted.method.display_name}:{trained} model written to {out}")


@app.command("plot-loss")
def plot_loss(
    out: Path = typer.Option(Path("loss-curves.png"), "--out", help="Figure file (.png, .pdf, .svg)."),
    scheme: str | None = typer.Option(None, "--scheme", help="Interval scheme (paper5, clinical3); "
                                      "default: intervals.scheme."),
    ymax: float = typer.Option(1.0, "--ymax", help="Upper limit of the loss axis."),
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Draw the paper's Fig. 3: focal and weighted focal proportion loss per interval."""
    from maskllp.cli.common import load_run_config
    from maskllp.config import save_config
    from maskllp.io.atomic import check_output_file
    from maskllp.report.loss_curves import plot_loss_curves

    check_output_file(out, (".png", ".pdf", ".svg"))
    cfg = load_run_config(config, {"intervals": {"scheme": scheme}})
    path = plot_loss_curves(out, cfg.intervals.build(), cfg.proportion.loss, ymax)
    save_config(cfg, path.with_name(path.stem + ".config.yaml"))
    typer.echo(f"wrote {path}")
