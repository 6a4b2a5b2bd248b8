"""A fitted stage-2 model: predict proportions and intervals, save to and load from a model folder.

Predictions of the map methods are r_hat = s_p / (s_p + s_n) and its interval, or **undefined**
(``proportion`` and ``interval`` None) when the tumour mask is empty. ``Class`` and ``O-Reg``
predict an interval only; their ``proportion`` is the midpoint of that interval (a point estimate
for the proportion errors), and ``s_p``/``s_n`` are None. Decoding: ``Class`` takes the arg-max
logit; ``O-Reg`` counts its cumulative outputs above 0.5 (logit > 0), so outputs [1, 1, 0, 0] give
interval 2 even when they are not monotone.

Model folder (kind ``proportion``): ``config.json`` holds the method name, the network spec and
the input geometry (:class:`~maskllp.proportion.inputs.InputSpec`); ``thresholds.json`` the interval
scheme; ``weights.safetensors`` the network (``net.``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskllp.config.inference import VIEW_COUNTS
from maskllp.errors import InputError, NonFiniteOutputError
from maskllp.intervals import SCHEMES, IntervalScheme, scheme_from_boundaries
from maskllp.io.model_folder import ModelFolder, load_model_folder, load_network_weights, save_model_folder
from maskllp.predictions import UNDEFINED, ProportionPrediction
from maskllp.proportion.inputs import (
    InputFit,
    InputSpec,
    Stage2Item,
    augment_tensors,
    collate_inputs,
    core_tensors,
)
from maskllp.proportion.masked import proportion_from_sums
from maskllp.proportion.network import HeadOutput, NetworkSpec, ProportionNet
from maskllp.proportion.uncertainty import widen_range

MODEL_KIND = "proportion"


@dataclass(frozen=True)
class Stage2Recipe:
    """One stage-2 method as training sees it: its registry name, network and loss."""

    name: str
    spec: NetworkSpec
    loss: nn.Module

    @property
    def uses_mask(self) -> bool:
        """Whether r_hat is summed over the tumour mask (and so undefined for an empty one)."""
        return self.spec.head == "maps" and self.spec.masked


@dataclass(frozen=True)
class TrainingSummary:
    """What happened in a training run besides the weights."""

    n_train: int
    n_val: int
    n_skipped: int
    """Labelled cores left out because their r_hat is undefined (empty tumour mask)."""
    best_epoch: int | None
    best_score: float | None
    """Best value of the monitored validation metric (None without validation)."""
    refit_cores: int | None = None
    """When the network was trained again on every training core (validation ones included) for
    ``best_epoch + 1`` epochs (the cell method's ``refit``): how many; None otherwise."""

    def describe(self) -> str:
        """``"120 training and 30 validation cores, best epoch 57"`` (+ the refit, the left-out cores)."""
        text = f"{self.n_train} training and {self.n_val} validation cores"
        if self.n_skipped:
            text += f", {self.n_skipped} left out (empty tumour mask)"
        return text + f", best epoch {self.best_epoch}" + self.refit_note()

    def refit_note(self) -> str:
        """``", then trained on all 150 for 58 epochs"`` when there was a refit, else ``""``."""
        if self.refit_cores is None or self.best_epoch is None:
            return ""
        return f", then trained on all {self.refit_cores} for {self.best_epoch + 1} epochs"


def predicted_intervals(out: HeadOutput, scheme: IntervalScheme) -> torch.Tensor:
    """(N,) int64 predicted interval per core, ``UNDEFINED`` (-1) where r_hat is undefined."""
    if out.r_hat is not None:
        inner = torch.as_tensor(scheme.boundaries[1:-1], dtype=torch.float64, device=out.r_hat.device)
        k = torch.bucketize(out.r_hat.detach().double(), inner, right=True)
        return torch.where(out.defined, k, torch.full_like(k, UNDEFINED))
    assert out.logits is not None
    logits = out.logits.detach()
    if logits.shape[1] == len(scheme):
        return logits.argmax(dim=1)
    return (logits > 0).sum(dim=1)


VIEWS: tuple[tuple[int, bool, bool], ...] = (
    (0, False, False), (0, True, False), (0, False, True), (2, False, False),
    (1, False, False), (1, True, False), (3, False, False), (3, True, False))
"""The eight views of a core (quarter turns, horizontal flip, vertical flip; as
:func:`~maskllp.proportion.inputs.augment_tensors` applies them): the identity first, then the
flips and the half turn (which keep the canvas shape), then the quarter turns. Together: every
rotation and reflection of the square."""


def _row(out: HeadOutput, row: int) -> HeadOutput:
    """Core ``row`` of a batch's output, as a batch of one (maps dropped: not needed here)."""
    pick = slice(row, row + 1)
    return HeadOutput(defined=out.defined[pick],
                      sums=None if out.sums is None else out.sums[pick],
                      r_hat=None if out.r_hat is None else out.r_hat[pick],
                      logits=None if out.logits is None else out.logits[pick])


def _mean_output(views: Sequence[HeadOutput]) -> HeadOutput:
    """One core's outputs under several views -> one output: mean s_p and s_n (the proportion their
    ratio; undefined unless defined in every view), or mean logits."""
    defined = torch.stack([v.defined for v in views]).all(dim=0)
    if views[0].sums is not None:
        sums = torch.stack([v.sums.float() for v in views]).mean(dim=0)  # type: ignore[union-attr]
        r_hat, ok = proportion_from_sums(sums, defined.to(sums.dtype))
        return HeadOutput(defined=ok & defined, sums=sums, r_hat=r_hat)
    logits = torch.stack([v.logits.float() for v in views]).mean(dim=0)  # type: ignore[union-attr]
    return HeadOutput(defined=defined, logits=logits)


def decode_predictions(out: HeadOutput, scheme: IntervalScheme) -> list[ProportionPrediction]:
    """A batch of network outputs -> one :class:`ProportionPrediction` per core.

    Raises :class:`~maskllp.errors.NonFiniteOutputError` when an output is NaN or infinite.
    """
    for name, value in (("logits", out.logits), ("s_p / s_n", out.sums)):
        if value is not None and not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteOutputError(f"the network's {name} are NaN or infinite (damaged weights, or "
                                       "training that diverged)")
    intervals = predicted_intervals(out, scheme).cpu().tolist()
    if out.r_hat is None:
        mids = scheme.midpoints
        return [ProportionPrediction(float(mids[k]), int(k)) for k in intervals]
    assert out.sums is not None
    sums = out.sums.detach().double().cpu().tolist()
    r_hat = out.r_hat.detach().double().cpu().tolist()
    defined = out.defined.cpu().tolist()
    return [
        ProportionPrediction(r if ok else None, k if ok else None, sp, sn)
        for k, ok, r, (sp, sn) in zip(intervals, defined, r_hat, sums, strict=True)
    ]


def scheme_to_mapping(scheme: IntervalScheme) -> dict[str, Any]:
    return {"name": scheme.name, "boundaries": scheme.boundaries.tolist(), "names": scheme.names}


def scheme_from_mapping(data: dict[str, Any]) -> IntervalScheme:
    """Rebuild a scheme written by :func:`scheme_to_mapping` (the registered one when it matches)."""
    known = SCHEMES.get(str(data["name"]))
    if known is not None and np.allclose(known.boundaries, data["boundaries"]) \
            and known.names == list(data["names"]):
        return known
    return scheme_from_boundaries(str(data["name"]), data["boundaries"], data["names"])


class ProportionModel:
    """A stage-2 network in eval mode with what it needs to turn cores into predictions."""

    def __init__(self, net: ProportionNet, method_name: str, scheme: IntervalScheme, spec: InputSpec,
                 summary: TrainingSummary | None = None) -> None:
        self.net = net.eval()
        self.method_name = method_name
        """The registry name of the Table 1 method it was trained as (``maskllp.methods``)."""
        self.scheme = scheme
        self.input = spec
        """How a core becomes the network's input (kept in the folder: prediction sees it alike)."""
        self.summary = summary
        """How training went (None for a model loaded from a folder)."""
        self.range_margin: float | None = None
        """The split-conformal margin of its validation cores
        (:func:`~maskllp.proportion.uncertainty.interval_margin`): the TPS range ``predict``
        reports is :meth:`base_range` widened by it; None: no range (no validation cores, folders
        saved before it existed)."""

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> ProportionModel:
        """Move the network (e.g. to ``cuda`` for fast prediction); returns self."""
        self.net.to(device)
        return self

    @torch.no_grad()
    def forward(self, cores: Sequence[dict[str, torch.Tensor]]) -> HeadOutput:
        """Cores' tensors (:func:`~maskllp.proportion.inputs.core_tensors`) -> one batch's output."""
        batch = collate_inputs(cores)
        return self.net(batch["image"].to(self.device), batch["mask"].to(self.device),
                        batch["extent"].to(self.device))

    def predict_cores(self, cores: Sequence[tuple[np.ndarray, np.ndarray, InputFit]], batch_size: int = 8,
                      views: int = 1) -> list[ProportionPrediction]:
        """(image (H, W, 3) uint8, mask (H, W) bool, fit) per core -> one prediction per core.

        Only inputs of one canvas shape share a batch, so no core is padded further and each
        prediction is the one the core gets alone (padding would move the canvas edge, which a
        convolutional network sees). ``views`` 1, 2, 4 or 8: the first of :data:`VIEWS` (flips, then
        quarter turns: the augmentations training used); with more than one, the map head's s_p and
        s_n are the means over the views (the proportion their ratio), the pooled head's logits the
        mean logits.
        """
        if views not in VIEW_COUNTS:
            raise ValueError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views}")
        outputs: dict[tuple[int, int], HeadOutput] = {}  # (core, view) -> that input's output
        groups: dict[tuple[int, ...], list[tuple[int, int, dict[str, torch.Tensor]]]] = {}
        for i, core in enumerate(cores):
            tensors = core_tensors(*core)
            for v in range(views):
                viewed = augment_tensors(tensors, *VIEWS[v]) if v else tensors
                groups.setdefault(tuple(viewed["image"].shape), []).append((i, v, viewed))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start: start + batch_size]
                batch = self.forward([t for _, _, t in chunk])
                for row, (i, v, _) in enumerate(chunk):
                    outputs[(i, v)] = _row(batch, row)
        out = []
        for i in range(len(cores)):
            seen = [outputs[(i, v)] for v in range(views)]
            pred = decode_predictions(seen[0] if views == 1 else _mean_output(seen), self.scheme)[0]
            base = self.base_range(pred)
            if base is not None and self.range_margin is not None:
                pred = replace(pred, tps_range=widen_range(base, self.range_margin))
            out.append(pred)
        return out

    def base_range(self, pred: ProportionPrediction) -> tuple[float, float] | None:
        """The range :attr:`range_margin` widens: (r, r) for the map head, the bounds of the
        predicted interval for the pooled head (Class, O-Reg say only the interval); None when
        the proportion is undefined."""
        if pred.proportion is None or pred.interval is None:
            return None
        if self.net.spec.head == "maps":
            return pred.proportion, pred.proportion
        return float(self.scheme.boundaries[pred.interval]), float(self.scheme.boundaries[pred.interval + 1])

    def predict_items(self, items: list[Stage2Item], batch_size: int = 8, views: int = 1
                      ) -> list[ProportionPrediction]:
        """Predictions for prepared items, in their order (see :meth:`predict_cores`)."""
        out: list[ProportionPrediction] = []
        for i in range(0, len(items), 64):  # read at most 64 cores at a time
            chunk = items[i: i + 64]
            out += self.predict_cores([(it.load_image(), it.load_mask(), it.input_fit()) for it in chunk],
                                      batch_size, views)
        return out

    def maps(self, image: np.ndarray, mask: np.ndarray, fit: InputFit) -> np.ndarray:
        """F_p, F_n of one core's input -> (2, H/8, W/8) float32 (unmasked)."""
        out = self.forward([core_tensors(image, mask, fit)])
        if out.maps is None:
            raise ValueError(f"method {self.method_name!r} has no F_p / F_n maps")
        return out.maps[0].float().cpu().numpy()

    # ------------------------------------------------------------------------------- folders
    def save(self, path: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
        """Write the model folder (atomically); ``extra_config`` is stored in ``config.json`` too."""
        config = {"method": self.method_name, "network": asdict(self.net.spec), "input": asdict(self.input),
                  **({} if self.range_margin is None else {"range_margin": self.range_margin}),
                  **(extra_config or {})}
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        folder = ModelFolder(MODEL_KIND, config, {"net": state},
                             {"scheme": scheme_to_mapping(self.scheme)})
        return save_model_folder(path, folder)


def input_spec_from_config(config: dict[str, Any]) -> InputSpec:
    """The input geometry of a model folder's config (folders of maskllp 0.1 hold ``input_size``:
    the square geometry)."""
    if "input" in config:
        spec = InputSpec(**config["input"])
    else:
        spec = InputSpec("square", size=int(config["input_size"]))
    if spec.resize not in ("pixel-size", "square") or spec.size < 32 or spec.max_side < 32 or \
            not (math.isfinite(spec.mpp) and spec.mpp > 0):
        raise ValueError(f"input geometry {spec}")
    return spec


def load_proportion_model(path: str | Path) -> ProportionModel:
    """A model folder written by :meth:`ProportionModel.save`; InputError when it is not one."""
    folder = load_model_folder(path, MODEL_KIND)
    try:
        method = str(folder.config["method"])
        spec = NetworkSpec(**folder.config["network"])
        geometry = input_spec_from_config(folder.config)
        scheme = scheme_from_mapping(folder.thresholds["scheme"])
        margin = folder.config.get("range_margin")
        if margin is not None and not (isinstance(margin, int | float) and 0.0 <= float(margin) <= 1.0):
            raise ValueError(f"range_margin {margin!r} is not a number in [0, 1]")
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"broken proportion model folder ({e})") from None
    net = ProportionNet(spec)
    load_network_weights(net, folder.weights.get("net", {}), path)
    model = ProportionModel(net, method, scheme, geometry)
    model.range_margin = None if margin is None else float(margin)
    return model
