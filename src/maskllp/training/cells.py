"""Training of the cell-level method (``ours-cells``): bags of tumour cells, the cores' interval labels
and the clicked cells of the point-annotated cores.

Each training core is a bag: the features of its tumour cells (stain measurements, trunk features)
and, where the core's points file clicked positive / negative tumour cells, those cells' labels.
The loss of a batch is the method's bag loss (:class:`maskllp.proportion.losses.BagLoss`: a proportion
loss on the bags' mean p(positive), or the likelihood of the labelled interval under the count of
positive cells) plus ``click_weight`` times the cross-entropy of the
clicked cells. Features are computed once per cohort (stage 1 with measurements, cached with the
masks), so a fit takes seconds on a CPU. Training goes through the one Trainer builder
(:func:`maskllp.training.trainer.build_trainer`): early stopping on the validation loss, the best
epoch's weights kept.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset

from maskllp.classes import ClassMapping
from maskllp.config import Config
from maskllp.detection.cells import DetectedCells
from maskllp.detection.measurements import MEASUREMENT_NAMES, STAIN_OF_COLUMN
from maskllp.detection.patches import OD_STEPS_PER_UNIT, PATCH_CHANNELS
from maskllp.errors import InputError
from maskllp.evaluation.detection_metrics import match_points
from maskllp.evaluation.metrics import interval_metrics
from maskllp.intervals import IntervalScheme
from maskllp.io.manifest import CohortEntry, clicked_tumour_cells
from maskllp.predictions import UNDEFINED
from maskllp.proportion.cells import (
    CellBag,
    CellEnsembleNet,
    CellNetSpec,
    CellPositivityNet,
    CellProportionModel,
    fit_call_bias,
)
from maskllp.proportion.losses import BagLoss, BagMeanLoss, bag_means
from maskllp.proportion.model import TrainingSummary
from maskllp.proportion.uncertainty import RANGE_LEVEL, fit_range_temperature, interval_margin
from maskllp.training.proportion import validation_split
from maskllp.training.trainer import BestWeights, build_trainer, fit

log = logging.getLogger("maskllp")


def feature_names(n_trunk: int) -> list[str]:
    """Names of the cell features: the stain measurements, then ``trunk 0`` ... ``trunk n-1``."""
    return list(MEASUREMENT_NAMES) + [f"trunk {k}" for k in range(n_trunk)]


def click_labels(tumour_yx: np.ndarray, entry: CohortEntry, mapping: ClassMapping, radius_px: float
                 ) -> np.ndarray:
    """(n,) int8 labels of tumour cells at level-0 ``tumour_yx``: 1 / 0 where a clicked positive /
    negative tumour cell of ``entry``'s points or partial points file matches (one-to-one within
    ``radius_px``), -1 elsewhere (and everywhere for a core without clicks)."""
    labels = np.full(len(tumour_yx), -1, np.int8)
    if not len(tumour_yx):
        return labels
    yx, positive = clicked_tumour_cells(entry, mapping)
    if not len(yx):
        return labels
    p, t = match_points(tumour_yx, yx, radius_px)
    labels[p] = positive[t].astype(np.int8)
    return labels


def make_bag(name: str, interval: int | None, cells: DetectedCells, entry: CohortEntry | None,
             config: Config, threshold: float, n_trunk: int, patches: bool = False) -> CellBag:
    """The bag of one core: its tumour cells' features (and with ``patches`` their patches) and,
    from ``entry``'s clicks, their labels."""
    features = cells.tumour_features(threshold, n_trunk)
    tumour_yx = cells.yx[cells.is_tumour(threshold)]
    labels = (click_labels(tumour_yx, entry, config.classes, config.detector.match_radius_um / cells.mpp)
              if entry is not None else np.full(len(features), -1, np.int8))
    return CellBag(name, interval, features, labels, cells.tumour_patches(threshold) if patches else None)


class _Bags(Dataset):
    def __init__(self, bags: Sequence[CellBag]) -> None:
        self.bags = list(bags)

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, index: int) -> CellBag:
        return self.bags[index]


