"""``maskllp predict``: TPS of new cores of any size with a trained model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app
from maskllp.cli.common import CONFIG_OPTION, DEVICE_OPTION, MPP_OPTION, OVERWRITE_OPTION


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
    device: str = DEVICE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Estimate the TPS of each core: per core a JSON (estimate, interval, s_p, s_n, tumour cells), the
    cells as QuPath GeoJSON and the figure of the paper's Fig. 5; predictions.csv and report.html."""
    from maskllp.cli.common import load_run_config
    from maskllp.inference.pipeline import PredictRun, predict_cores

    cfg = load_run_config(config)

    def show(i: int, n: int, r) -> None:
        tps = "undefined" if r.proportion is None else f"{100 * r.proportion:.1f} %"
        typer.echo(f"[{i}/{n}] {r.name}: TPS {tps} ({r.interval or 'no interval'})"
                   + (f"; {r.note}" if r.note else ""))

    run = PredictRun(model, list(inputs), out, mpp, stage1, device, overwrite, figures)
    results = predict_cores(run, cfg, progress=show)
    typer.echo(f"Wrote {len(results)} prediction(s) to {out} (predictions.csv, report.html)")
