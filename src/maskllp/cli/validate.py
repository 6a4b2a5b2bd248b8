"""``maskllp validate COHORT.csv``: check a cohort manifest and print a summary."""

from __future__ import annotations

from pathlib import Path

import typer

from maskllp.cli import app
from maskllp.cli.common import CONFIG_OPTION


@app.command()
def validate(
    cohort: Path = typer.Argument(..., help="Cohort manifest (CSV); see docs/cohort-format.md."),
    config: list[Path] | None = CONFIG_OPTION,
) -> None:
    """Check a cohort: every image, label, annotation file; print what it holds.

    Exits with 0 when all is well, 2 with every problem listed (file, line, column) otherwise.
    """
    from maskllp.cli.common import load_run_config
    from maskllp.io.manifest import validate_cohort

    cfg = load_run_config(config)
    report = validate_cohort(cohort, cfg.intervals.build(), cfg.classes)
    typer.echo(report.summary())