def collate_bags(batch: list[CellBag]) -> dict[str, torch.Tensor]:
    """Bags -> ``features`` (M, F), ``bag`` (M,) int64 index of each cell's bag, ``labels`` (M,)
    int64 (-1 unknown), ``interval`` (B,) int64 (-1 unlabelled), ``pseudo`` (M,) int64 self-labels
    (-1 none), and when the bags carry patches
    ``patches`` (M, 2, S, S) uint8."""
    features = torch.from_numpy(np.concatenate([b.features for b in batch]).astype(np.float32))
    bag = torch.cat([torch.full((len(b.features),), i, dtype=torch.int64) for i, b in enumerate(batch)])
    labels = torch.from_numpy(np.concatenate([b.labels for b in batch]).astype(np.int64))
    interval = torch.tensor([-1 if b.interval is None else b.interval for b in batch], dtype=torch.int64)
    none = [np.full(len(b.features), -1, np.int8) if b.pseudo is None else b.pseudo for b in batch]
    pseudo = torch.from_numpy(np.concatenate(none).astype(np.int64))
    out = {"features": features, "bag": bag, "labels": labels, "interval": interval, "pseudo": pseudo}
    if batch and batch[0].patches is not None:
        out["patches"] = torch.from_numpy(np.concatenate([b.patches for b in batch]))  # type: ignore[misc]
    return out


