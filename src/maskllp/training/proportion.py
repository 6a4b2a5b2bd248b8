"""Training of every stage-2 method of Table 1: one Lightning module, one data module, one function.

What differs between the methods reaches this module as a
:class:`~maskllp.proportion.model.Stage2Recipe` (network, loss, whether the mask is used), built by
the method registry (:meth:`maskllp.methods.Method.recipe`).

:func:`train_proportion_model` holds out a stratified validation split of the training cores
(``proportion.val_fraction``), trains with Adam (``proportion.lr``, batch ``proportion.batch_size``,
up to ``proportion.max_epochs``) through :func:`maskllp.training.trainer.build_trainer`, stops early
after ``proportion.patience`` epochs without improvement of ``proportion.monitor`` (the method's
validation loss by default; or validation macro-F1, also logged every epoch) and returns the
weights of the best epoch.

Cores whose r_hat is undefined (a masked method and an empty tumour mask) cannot contribute to a
proportion loss: they are left out of training and validation, with a warning that counts them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from maskllp.classes import ClassMapping
from maskllp.config import Config
from maskllp.errors import InputError
from maskllp.evaluation.metrics import interval_metrics
from maskllp.intervals import IntervalScheme
from maskllp.io.images import open_image
from maskllp.io.manifest import clicked_tumour_cells
from maskllp.proportion.inputs import InputSpec, Stage2Dataset, Stage2Item, collate_inputs
from maskllp.proportion.losses import ClickShareLoss
from maskllp.proportion.model import ProportionModel, Stage2Recipe, TrainingSummary, predicted_intervals
from maskllp.proportion.network import HeadOutput, ProportionNet
from maskllp.proportion.uncertainty import RANGE_LEVEL, interval_margin
from maskllp.training.trainer import build_trainer, fit

log = logging.getLogger("maskllp")


class ProportionModule(L.LightningModule):
    """A stage-2 network and its method's loss; logs ``train_loss``, ``val_loss`` and ``val_mf1``.

    With ``click_weight`` > 0 (map head) and batches that carry ``clicks``, training adds
    ``click_weight`` times the :class:`~maskllp.proportion.losses.ClickShareLoss` of the clicked
    tumour cells (logged as ``train_click_loss``); validation watches the method's loss alone.
    """

    def __init__(self, net: ProportionNet, loss: nn.Module, scheme: IntervalScheme, lr: float,
                 schedule: str = "constant", warmup_fraction: float = 0.0, click_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.scheme = scheme
        self.lr = lr
        self.schedule = schedule
        self.warmup_fraction = warmup_fraction
        self.click_weight = click_weight
        self.click_loss = ClickShareLoss()
        self._val_true: list[torch.Tensor] = []
        self._val_pred: list[torch.Tensor] = []

    def _step_loss(self, batch: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor | None, torch.Tensor, HeadOutput]:
        out = self.net(batch["image"], batch["mask"], batch["extent"])
        keep = out.defined
        loss = self.loss(out.loss_input[keep], batch["interval"][keep]) if bool(keep.any()) else None
        return loss, predicted_intervals(out, self.scheme), out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss, _, out = self._step_loss(batch)
        n = batch["interval"].shape[0]
        if self.click_weight > 0 and "clicks" in batch and out.maps is not None:
            click = self.click_loss(out.maps, batch["clicks"])
            self.log("train_click_loss", click, batch_size=n)
            loss = self.click_weight * click if loss is None else loss + self.click_weight * click
        if loss is not None:
            self.log("train_loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, pred, _ = self._step_loss(batch)
        if loss is not None:
            self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=pred.shape[0])
        self._val_true.append(batch["interval"].detach())
        self._val_pred.append(pred)

    def on_validation_epoch_end(self) -> None:
        if not self._val_true:
            return
        true, pred = torch.cat(self._val_true), torch.cat(self._val_pred)
        self._val_true, self._val_pred = [], []
        if self.trainer.world_size > 1:
            true, pred = self.all_gather(true).flatten(), self.all_gather(pred).flatten()
        mf1 = interval_metrics(true.cpu().numpy(), pred.cpu().numpy(), len(self.scheme)).mf1
        self.log("val_mf1", mf1, prog_bar=True, sync_dist=True)  # equal on every rank (gathered)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        if self.schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, self.warmup_fraction))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """The learning-rate factor at each step: linear from 1/w to 1 over the first w = warmup_fraction
    * total steps, then a cosine from 1 down to 0 at ``total_steps``."""
    warm = max(1, int(round(total_steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class ProportionDataModule(L.LightningDataModule):
    """Training items (augmented, shuffled) and validation items (as they are)."""

    def __init__(self, train: list[Stage2Item], val: list[Stage2Item], batch_size: int,
                 augment: bool, num_workers: int = 0, clicks: bool = False) -> None:
        super().__init__()
        self.train_items, self.val_items = train, val
        self.batch_size, self.augment, self.num_workers = batch_size, augment, num_workers
        self.clicks = clicks

    def train_dataloader(self) -> DataLoader:
        # drop a last batch of one core: batch-norm statistics of a 1-core batch are degenerate
        drop_last = len(self.train_items) % self.batch_size == 1 and len(self.train_items) > 1
        return DataLoader(Stage2Dataset(self.train_items, self.augment, self.clicks),
                          batch_size=self.batch_size, shuffle=True, drop_last=drop_last,
                          num_workers=self.num_workers, collate_fn=collate_inputs)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Stage2Dataset(self.val_items), batch_size=self.batch_size,
                          num_workers=self.num_workers, collate_fn=collate_inputs)


def validation_split(intervals: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of the cores held out, stratified by interval.

    Stratified when every interval present has at least two cores and both sides can hold one core
    per interval; otherwise a plain random split. ``fraction`` 0 or
    fewer than 2 cores: no validation.
    """
    n = len(intervals)
    idx = np.arange(n)
    n_val = int(round(fraction * n))
    if n_val < 1 or n < 2:
        return idx, idx[:0]
    n_val = min(n_val, n - 1)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(intervals)
    n_classes = int((counts > 0).sum())
    can_stratify = counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= n_classes
    stratify = intervals if can_stratify else None
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def canvas_clicks(item: Stage2Item, mapping: ClassMapping) -> np.ndarray | None:
    """(K, 3) float64 canvas row, column and 1 / 0 of the clicked positive / negative tumour cells of
    ``item``'s points and partial points files (:attr:`~maskllp.proportion.inputs.Stage2Item.clicks`);
    None for a core without such clicks. Level-0 points are placed on the canvas where
    :meth:`~maskllp.proportion.inputs.InputSpec.fit` put the core."""
    entry = item.entry
    if entry is None:
        return None
    yx, positive = clicked_tumour_cells(entry, mapping)
    if not len(yx):
        return None
    level0 = tuple(open_image(entry.image, entry.mpp).shape)
    return np.column_stack([item.input_fit().from_level0(yx, level0), positive.astype(np.float64)])


