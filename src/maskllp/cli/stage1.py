"""Stage-1 commands: ``maskllp train detector``, ``maskllp train tumour-classifier``, ``maskllp detect``,
``maskllp evaluate-detection``."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app, train_app
from maskllp.cli.common import (
    ACCELERATOR_OPTION,
    CONFIG_OPTION,
    DEVICE_OPTION,
    DEVICES_OPTION,
    MPP_OPTION,
    OVERWRITE_OPTION,
    PRETRAINED_OPTION,
    RESUME_OPTION,
    STRATEGY_OPTION,
    TRAIN_DEVICE_OPTION,
    trainer_overrides,
)

MAX_EPOCHS_OPTION = typer.Option(None, "--max-epochs", help="Most epochs (early stopping may end sooner).")
STEPS_OPTION = typer.Option(None, "--steps-per-epoch", help="Batches of random crops per epoch.")
MASK_DOWNSAMPLE_OPTION = typer.Option(None, "--mask-downsample", help="Level-0 pixels per mask pixel "
                                      "(config mask.downsample: 1).")
TILE_OPTION = typer.Option(None, "--tile", help="Tile side in model pixels (config tiling.tile: 512).")



@train_app.command("detector")
def train_detector(
    cohort: Path = typer.Argument(..., help="Cohort manifest (CSV); cores with a points file are used."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    max_epochs: int | None = MAX_EPOCHS_OPTION,
    steps_per_epoch: int | None = STEPS_OPTION,
    device: str | None = TRAIN_DEVICE_OPTION,
    devices: str | None = DEVICES_OPTION,
    strategy: str | None = STRATEGY_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    resume: bool = RESUME_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
    accelerator: str | None = ACCELERATOR_OPTION,
) -> None:
    """Train the cell detector h (heatmap U-Net) on point-annotated cores.

    The peak threshold and minimum distance are chosen on a held-out band of each core and saved
    with the model.
    """
    from maskllp.cli.common import load_run_config
    from maskllp.workflows.train import run_train_detector

    cfg = load_run_config(config, {"detector": {"max_epochs": max_epochs, "steps_per_epoch": steps_per_epoch},
                                   "trainer": trainer_overrides(device, devices, strategy, accelerator)})
    path = run_train_detector(cohort, out, cfg, overwrite, resume)
    _echo_validation(path)


@train_app.command("tumour-classifier")
def train_tumour_classifier(
    cohort: Path = typer.Argument(..., help="Cohort manifest (CSV); cores with points or regions are used."),
    detector: Path = typer.Option(..., "--detector", help="Detector (or stage-1) model folder."),
    out: Path = typer.Option(..., "--out", help="Stage-1 model folder to write (detector + classifier)."),
    classes: str | None = typer.Option(None, "--classes", help="'tumour' (tumour vs non-tumour) or 'three' "
                                       "(positive / negative tumour / non-tumour, the Det baseline)."),
    pretrained_weights: Path | None = PRETRAINED_OPTION,
    max_epochs: int | None = MAX_EPOCHS_OPTION,
    steps_per_epoch: int | None = STEPS_OPTION,
    device: str | None = TRAIN_DEVICE_OPTION,
    devices: str | None = DEVICES_OPTION,
    strategy: str | None = STRATEGY_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    resume: bool = RESUME_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
    accelerator: str | None = ACCELERATOR_OPTION,
) -> None:
    """Train the tumour classifier g on detected cells that annotations label; write a stage-1 folder."""
    from maskllp.cli.common import load_run_config
    from maskllp.workflows.train import run_train_classifier

    weights = None if pretrained_weights is None else str(pretrained_weights)
    cfg = load_run_config(config, {
        "classifier": {"classes": classes, "pretrained_weights": weights, "max_epochs": max_epochs,
                       "steps_per_epoch": steps_per_epoch},
        "trainer": trainer_overrides(device, devices, strategy, accelerator)})
    path = run_train_classifier(cohort, detector, out, cfg, overwrite, resume)
    _echo_validation(path)


def _echo_validation(path: Path | None) -> None:
    import json

    from maskllp.evaluation.detection_metrics import format_score

    if path is None:  # an extra process of a multi-GPU run: rank 0 reports
        return
    thresholds = json.loads((path / "thresholds.json").read_text(encoding="utf-8"))
    det = thresholds.get("validation", {})
    typer.echo(f"Wrote {path}: peak threshold {thresholds['peak_threshold']}, min distance "
               f"{thresholds['min_distance_um']} um; detection F1 {format_score(det.get('f1'))} "
               f"on {det.get('on')}")
    cls = thresholds.get("classifier_validation")
    if cls and "accuracy" in cls:
        typer.echo(f"Classifier on {cls['on']}: accuracy {format_score(cls['accuracy'])}, "
                   f"F1 {format_score(cls['f1'])} "
                   f"({cls['n']} cells)")


@app.command("detect")
def detect(
    model: Path = typer.Argument(..., help="Stage-1 model folder."),
    images: list[Path] = typer.Argument(..., help="Core images (PNG, JPEG, TIFF/OME-TIFF, slides), "
                                        "folders of them, or one cohort manifest (.csv, its mpp column)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    mpp: float | None = MPP_OPTION,
    mask_downsample: float | None = MASK_DOWNSAMPLE_OPTION,
    tile: int | None = TILE_OPTION,
    device: str = DEVICE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Detect and classify every cell; write per image the cells (QuPath GeoJSON), the tumour mask
    (PNG) and a preview, plus summary.json and config.yaml."""
    from maskllp.cli.common import load_run_config
    from maskllp.inference.detect import DetectRun, detect_images

    cfg = load_run_config(config, {"mask": {"downsample": mask_downsample}, "tiling": {"tile": tile}})
    from maskllp.progress import terminal_progress

    results = detect_images(DetectRun(model, list(images), out, mpp, device, overwrite), cfg,
                            terminal_progress("detect", typer.echo))
    for r in results:
        typer.echo(f"{r['name']}: {r['cells']} cells, {r['tumour_cells']} tumour")
    typer.echo(f"Wrote {out}")


