"""Options shared by several commands, and the config loading every command does the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    help="Config file (TOML, YAML or JSON); see the README for its sections. Repeat to merge several "
         "(a later file's values win).",
    exists=False,
    dir_okay=False,
)


def load_run_config(path: list[Path] | Path | None, overrides: dict[str, Any] | None = None):
    """Load the ``--config`` files (merged in order; none: defaults) with command-line overrides,
    put its ``[limits]`` in force; return a ``maskllp.config.Config``."""
    from maskllp.config import load_config
    from maskllp.io.limits import use_limits

    clean = {k: {kk: vv for kk, vv in v.items() if vv is not None}
             for k, v in (overrides or {}).items()}
    config = load_config(path, {k: v for k, v in clean.items() if v})
    use_limits(config.limits)  # the run's budgets on input sizes, process-wide
    return config


OVERWRITE_OPTION = typer.Option(False, "--overwrite", help="Replace an existing output folder.")
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the killed run into --out (same command): "
                             "training goes on from its last finished epoch, to the result an "
                             "uninterrupted run would give.")
DEVICE_OPTION = typer.Option("cpu", "--device", help="Torch device for inference: cpu, cuda, cuda:1...")
MPP_OPTION = typer.Option(None, "--mpp", help="Pixel size (microns) of every image, overriding metadata.")
ACCELERATOR_OPTION = typer.Option(None, "--accelerator",
                                  help="cpu, gpu, auto... (config trainer.accelerator: auto).")
DEVICES_OPTION = typer.Option(None, "--devices",
                              help="Device count ('4') or list ('0,1') (config trainer.devices: auto).")
STRATEGY_OPTION = typer.Option(None, "--strategy",
                               help="'ddp' for multi-GPU data parallel (config trainer.strategy: auto).")
PRETRAINED_OPTION = typer.Option(None, "--pretrained-weights",
                                 help="Local ImageNet ResNet weights file (random init without).")


def trainer_overrides(accelerator: str | None = None, devices: str | None = None,
                      strategy: str | None = None) -> dict[str, str | None]:
    """The ``[trainer]`` overrides of the --accelerator / --devices / --strategy options."""
    return {"accelerator": accelerator, "devices": devices, "strategy": strategy}