def with_clicks(items: list[Stage2Item], mapping: ClassMapping) -> list[Stage2Item]:
    """``items`` with their :func:`canvas_clicks` attached (the same item where there are none)."""
    out = []
    for it in items:
        clicks = canvas_clicks(it, mapping)
        out.append(it if clicks is None else dataclasses.replace(it, clicks=clicks))
    return out


def split_items(items: list[Stage2Item], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of :func:`validation_split` over the items without clicks; items with
    clicks always train (they are the only per-cell supervision, as in
    :func:`maskllp.training.cells.split_bags`)."""
    idx = np.arange(len(items))
    clicked = np.array([it.clicks is not None for it in items], dtype=bool)
    free = idx[~clicked]
    train, val = validation_split(np.array([items[i].interval for i in free], np.int64), fraction, seed)
    return np.sort(np.concatenate([idx[clicked], free[train]])), free[val]


def usable_items(items: list[Stage2Item], uses_mask: bool) -> tuple[list[Stage2Item], int]:
    """Labelled items a method can learn from, and how many were left out for an empty mask."""
    labelled = [it for it in items if it.interval is not None]
    if not uses_mask:
        return labelled, 0
    kept = [it for it in labelled if it.has_tumour]
    return kept, len(labelled) - len(kept)


def train_proportion_model(
    items: list[Stage2Item], recipe: Stage2Recipe, config: Config, out_dir: str | Path
) -> ProportionModel:
    """Train ``recipe`` on ``items`` (prepared cores with labels); logs go to ``out_dir/logs``.

    Returns the fitted model (weights of the best validation epoch), its ``summary`` filled in.
    """
    pc, scheme = config.proportion, config.intervals.build()
    kept, skipped = usable_items(items, recipe.uses_mask)
    if skipped:
        log.warning("%s: %d training core(s) with an empty tumour mask left out (r_hat undefined)",
                    recipe.name, skipped)
    if not kept:
        raise InputError(None, "no labelled training core with tumour in its mask", recipe.name)
    clicks = pc.click_weight > 0 and recipe.spec.head == "maps"
    if clicks:
        kept = with_clicks(kept, config.classes)
        log.info("%s: clicked tumour cells of %d training core(s) supervise the maps (click_weight %g)",
                 recipe.name, sum(it.clicks is not None for it in kept), pc.click_weight)
    train_idx, val_idx = split_items(kept, pc.val_fraction, config.trainer.seed)  # no clicks: a plain split
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    net = ProportionNet(recipe.spec, pc.pretrained_weights)
    module = ProportionModule(net, recipe.loss, scheme, pc.lr, pc.schedule, pc.warmup_fraction,
                              pc.click_weight if clicks else 0.0)
    data = ProportionDataModule([kept[i] for i in train_idx], [kept[i] for i in val_idx],
                                pc.batch_size, pc.augment, config.trainer.num_workers, clicks)
    trainer, best = build_trainer(
        config.trainer, Path(out_dir), max_epochs=pc.max_epochs, patience=pc.patience,
        monitor=pc.monitor, mode="max" if pc.monitor == "val_mf1" else "min",
        max_steps=pc.max_steps, has_validation=len(val_idx) > 0,
    )
    fit(trainer, module, Path(out_dir), datamodule=data)
    summary = TrainingSummary(len(train_idx), len(val_idx), skipped, best.best_epoch,
                              None if best.best_epoch is None else float(best.best))
    model = ProportionModel(module.net.cpu(), recipe.name, scheme, InputSpec.from_config(pc), summary)
    if len(val_idx):  # the TPS range of predict: validation cores only
        val = [kept[i] for i in val_idx]
        ranges = [model.base_range(p) or (np.nan, np.nan) for p in model.predict_items(val, pc.batch_size)]
        lows, highs = np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])
        model.range_margin = interval_margin(lows, highs, np.array([it.interval for it in val]), scheme,
                                             RANGE_LEVEL)
    return model
