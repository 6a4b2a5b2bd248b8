"""``maskllp predict``: TPS of new cores of any size with a trained model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app
from maskllp.cli.common import CONFIG_OPTION, MPP_OPTION, OVERWRITE_OPTION


@app.command("predict")
def predict(
    model: Path = typer.Argument(..., help="Model folder from 'maskllp train proportion' (or a three-class "
                                 "stage-1 folder: the Det baseline)."),
    inputs: list[Path] = typer.Argument(..., help="Core images (PNG, JPEG, TIFF/OME-TIFF, slides), "
                                        "folders of them, or one cohort manifest (.csv)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    mpp: float | None = MPP_OPTION,
    stage1: Path | None = typer.Option(None, "--stage1", help="Stage-1 folder replacing the one the model "
                                       "carries (needed for models trained on oracle masks)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the per-core figure."),
    device: str = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:1, or several GPUs "
                               "cuda:0,1 (one process each, through Lightning's predict loop)."),
    devices: int | None = typer.Option(None, "--devices", help="How many devices of --device's kind, one "
                                       "process each: --device cuda --devices 4."),
    overwrite: bool = OVERWRITE_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Estimate the TPS of each core: per core a JSON (estimate, interval, s_p, s_n, tumour cells), the
    cells as QuPath GeoJSON and the figure of the paper's Fig. 5; predictions.csv and report.html."""
    from maskllp.cli.common import load_run_config
    from maskllp.inference.pipeline import PredictRun, predict_cores, predict_progress

    cfg = load_run_config(config)
    run = PredictRun(model, list(inputs), out, mpp, stage1, device, overwrite, figures, devices)
    results = predict_cores(run, cfg, progress=predict_progress(typer.echo))
    typer.echo(f"Wrote {len(results)} prediction(s) to {out} (predictions.csv, report.html)")
