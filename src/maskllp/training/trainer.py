"""One place that builds the ``lightning.Trainer`` every maskllp training run uses.

Single CPU, one GPU or multi-GPU DDP is a matter of :class:`~maskllp.config.training.TrainerConfig`
(``accelerator``, ``devices``, ``strategy``), never of the training code. Every run gets early
stopping on its validation metric, the best weights restored at the end (kept in memory, so no
pickled checkpoint is ever read back), optional Lightning checkpoints for resuming, a CSV log, and a
progress bar.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from maskllp.backbones import bf16_native as device_bf16_native
from maskllp.config.training import TrainerConfig
from maskllp.errors import InputError


def quiet_lightning() -> None:
    """Keep Lightning's per-run notices (GPU available, tips, a deprecation inside Lightning) out of
    the output: a cross-validation runs dozens of trainings."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*limit_val_batches=1.0.*")
    # The tip to raise DataLoader workers, once per training on a many-core GPU host: that is the
    # setting [trainer] num_workers, which the user chooses (0 by default).
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


class BestWeights(Callback):
    """Keep a CPU copy of the weights at the best value of ``monitor``; restore it at the end.

    With no validation data (``monitor`` never logged) the final weights are kept.
    """

    def __init__(self, monitor: str, mode: str = "min") -> None:
        self.monitor = monitor
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        v = float(value)
        better = v < self.best if self.mode == "min" else v > self.best
        if better or self.state is None:
            self.best = v
            self.best_epoch = trainer.current_epoch
            self.state = {k: t.detach().to("cpu", copy=True)
                          for k, t in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(copy.deepcopy(self.state))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]


class ResumeState(Callback):
    """What a resume checkpoint needs beyond Lightning's own: the random generators (torch, CUDA,
    NumPy, Python) and the position of the training data's random stream (a dataset's ``seeded``),
    saved at each epoch's end and put back before the resumed run's first epoch, so that it draws the
    same crops, flips and dropout as the run that was killed. Plain tensors and numbers only: the
    checkpoint loads with ``weights_only=True``."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @staticmethod
    def _stream(trainer: L.Trainer) -> Any:
        loader = getattr(trainer, "train_dataloader", None)
        return getattr(getattr(loader, "dataset", None), "seeded", None)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (what seed_everything seeds)
        stream = self._stream(trainer)
        checkpoint["maskllp_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [torch.from_numpy(np.asarray(keys, np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
            "stream_draws": None if stream is None else int(stream.draws),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """The generators go back at once (a resumed fit draws its first shuffle before
        ``on_train_start``); the data stream's position when the training loader exists."""
        import random

        import numpy as np

        state = checkpoint.get("maskllp_rng")
        self._pending = state
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        version, inner, gauss = state["python"]
        random.setstate((version, tuple(inner), gauss))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        stream = self._stream(trainer)
        if stream is not None and state["stream_draws"] is not None:
            stream.draws = state["stream_draws"]


RESUME_FOLDER = "resume"
"""Where a resumable run keeps ``last.ckpt`` inside its scratch folder."""


def fit(trainer: L.Trainer, module: L.LightningModule, out_dir: Path, *loaders: Any, **kwargs: Any) -> None:
    """``trainer.fit``, continuing from ``out_dir/resume/last.ckpt`` when a killed run left one
    (loaded with ``weights_only=True``: tensors and plain values, never a pickle's code)."""
    last = Path(out_dir) / RESUME_FOLDER / "last.ckpt"
    resume = last.is_file() and any(isinstance(c, ResumeState) for c in trainer.callbacks)
    if resume:
        import logging

        logging.getLogger("maskllp").warning("continued a killed run from its checkpoint %s", last)
    trainer.fit(module, *loaders, **kwargs, ckpt_path=str(last) if resume else None,
                weights_only=True if resume else None)


