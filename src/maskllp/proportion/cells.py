"""The cell-level proportion model (``ours-cells``): p(positive) per tumour cell, the core's TPS their mean.

The instances are the tumour cells stage 1 finds, the bag is the core (learning from label
proportions at the instance level, as in Ardehaly & Culotta 2017, the paper's reference [1]). Each
cell is described by its stain measurements (hematoxylin and DAB optical density in rings around
it, :mod:`maskllp.detection.measurements`) and, optionally, the stage-1 classifier trunk's feature
vector at it. A small network gives p(positive) per cell; the core's proportion is

    r_hat = (1 / n) sum_i p_i          over the n tumour cells of the core

(``estimate = "mean"``), or the share of cells with p_i > 0.5 (``estimate = "count"``), and is
undefined when the core has no tumour cell. s_p = sum p_i and s_n = sum (1 - p_i) are the expected
numbers of positive and negative tumour cells. The same loss modules as the map methods train it
(:mod:`maskllp.proportion.losses`), on r_hat of each training core.

Model folder (kind ``cell-proportion``): ``config.json`` holds the method name, the network spec,
the feature names and the estimate; ``thresholds.json`` the interval scheme; ``weights.safetensors``
the network (``net.``; an ensemble's members ``net.members.K.``, their number in the config's
``members``), with the feature standardisation as buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from maskllp.backbones import FeatureMLP, PatchInput
from maskllp.config.proportion import MAX_ENSEMBLE
from maskllp.errors import InputError, NonFiniteOutputError
from maskllp.intervals import IntervalScheme
from maskllp.io.model_folder import ModelFolder, load_model_folder, load_network_weights, save_model_folder
from maskllp.predictions import ProportionPrediction
from maskllp.proportion.model import TrainingSummary, scheme_from_mapping, scheme_to_mapping
from maskllp.proportion.uncertainty import RANGE_LEVEL, tps_interval, widen_range

CELL_MODEL_KIND = "cell-proportion"
Estimate = Literal["mean", "count"]


@dataclass(frozen=True)
class CellNetSpec:
    """What is needed to rebuild the cell network (stored in the model folder)."""

    n_measurements: int
    n_trunk: int = 0
    """Width of the trunk feature vector used (0: stain measurements only)."""
    hidden: int = 64
    dropout: float = 0.2
    patch_side: int = 0
    """Side in pixels of the cells' hematoxylin / DAB patches the network also reads through its own
    small convolutional encoder (0: no patches; :mod:`maskllp.detection.patches`)."""
    patch_width: int = 16
    """Channels of the patch encoder's first layer (it doubles twice; its output has 4x as many)."""
    patch_channels: int = 2
    """Stains in a patch (hematoxylin, DAB)."""
    patch_steps_per_od: float = 64.0
    """uint8 steps per unit of optical density in the patches (how they were quantised)."""

    @property
    def n_inputs(self) -> int:
        return self.n_measurements + self.n_trunk

    @property
    def n_encoded(self) -> int:
        """Width of the patch encoder's output (0 without patches)."""
        return 4 * self.patch_width if self.patch_side else 0