@app.command("evaluate-detection")
def evaluate_detection(
    model: Path = typer.Argument(..., help="Stage-1 model folder."),
    cohort: Path = typer.Argument(..., help="Cohort manifest of the test cores."),
    truth: Path | None = typer.Option(None, "--truth", help="Synthetic truth.csv (every cell); without it "
                                      "each core's points file must mark every cell."),
    out: Path | None = typer.Option(None, "--out", help="Write the report as JSON here."),
    mask_downsample: float | None = MASK_DOWNSAMPLE_OPTION,
    device: str = DEVICE_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Detection precision / recall / F1, tumour accuracy / F1 and mask Dice against true cells."""
    import json

    from maskllp.cli.common import load_run_config
    from maskllp.evaluation.detection_metrics import summary_line
    from maskllp.io.atomic import check_output_file, write_text_atomic
    from maskllp.workflows.stage1_evaluation import evaluate_detection as run

    if out is not None:
        check_output_file(out)
    cfg = load_run_config(config, {"mask": {"downsample": mask_downsample}})
    report = run(model, cohort, cfg, truth, device)
    if out is not None:
        write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    typer.echo(summary_line(report["overall"]))
    if report["skipped"]:
        typer.echo(f"skipped (no truth): {', '.join(report['skipped'])}")


@app.command("suggest")
def suggest(
    model: Path = typer.Argument(..., help="Stage-1 model folder."),
    cohort: Path = typer.Argument(..., help="Cohort manifest; its annotated cells are left out."),
    out: Path = typer.Option(..., "--out", help="Output folder: suggestions.csv and points/*.geojson."),
    n: int = typer.Option(100, "--n", help="How many cells to suggest."),
    strategy: str = typer.Option("diverse", "--strategy", help="'diverse' (the least certain tumour calls, "
                                 "spread over the kinds of cell among them), 'uncertain' (the least certain "
                                 "only) or 'random' (an unbiased sample, to measure stage 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the clustering and of ties."),
    device: str = DEVICE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Suggest the cells to label next for the tumour classifier: QuPath points to classify, then
    'train tumour-classifier' again."""
    from maskllp.cli.common import load_run_config
    from maskllp.progress import terminal_progress
    from maskllp.workflows.suggest import SuggestRun, suggest_cells

    run = SuggestRun(model, cohort, out, n, strategy, seed, device, overwrite)  # type: ignore[arg-type]
    cfg = load_run_config(config, {})
    rows = suggest_cells(run, cfg, terminal_progress("stage 1", typer.echo))
    cores = len({r.points_file for r in rows})
    called = sum(r.called_tumour for r in rows)
    typer.echo(f"{len(rows)} cells suggested in {cores} cores ({called} now called tumour); wrote {out}")
    typer.echo("Next: import each points/*.suggested.geojson into QuPath, classify the points, export "
               "them, name the file in the manifest's partial_points column and run 'maskllp train "
               "tumour-classifier' again.")
