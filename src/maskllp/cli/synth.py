"""``maskllp synth``: write a synthetic IHC cohort with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app
from maskllp.cli.common import CONFIG_OPTION


@app.command()
def synth(
    n: int = typer.Option(..., "--n", min=1, help="Number of cores."),
    out: Path = typer.Option(..., "--out", help="Output folder (must not exist or be empty)."),
    size: int | None = typer.Option(
        None, "--size", help="Core image side in pixels (default: the config's synth.size, 512)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the config's synth.seed)."),
    marker: str | None = typer.Option(
        None, "--marker", help="DAB compartment: 'membrane' (PD-L1, the default) or 'nucleus' (Ki-67)."
    ),
    config: list[Path] | None = CONFIG_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
) -> None:
    """Write a synthetic PD-L1 (or Ki-67) cohort: images, manifest, annotations, exact truth.

    The folder holds cohort.csv (the manifest other commands read), images/, annotations/,
    config.yaml and the truth (truth.csv, truth/) that training never reads.
    """
    import sys

    from maskllp.cli.common import load_run_config
    from maskllp.synth import generate_cohort

    cfg = load_run_config(config, {"synth": {"size": size, "seed": seed, "marker": marker}})

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} cores", end="" if done < total else "\n", file=sys.stderr, flush=True)

    manifest = generate_cohort(out, n, cfg, overwrite=overwrite, progress=progress)
    typer.echo(f"Wrote {n} synthetic cores: {manifest}")
