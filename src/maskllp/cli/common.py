"""Options shared by several commands, and the config loading every command does the same way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from maskllp.errors import InputError

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
TRAIN_DEVICE_OPTION = typer.Option(None, "--device", help="Where to train, as for inference: cpu, cuda, "
                                   "cuda:1, or several GPUs cuda:0,1 (config trainer.accelerator / "
                                   "trainer.devices: auto).")
MPP_OPTION = typer.Option(None, "--mpp", help="Pixel size (microns) of every image, overriding metadata.")
ACCELERATOR_OPTION = typer.Option(None, "--accelerator", hidden=True,
                                  help="Lightning's name of --device's kind (cpu, gpu, auto); kept for old "
                                  "scripts, --device is the option.")
DEVICES_OPTION = typer.Option(None, "--devices",
                              help="How many devices of --device's kind ('4', DDP with --strategy ddp) "
                              "(config trainer.devices: auto).")
STRATEGY_OPTION = typer.Option(None, "--strategy",
                               help="'ddp' for multi-GPU data parallel (config trainer.strategy: auto).")
PRETRAINED_OPTION = typer.Option(None, "--pretrained-weights",
                                 help="Local ImageNet ResNet weights file (random init without).")


def training_device(device: str) -> tuple[str, str | None]:
    """``--device`` of a training command -> (``trainer.accelerator``, ``trainer.devices`` or None):
    ``cpu`` -> (cpu, None), ``cuda`` -> (gpu, None), ``cuda:1`` -> (gpu, "1,") (GPU index 1, not a
    count), ``cuda:0,1`` -> (gpu, "0,1"), ``auto`` -> (auto, None). InputError for anything else."""
    d = device.strip().lower()
    if d in ("cpu", "auto"):
        return d, None
    if d in ("cuda", "gpu"):
        return "gpu", None
    m = re.fullmatch(r"(?:cuda|gpu):(\d+(?:\s*,\s*\d+)*)", d)
    if m is None:
        raise InputError(None, f"unknown device {device!r} (cpu, cuda, cuda:1, cuda:0,1 or auto)", "--device")
    indices = [x.strip() for x in m.group(1).split(",")]
    return "gpu", ",".join(indices) + ("," if len(indices) == 1 else "")


def trainer_overrides(device: str | None = None, devices: str | None = None, strategy: str | None = None,
                      accelerator: str | None = None) -> dict[str, str | None]:
    """The ``[trainer]`` overrides of the --device / --devices / --strategy options (and the old
    --accelerator). InputError when --device names GPUs and --devices counts them too."""
    listed = None
    if device is not None:
        if accelerator is not None:
            raise InputError(None, "give --device alone (--accelerator is its old name)", "--accelerator")
        accelerator, listed = training_device(device)
        if listed is not None and devices is not None:
            raise InputError(None, f"--device {device} names the GPUs already; drop --devices", "--devices")
    return {"accelerator": accelerator, "devices": listed or devices, "strategy": strategy}