class CellPositivityNet(FeatureMLP):
    """(M, F) float32 cell features [and (M, 2, S, S) uint8 patches] -> (M,) logits of p(positive).

    The features are standardised inside; with patches, the patch encoder's output is appended to
    them before the two hidden layers."""

    def __init__(self, spec: CellNetSpec) -> None:
        patches = (PatchInput(spec.patch_channels, spec.patch_width, spec.patch_steps_per_od)
                   if spec.patch_side else None)
        super().__init__(spec.n_inputs, 1, spec.hidden, 2, spec.dropout, patches)
        self.spec = spec

    def forward(self, features: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(features, patches)[:, 0]


class CellEnsembleNet(torch.nn.Module):
    """Several :class:`CellPositivityNet` of one spec (trained from different seeds): the same inputs
    -> (M,) mean of their logits (the geometric mean of their odds of p(positive))."""

    def __init__(self, members: Sequence[CellPositivityNet]) -> None:
        super().__init__()
        if not members or any(m.spec != members[0].spec for m in members):
            raise ValueError("an ensemble needs at least one network, all of one spec")
        self.members = torch.nn.ModuleList(members)

    @property
    def spec(self) -> CellNetSpec:
        return self.members[0].spec  # type: ignore[no-any-return]

    def forward(self, features: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([m(features, patches) for m in self.members]).mean(dim=0)


CellNet = CellPositivityNet | CellEnsembleNet


def cell_network(spec: CellNetSpec, members: int = 1) -> CellNet:
    """A fresh network of ``spec``: one, or an ensemble of ``members`` (as a model folder holds it)."""
    if members == 1:
        return CellPositivityNet(spec)
    return CellEnsembleNet([CellPositivityNet(spec) for _ in range(members)])


@dataclass(frozen=True)
class CellBag:
    """The tumour cells of one core, as the cell method learns from them.

    ``features`` (n, F) float32; ``labels`` (n,) int8: 1 / 0 for cells matched to a clicked
    positive / negative tumour cell, -1 otherwise; ``interval`` the core's labelled interval (None:
    unlabelled); ``patches`` (n, 2, S, S) uint8 for a network that reads them, else None;
    ``pseudo`` (n,) int8 self-labels of a training round (``[proportion.cells] self_label_rounds``),
    -1 for none, or None.
    """

    name: str
    interval: int | None
    features: np.ndarray
    labels: np.ndarray
    patches: np.ndarray | None = None
    pseudo: np.ndarray | None = None


class CellProportionModel:
    """A fitted cell network with what it needs to turn a core's tumour cells into a prediction."""

    def __init__(self, net: CellNet, method_name: str, scheme: IntervalScheme,
                 feature_names: Sequence[str], estimate: Estimate = "mean",
                 summary: TrainingSummary | None = None, range_temperature: float = 1.0,
                 range_margin: float | None = None, call_bias: float = 0.0) -> None:
        if len(feature_names) != net.spec.n_inputs:
            raise ValueError(f"{len(feature_names)} feature names for {net.spec.n_inputs} inputs")
        self.net = net.eval()
        self.method_name = method_name
        self.feature_names = list(feature_names)
        self.scheme = scheme
        self.estimate = estimate
        self.summary = summary
        self.range_temperature = range_temperature
        """T of the probabilities behind the TPS range, chosen on validation cores
        (:func:`maskllp.proportion.uncertainty.fit_range_temperature`)."""
        self.range_margin = range_margin
        self.call_bias = call_bias
        """Added to every logit the network gives (:func:`fit_call_bias`; 0: the network's own)."""
        """The split-conformal margin that widens :meth:`count_range` into the reported range, chosen
        on validation cores (:func:`maskllp.proportion.uncertainty.interval_margin`); None: not
        widened (folders saved before it existed)."""

    @property
    def members(self) -> int:
        """Networks whose logits are averaged (1: a single network)."""
        return len(self.net.members) if isinstance(self.net, CellEnsembleNet) else 1

    @property
    def reads_patches(self) -> bool:
        """Whether the network also reads each cell's patch (detect with ``patches=True``)."""
        return bool(self.net.spec.patch_side)

    @torch.no_grad()
    def cell_logits(self, features: np.ndarray, patches: np.ndarray | None = None) -> np.ndarray:
        """(n, F) float32 [and (n, 2, S, S) uint8 patches] -> (n,) float32 logit of p(positive) of
        each cell (in chunks of 4096 cells, so memory stays bounded on a large core)."""
        if len(features) == 0:
            return np.zeros(0, np.float32)
        if self.reads_patches:
            if patches is None or len(patches) != len(features):
                raise ValueError("this cell model reads each cell's patch: detect with patches=True")
            if patches.shape[-1] != self.net.spec.patch_side:
                raise ValueError(f"patches of {patches.shape[-1]} px for a network trained on "
                                 f"{self.net.spec.patch_side} px (stage 1 at another pixel size?)")
        out = []
        for start in range(0, len(features), 4096):
            f = torch.as_tensor(np.asarray(features[start: start + 4096], np.float32))
            p = None if not self.reads_patches else torch.from_numpy(
                np.ascontiguousarray(patches[start: start + 4096]))  # type: ignore[index]
            out.append(self.net(f, p).float().numpy())
        return np.concatenate(out) + np.float32(self.call_bias)

    def cell_probabilities(self, features: np.ndarray, temperature: float = 1.0,
                           patches: np.ndarray | None = None) -> np.ndarray:
        """(n, F) float32 [and patches] -> (n,) float32 p(positive) of each cell,
        sigmoid(logit / ``temperature``)."""
        return self.probabilities_of(self.cell_logits(features, patches), temperature)

    @staticmethod
    def probabilities_of(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """(n,) logits -> (n,) float32 sigmoid(logit / ``temperature``); NonFiniteOutputError on NaN."""
        p = torch.sigmoid(torch.from_numpy(np.asarray(logits, np.float32)) / temperature).numpy()
        if not np.isfinite(p).all():
            raise NonFiniteOutputError("the cell network's outputs are NaN (damaged weights, training that "
                                       "diverged, or NaN cell measurements)")
        return p

    def predict_features(self, features: np.ndarray, patches: np.ndarray | None = None
                         ) -> ProportionPrediction:
        """The prediction for one core from its tumour cells' (n, F) features [and patches]."""
        return self.predict_logits(self.cell_logits(features, patches))

    def predict_logits(self, logits: np.ndarray) -> ProportionPrediction:
        """The prediction for one core from its tumour cells' (n,) logits, with its TPS range:
        :meth:`count_range` widened by :attr:`range_margin`."""
        pred = self.predict_probabilities(self.probabilities_of(logits))
        base = self.count_range(logits)
        return pred if base is None else replace(pred, tps_range=widen_range(base, self.range_margin))

    def count_range(self, logits: np.ndarray) -> tuple[float, float] | None:
        """The central 90 % range of the TPS the calls could give, from the cells' probabilities
        tempered by :attr:`range_temperature` (:func:`~maskllp.proportion.uncertainty.tps_interval`);
        None without a tumour cell."""
        return tps_interval(self.probabilities_of(logits, self.range_temperature), RANGE_LEVEL)

    def predict_probabilities(self, p: np.ndarray) -> ProportionPrediction:
        """The prediction for one core from its tumour cells' (n,) p(positive)."""
        if len(p) == 0:
            return ProportionPrediction(None, None)
        r = float(p.mean()) if self.estimate == "mean" else float(np.mean(p > 0.5))
        return ProportionPrediction(r, int(self.scheme.index_of(r)), float(p.sum()), float((1 - p).sum()))


    def save(self, path: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
        config = {"method": self.method_name, "network": asdict(self.net.spec), "estimate": self.estimate,
                  "features": self.feature_names, "members": self.members, **(extra_config or {})}
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return save_model_folder(path, ModelFolder(CELL_MODEL_KIND, config, {"net": state},
                                                   {"scheme": scheme_to_mapping(self.scheme),
                                                    "range_temperature": self.range_temperature,
                                                    "call_bias": self.call_bias,
                                                    **({} if self.range_margin is None
                                                       else {"range_margin": self.range_margin})}))


def load_cell_model(path: str | Path) -> CellProportionModel:
    """A model folder written by :meth:`CellProportionModel.save`; InputError when it is not one."""
    folder = load_model_folder(path, CELL_MODEL_KIND)
    try:
        spec = CellNetSpec(**folder.config["network"])
        estimate = folder.config.get("estimate", "mean")
        if estimate not in ("mean", "count"):
            raise ValueError(f"unknown estimate {estimate!r}")
        names = [str(n) for n in folder.config["features"]]
        scheme = scheme_from_mapping(folder.thresholds["scheme"])
        method = str(folder.config["method"])
        members = folder.config.get("members", 1)  # folders saved before ensembles hold one network
        if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= MAX_ENSEMBLE:
            raise ValueError(f"members {members!r} must be a whole number from 1 to {MAX_ENSEMBLE}")
        temperature = float(folder.thresholds.get("range_temperature", 1.0))
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"range_temperature {temperature!r} must be a positive number")
        bias = float(folder.thresholds.get("call_bias", 0.0))
        if not math.isfinite(bias):
            raise ValueError(f"call_bias {bias!r} must be a finite number")
        margin = folder.thresholds.get("range_margin")
        if margin is not None and not (isinstance(margin, int | float) and not isinstance(margin, bool)
                                       and 0.0 <= float(margin) <= 1.0):
            raise ValueError(f"range_margin {margin!r} is not a number in [0, 1]")
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"broken cell model folder ({e})") from None
    net = cell_network(spec, members)
    load_network_weights(net, folder.weights.get("net", {}), path)
    try:
        return CellProportionModel(net, method, scheme, names, estimate, range_temperature=temperature,
                                   range_margin=None if margin is None else float(margin), call_bias=bias)
    except ValueError as e:
        raise InputError(path, f"broken cell model folder ({e})") from None


CALL_BIASES = tuple(float(b) for b in np.arange(-4.0, 4.001, 0.25))
"""The logit shifts :func:`fit_call_bias` tries."""


def fit_call_bias(logits: Sequence[np.ndarray], intervals: Sequence[int], scheme: IntervalScheme) -> float:
    """The shift b (of :data:`CALL_BIASES`) whose counts, the share of each core's cells with logit +
    b > 0, lie nearest the cores' labelled intervals: the least sum of distances to the intervals
    (:func:`~maskllp.proportion.uncertainty.distance_to_interval`), ties to the smallest |b|; 0 without
    a core with cells.

    >>> from maskllp.intervals import PAPER_FIVE
    >>> fit_call_bias([np.array([-0.3, -0.6, -1.5, 2.0])], [3], PAPER_FIVE)  # 1 of 4 called; '50-75 %'
    0.5
    """
    from maskllp.proportion.uncertainty import distance_to_interval

    cores = [(np.asarray(z, np.float64), int(k)) for z, k in zip(logits, intervals, strict=True) if len(z)]
    if not cores:
        return 0.0

    def cost(b: float) -> float:
        counts = [(float(np.mean(z + b > 0)), k) for z, k in cores]
        return sum(distance_to_interval(r, r, k, scheme) for r, k in counts)

    return min(CALL_BIASES, key=lambda b: (round(cost(b), 12), abs(b)))