def turned_patches(patches: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(M, C, S, S) patches, each turned by a random one of the 8 rotations / reflections of the
    square (a cell has no up or down), drawn independently per cell."""
    code = torch.randint(0, 8, (len(patches),), generator=generator)
    out = patches.clone()
    for k in range(8):
        pick = code == k
        if bool(pick.any()):
            turned = torch.rot90(patches[pick], k % 4, dims=(2, 3))
            out[pick] = turned.flip(3) if k >= 4 else turned
    return out


def interval_consistent_labels(p: np.ndarray, interval: int, scheme: IntervalScheme) -> np.ndarray:
    """(n,) p(positive) of one bag's cells and its labelled interval -> (n,) int8 hard labels whose
    count agrees with the label: the k cells of highest p are positive, k the count nearest sum(p)
    among those with k / n in the interval (:meth:`IntervalScheme.index_of`'s convention). All -1
    when no count of n cells falls in the interval (e.g. 3 cells and '1-25 %').

    The label step of alternating training for learning from label proportions (Yu et al. 2013,
    "proportion-SVM"), with an interval instead of an exact proportion."""
    n = len(p)
    counts = np.arange(n + 1)
    allowed = counts[scheme.index_of(counts / max(n, 1)) == interval] if n else counts[:0]
    if not len(allowed):
        return np.full(n, -1, np.int8)
    k = int(allowed[np.argmin(np.abs(allowed - float(np.sum(p))))])
    labels = np.zeros(n, np.int8)
    labels[np.argsort(-np.asarray(p, np.float64), kind="stable")[:k]] = 1
    return labels


def stain_affine(features: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The cell features as they would be measured on stains scaled and shifted in optical density.

    features: (M, F) float, the first ``len(MEASUREMENT_NAMES)`` columns stain measurements (any
    trunk features after them are left alone); scale, shift: (M, 2) float per cell for (hematoxylin,
    DAB), scale > 0. Returns a new (M, F) tensor whose measurement columns are ``scale * x + shift``
    of their stain (:data:`maskllp.detection.measurements.STAIN_OF_COLUMN`): what
    :func:`maskllp.detection.measurements.stain_measurements` gives on the transformed stains."""
    stain = torch.as_tensor(STAIN_OF_COLUMN, dtype=torch.int64, device=features.device)
    n = len(STAIN_OF_COLUMN)
    out = features.clone()
    out[:, :n] = features[:, :n] * scale[:, stain] + shift[:, stain]
    return out


def stain_jittered(features: torch.Tensor, bag: torch.Tensor, n_bags: int, strength: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(M, F) cell features, each bag (core) re-stained by its own random HED jitter (Tellez et al.
    2018, as :func:`maskllp.detection.augment.stain_jitter` does to an image): hematoxylin and DAB
    each scaled by ``1 + U(-s, s)`` and shifted by ``U(-s, s)``, one draw per core, so that all cells
    of a core move together as they do between slides and labs. bag: (M,) int64 bag of each cell.
    ``strength`` 0 returns ``features`` itself."""
    if strength <= 0:
        return features
    draw = torch.rand((2, n_bags, 2), generator=generator, dtype=torch.float64).to(features)
    scale, shift = 1.0 + strength * (2 * draw[0] - 1), strength * (2 * draw[1] - 1)
    return stain_affine(features, scale[bag], shift[bag])


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Elementwise entropy (nats) of Bernoulli(sigmoid(logits)), computed stably from the logits."""
    p = torch.sigmoid(logits)
    return F.softplus(logits) - p * logits


class CellBagModule(L.LightningModule):
    """The cell network, the method's proportion loss over bags, and the clicked cells' cross-entropy."""

    def __init__(self, net: CellPositivityNet, loss: nn.Module, scheme: IntervalScheme, click_weight: float,
                 lr: float, weight_decay: float, entropy_weight: float = 0.0,
                 self_label_weight: float = 0.0, stain_jitter: float = 0.0) -> None:
        super().__init__()
        self.net, self.scheme = net, scheme
        self.loss = loss if isinstance(loss, BagLoss) else BagMeanLoss(loss)
        """Over bags: a proportion loss of the cores' mean p(positive), or a likelihood of the counts."""
        self.click_weight, self.lr, self.weight_decay = click_weight, lr, weight_decay
        self.entropy_weight, self.self_label_weight = entropy_weight, self_label_weight
        self.stain_jitter = stain_jitter
        self._val_true: list[torch.Tensor] = []
        self._val_pred: list[torch.Tensor] = []

    def _loss(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        total = self.loss(logits, batch["bag"], batch["interval"])
        clicked = batch["labels"] >= 0
        if self.click_weight > 0 and bool(clicked.any()):
            total = total + self.click_weight * F.binary_cross_entropy_with_logits(
                logits[clicked], batch["labels"][clicked].to(logits.dtype))
        pseudo = batch["pseudo"] >= 0
        if self.self_label_weight > 0 and bool(pseudo.any()):
            total = total + self.self_label_weight * F.binary_cross_entropy_with_logits(
                logits[pseudo], batch["pseudo"][pseudo].to(logits.dtype))
        if self.entropy_weight > 0 and len(logits):
            total = total + self.entropy_weight * binary_entropy(logits).mean()
        return total

    def _logits(self, batch: dict[str, torch.Tensor], train: bool = False) -> torch.Tensor:
        patches, features = batch.get("patches"), batch["features"]
        if train:
            patches = turned_patches(patches) if patches is not None else None
            features = stain_jittered(features, batch["bag"], len(batch["interval"]), self.stain_jitter)
        return self.net(features, patches)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, self._logits(batch, train=True))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["interval"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self._logits(batch)
        self.log("val_loss", self._loss(batch, logits), on_epoch=True, sync_dist=True,
                 batch_size=len(batch["interval"]))
        r_hat, counts = bag_means(torch.sigmoid(logits), batch["bag"], len(batch["interval"]))
        inner = torch.as_tensor(self.scheme.boundaries[1:-1], dtype=r_hat.dtype, device=r_hat.device)
        pred = torch.where(counts > 0, torch.bucketize(r_hat.detach(), inner, right=True),
                           torch.full_like(batch["interval"], UNDEFINED))
        keep = batch["interval"] >= 0
        self._val_true.append(batch["interval"][keep])
        self._val_pred.append(pred[keep])

    def on_validation_epoch_end(self) -> None:
        if not self._val_true:
            return
        true, pred = torch.cat(self._val_true), torch.cat(self._val_pred)
        self._val_true, self._val_pred = [], []
        if len(true):
            mf1 = interval_metrics(true.cpu().numpy(), pred.cpu().numpy(), len(self.scheme)).mf1
            self.log("val_mf1", mf1, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _fit_bags(train: Sequence[CellBag], val: Sequence[CellBag], spec: CellNetSpec, loss: nn.Module,
              scheme: IntervalScheme, config: Config, work_dir: Path, max_epochs: int, patience: int,
              seed_offset: int = 0) -> tuple[CellPositivityNet, BestWeights]:
    """A cell network trained on ``train`` from the run's seed plus ``seed_offset`` (early stopping
    on ``val`` when given, else ``max_epochs`` epochs); returns it (on the CPU) with the best-epoch
    callback."""
    cc = config.proportion.cells
    L.seed_everything(config.trainer.seed + seed_offset, workers=True, verbose=False)
    net = CellPositivityNet(spec)
    net.standardise_on(torch.from_numpy(np.concatenate([b.features for b in train]).astype(np.float32)))
    module = CellBagModule(net, loss, scheme, cc.click_weight, cc.lr, cc.weight_decay, cc.entropy_weight,
                           cc.self_label_weight, cc.stain_jitter)
    train_loader = DataLoader(_Bags(train), batch_size=cc.batch_size, shuffle=True, collate_fn=collate_bags)
    val_loader = DataLoader(_Bags(val), batch_size=cc.batch_size, collate_fn=collate_bags) if val else None
    trainer, best = build_trainer(config.trainer, work_dir, max_epochs=max_epochs,
                                  patience=patience if val else None, has_validation=bool(val),
                                  progress_bar=False)
    with warnings.catch_warnings():  # the final fit on every core has no validation, on purpose
        warnings.filterwarnings("ignore", message=".*validation_step.*no `val_dataloader`")
        fit(trainer, module, work_dir, train_loader, val_loader)
    return module.net.cpu(), best


def _self_labelled(bag: CellBag, model: CellProportionModel, scheme: IntervalScheme) -> CellBag:
    """``bag`` with the self-labels of ``model``'s p(positive) (clicked cells and unlabelled cores:
    none)."""
    if bag.interval is None:
        return bag
    p = CellProportionModel.probabilities_of(model.cell_logits(bag.features, bag.patches))
    pseudo = interval_consistent_labels(p, bag.interval, scheme)
    pseudo[bag.labels >= 0] = -1
    return replace(bag, pseudo=pseudo)


def split_bags(bags: Sequence[CellBag], fraction: float, seed: int) -> tuple[list[CellBag], list[CellBag]]:
    """(train, validation) bags: ``fraction`` of the cores that carry an interval label and no clicked
    cell held out, stratified by interval (``validation_split``); everything else trains, in order.

    The clicked cores always train: they are the only per-cell supervision (a few cores), and one of
    them in the validation split let its clicks' cross-entropy dominate the validation loss (the
    Table 1 cohort of seed 9: early stopping at epoch 5 or 6 in two folds of four)."""
    candidates = [i for i, b in enumerate(bags) if b.interval is not None and not (b.labels >= 0).any()]
    _, held = validation_split(np.array([bags[i].interval for i in candidates], np.int64), fraction, seed)
    held_out = {candidates[i] for i in held}
    return ([b for i, b in enumerate(bags) if i not in held_out], [bags[i] for i in sorted(held_out)])


def train_cell_model(bags: Sequence[CellBag], method_name: str, loss: nn.Module, n_trunk: int, config: Config,
                     out_dir: str | Path) -> CellProportionModel:
    """Train the cell network on ``bags`` (labelled cores, and cores with clicked cells); logs go to
    ``out_dir/logs``. When the bags carry patches the network also reads them
    (``cells.patch_max_epochs`` / ``patch_patience`` then bound the training). The number of epochs
    is chosen by early stopping on a validation split; with ``cells.refit`` (default) the network is
    then trained again, from the same seed, on every training core for that many epochs
    (``out_dir/refit/logs``). With ``cells.ensemble`` K > 1, K networks from the seeds seed ... seed
    + K - 1 are trained that way and their logits averaged. With ``cells.self_label_rounds`` R, R
    rounds follow, each training the network(s) the same way again with the interval-consistent
    self-labels of the previous round's model added (``out_dir/self-label-r``). Cores with clicked
    cells always train: the validation split holds only cores with an interval label alone. Returns
    the model, its ``summary`` filled in; its range temperature and conformal margin are chosen on
    the validation split by the first network, which never saw it."""
    cc, scheme = config.proportion.cells, config.intervals.build()
    usable = [b for b in bags if len(b.features) and (b.interval is not None or (b.labels >= 0).any())]
    skipped = sum(1 for b in bags if b.interval is not None and not len(b.features))
    if skipped:
        log.warning("%s: %d training core(s) without a tumour cell left out", method_name, skipped)
    if not usable:
        raise InputError(None, "no training core with tumour cells and a label or clicked cells",
                         method_name)
    train, val = split_bags(usable, config.proportion.val_fraction, config.trainer.seed)
    patch_side = 0 if usable[0].patches is None else int(usable[0].patches.shape[-1])
    spec = CellNetSpec(len(MEASUREMENT_NAMES), n_trunk, cc.hidden, cc.dropout, patch_side, cc.patch_width,
                       len(PATCH_CHANNELS), OD_STEPS_PER_UNIT)
    max_epochs, patience = ((cc.patch_max_epochs, cc.patch_patience) if patch_side
                            else (cc.max_epochs, cc.patience))
    net, best = _fit_bags(train, val, spec, loss, scheme, config, Path(out_dir), max_epochs, patience)
    summary = TrainingSummary(len(train), len(val), skipped, best.best_epoch,
                              None if best.best_epoch is None else float(best.best))
    first = CellProportionModel(net, method_name, scheme, feature_names(n_trunk), cc.estimate, summary)
    scored = [b for b in val if b.interval is not None]
    scored_logits = [first.cell_logits(b.features, b.patches) for b in scored]
    if cc.calibrate_calls:
        first.call_bias = fit_call_bias(scored_logits, [int(b.interval) for b in scored], scheme)
        scored_logits = [z + np.float32(first.call_bias) for z in scored_logits]
    first.range_temperature = fit_range_temperature(scored_logits, [int(b.interval) for b in scored], scheme)
    ranges = [first.count_range(z) or (np.nan, np.nan) for z in scored_logits]
    margin = interval_margin(np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges]),
                             np.array([int(b.interval) for b in scored]), scheme, RANGE_LEVEL)
    refit = cc.refit and bool(val) and best.best_epoch is not None
    members: list[CellPositivityNet] = []
    if refit:
        epochs = best.best_epoch + 1  # type: ignore[operator]
        log.info("%s: trained again on all %d training cores for %d epochs (the number chosen on %d "
                 "validation cores)%s", method_name, len(usable), epochs, len(val),
                 f", {cc.ensemble} networks" if cc.ensemble > 1 else "")
        for k in range(cc.ensemble):
            where = Path(out_dir) / "refit" / (f"member-{k}" if k else "")
            members.append(_fit_bags(usable, [], spec, loss, scheme, config, where, epochs, patience, k)[0])
        summary = replace(summary, refit_cores=len(usable))
    else:
        members.append(net)
        for k in range(1, cc.ensemble):
            members.append(_fit_bags(train, val, spec, loss, scheme, config, Path(out_dir) / f"member-{k}",
                                     max_epochs, patience, k)[0])
    ensemble = members[0] if len(members) == 1 else CellEnsembleNet(members)
    for r in range(cc.self_label_rounds):
        current = CellProportionModel(ensemble, method_name, scheme, feature_names(n_trunk))
        where = Path(out_dir) / f"self-label-{r + 1}"
        log.info("%s: self-labelling round %d of %d", method_name, r + 1, cc.self_label_rounds)
        if refit:
            again = [_self_labelled(b, current, scheme) for b in usable]
            members = [_fit_bags(again, [], spec, loss, scheme, config, where / (f"member-{k}" if k else ""),
                                 epochs, patience, k)[0] for k in range(cc.ensemble)]
        else:
            again_train = [_self_labelled(b, current, scheme) for b in train]
            again_val = [_self_labelled(b, current, scheme) for b in val]
            members = [_fit_bags(again_train, again_val, spec, loss, scheme, config,
                                 where / (f"member-{k}" if k else ""), max_epochs, patience, k)[0]
                       for k in range(cc.ensemble)]
        ensemble = members[0] if len(members) == 1 else CellEnsembleNet(members)
    model = CellProportionModel(ensemble, method_name, scheme, feature_names(n_trunk), cc.estimate, summary)
    model.range_temperature, model.range_margin = first.range_temperature, margin
    model.call_bias = first.call_bias
    log.info("%s: call bias %.2f, TPS range temperature %.3g, margin %s (chosen on %d validation cores)",
             method_name, model.call_bias, model.range_temperature,
             "none" if margin is None else f"{100 * margin:.1f} pp", len(scored))
    return model