def is_global_zero() -> bool:
    """False in the extra processes of a multi-GPU (DDP) run: only rank 0 chooses settings and saves."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def parse_devices(devices: str) -> str | int | list[int]:
    """``"auto"`` -> ``"auto"``, ``"4"`` -> 4, ``"0,1"`` -> [0, 1] (Lightning's forms)."""
    d = devices.strip()
    if d == "auto" or d == "-1":
        return d if d == "auto" else -1
    if "," in d:
        return [int(x) for x in d.split(",") if x.strip()]
    return int(d)


def single_device(cfg: TrainerConfig) -> TrainerConfig:
    """``cfg`` for a run of many short fits in one process (cross-validation): ``devices = "auto"``
    becomes one device, so a multi-GPU machine does not start a DDP launch per fold; an explicit
    request for several devices is refused (train one model on several with ``train proportion``).
    """
    devices = parse_devices(cfg.devices)
    if devices == "auto":
        return replace(cfg, devices="1")
    several = devices == -1 or (isinstance(devices, int) and devices > 1) or (
        isinstance(devices, list) and len(devices) > 1)
    if several:
        raise InputError("trainer.devices", f"cross-validation trains one fold at a time on one device, "
                         f"not {cfg.devices!r}; set devices = \"1\" (several devices: train proportion)")
    return cfg


def bf16_native(accelerator: str) -> bool:
    """Whether the device training will run on computes bf16 natively (else bf16 is emulated and
    slower than fp32)."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return device_bf16_native(torch.device("cuda" if gpu else "cpu"))


def resolve_precision(cfg: TrainerConfig) -> str:
    """``cfg.precision``, with ``auto`` resolved (:func:`bf16_native`)."""
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if bf16_native(cfg.accelerator) else "32-true"


def build_trainer(
    cfg: TrainerConfig,
    out_dir: Path,
    *,
    max_epochs: int,
    patience: int | None,
    monitor: str = "val_loss",
    mode: str = "min",
    max_steps: int = -1,
    has_validation: bool = True,
    save_checkpoints: bool = False,
    progress_bar: bool | None = None,
) -> tuple[L.Trainer, BestWeights]:
    """A configured Trainer and its :class:`BestWeights` callback (call ``fit`` on the first).

    ``out_dir`` receives ``logs/`` (CSV metrics) and, with ``save_checkpoints``, ``checkpoints/``.
    ``progress_bar`` overrides ``cfg.progress_bar`` (False for runs of many tiny epochs).
    """
    quiet_lightning()
    out_dir = Path(out_dir)
    best = BestWeights(monitor, mode)
    callbacks: list[Callback] = [best]
    if has_validation and patience is not None and patience > 0:
        # checked after each validation only: a run stopped by max_steps mid-epoch has none to check
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                       check_on_train_epoch_end=False))
    if cfg.resume_checkpoints:
        callbacks += [ResumeState(), ModelCheckpoint(dirpath=out_dir / RESUME_FOLDER, filename="last",
                                                     save_top_k=1, monitor=None, every_n_epochs=1,
                                                     save_on_train_epoch_end=True,
                                                     enable_version_counter=False)]
    if save_checkpoints:
        callbacks.append(
            ModelCheckpoint(
                dirpath=out_dir / "checkpoints",
                monitor=monitor if has_validation else None,
                mode=mode,
                save_top_k=1,
                save_last=True,
            )
        )
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=parse_devices(cfg.devices),
        strategy=cfg.strategy,
        precision=resolve_precision(cfg),
        max_epochs=max_epochs,
        max_steps=max_steps,
        callbacks=callbacks,
        logger=CSVLogger(out_dir, name="logs", version=""),
        enable_progress_bar=cfg.progress_bar if progress_bar is None else progress_bar,
        enable_model_summary=False,
        enable_checkpointing=save_checkpoints or cfg.resume_checkpoints,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if has_validation else 0,
        default_root_dir=out_dir,
    )
    return trainer, best
