"""Cohort-scale prediction on several devices through Lightning's predict loop.

One process per device (Lightning's ``ddp_spawn``: the processes are started from this one, so the
command line runs once and its output folder is staged once). Lightning hands the cores out with
its unrepeated distributed sampler, so each core is predicted once, by one process; each process
loads the model folder onto its own device and writes its cores' files into the staging folder
exactly as a one-process run does (:func:`maskllp.inference.pipeline.predict_core`), plus the
core's row under a hidden ``.rows/`` folder, named by core and process (``3.1.json``: core 3, by
process 1), so a core predicted twice would show. The caller merges the rows in manifest order and
removes ``.rows/``; a core that failed with an input error is reported in one line, as in a
one-process run.

Imported only when ``predict`` is given more than one device, so that one-device prediction
starts without Lightning.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import fields
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from maskllp.config import Config
from maskllp.errors import InputError, MaskllpError, ProblemList
from maskllp.inference.pipeline import CoreToPredict, Predictor, PredictRun, predict_core, progress_line
from maskllp.io.atomic import write_text_atomic
from maskllp.predictions import PredictionRow
from maskllp.training.trainer import quiet_lightning

ROWS_DIR = ".rows"
"""Hidden folder of the staging folder where each process leaves the rows of its cores."""


class _CoreIndices(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _one(batch: list[int]) -> int:
    return batch[0]


class CorePredictionModule(L.LightningModule):
    """Predicts the cores Lightning gives this process, with the model loaded on its device."""

    def __init__(self, run: PredictRun, config: Config, cores: list[CoreToPredict], stage: Path) -> None:
        super().__init__()
        self.run, self.config, self.cores, self.stage = run, config, cores, stage
        self.predictor: Predictor | None = None

    def setup(self, stage: str) -> None:  # in each process, before the loop
        quiet_lightning()
        warnings.filterwarnings("ignore", message=r".*predict returned None.*")

    def on_predict_start(self) -> None:
        if self.device.type == "cpu":  # the processes share the cores' threads
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.trainer.world_size))
        self.predictor = Predictor.load(self.run.model_dir, str(self.device), self.run.stage1_dir,
                                        self.config.intervals.build(), self.config.inference.precision,
                                        self.config.inference.views)

    def predict_step(self, index: int, batch_idx: int = 0) -> None:
        core, rows = self.cores[index], self.stage / ROWS_DIR
        assert self.predictor is not None
        name = f"{index}.{self.global_rank}"
        try:
            row = predict_core(self.predictor, core, self.run.figures, self.config, self.stage)
        except MaskllpError as e:
            write_text_atomic(rows / f"{name}.error", str(e))
            return
        write_text_atomic(rows / f"{name}.json", json.dumps(row.to_json()))
        print(f"(process {self.global_rank + 1}/{self.trainer.world_size}, {self.device}) "
              + progress_line(index + 1, len(self.cores), row), flush=True)


def lightning_devices(devices: list[str]) -> tuple[str, int | list[int]]:
    """(``accelerator``, ``devices``) of ``L.Trainer`` for :func:`~maskllp.backbones.inference_devices`'s
    list: n CPUs -> (cpu, n); cuda:0, cuda:2 -> (gpu, [0, 2])."""
    if all(d == "cpu" for d in devices):
        return "cpu", len(devices)
    if all(d.startswith("cuda:") for d in devices):
        return "gpu", [int(d.split(":")[1]) for d in devices]
    raise InputError("--device", f"cannot mix devices {', '.join(devices)} in one run")


def _row(data: dict) -> PredictionRow:
    return PredictionRow(**{f.name: data[f.name] for f in fields(PredictionRow)})


def predict_on_devices(run: PredictRun, config: Config, cores: list[CoreToPredict], devices: list[str],
                       stage: Path) -> list[PredictionRow]:
    """Predict ``cores`` on ``devices`` (one process each) into ``stage``; their rows in ``cores``' order.

    Raises ProblemList of every core that failed with an input error (after all were tried)."""
    accelerator, which = lightning_devices(devices)
    quiet_lightning()
    rows = stage / ROWS_DIR
    rows.mkdir()
    trainer = L.Trainer(accelerator=accelerator, devices=which, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(_CoreIndices(len(cores)), batch_size=1, shuffle=False, collate_fn=_one)
    try:
        trainer.predict(CorePredictionModule(run, config, cores, stage), dataloaders=loader,
                        return_predictions=False)
        problems: list[InputError | str] = []
        results = []
        for i, core in enumerate(cores):
            errors, done = sorted(rows.glob(f"{i}.*.error")), sorted(rows.glob(f"{i}.*.json"))
            if errors:
                problems.append(errors[0].read_text(encoding="utf-8"))
            elif done:
                results.append(_row(json.loads(done[0].read_text(encoding="utf-8"))))
            else:  # a process died without a word
                problems.append(InputError(core.path, "was not predicted (a prediction process stopped)"))
    finally:
        shutil.rmtree(rows, ignore_errors=True)
    if problems:
        raise ProblemList(problems, f"{len(problems)} of {len(cores)} core(s) failed")
    return results
