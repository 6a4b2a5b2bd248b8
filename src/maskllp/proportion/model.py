"""A fitted stage-2 model: predict proportions and intervals, save to and load from a model folder.

Predictions of the map methods are r_hat = s_p / (s_p + s_n) and its interval, or **undefined**
(``proportion`` and ``interval`` None) when the tumour mask is empty. ``Class`` and ``O-Reg``
predict an interval only; their ``proportion`` is the midpoint of that interval (a point estimate
for the proportion errors), and ``s_p``/``s_n`` are None. Decoding: ``Class`` takes the arg-max
logit; ``O-Reg`` counts its cumulative outputs above 0.5 (logit > 0), so outputs [1, 1, 0, 0] give
interval 2 even when they are not monotone.

Model folder (kind ``proportion``): ``config.json`` holds the method name, the network spec and the
input size; ``thresholds.json`` the interval scheme; ``weights.safetensors`` the network (``net.``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskllp.errors import InputError
from maskllp.intervals import SCHEMES, IntervalScheme, scheme_from_boundaries
from maskllp.io.model_folder import ModelFolder, load_model_folder, save_model_folder
from maskllp.predictions import UNDEFINED, ProportionPrediction
from maskllp.proportion.inputs import Stage2Item, to_tensors
from maskllp.proportion.network import HeadOutput, NetworkSpec, ProportionNet

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


def decode_predictions(out: HeadOutput, scheme: IntervalScheme) -> list[ProportionPrediction]:
    """A batch of network outputs -> one :class:`ProportionPrediction` per core."""
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

    def __init__(self, net: ProportionNet, method_name: str, scheme: IntervalScheme, input_size: int,
                 summary: TrainingSummary | None = None) -> None:
        self.net = net.eval()
        self.method_name = method_name
        """The registry name of the Table 1 method it was trained as (``maskllp.methods``)."""
        self.scheme = scheme
        self.input_size = input_size
        self.summary = summary
        """How training went (None for a model loaded from a folder)."""

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> ProportionModel:
        """Move the network (e.g. to ``cuda`` for fast prediction); returns self."""
        self.net.to(device)
        return self

    @torch.no_grad()
    def forward(self, images: np.ndarray, masks: np.ndarray) -> HeadOutput:
        """(N, S, S, 3) uint8 and (N, S, S) bool -> the network's :class:`HeadOutput`."""
        pairs = [to_tensors(im, m) for im, m in zip(images, masks, strict=True)]
        x = torch.stack([p[0] for p in pairs]).to(self.device)
        m = torch.stack([p[1] for p in pairs]).to(self.device)
        return self.net(x, m)

    def predict_batch(self, images: np.ndarray, masks: np.ndarray) -> list[ProportionPrediction]:
        """(N, S, S, 3) uint8 and (N, S, S) bool (``S = input_size``) -> one prediction per core."""
        return decode_predictions(self.forward(images, masks), self.scheme)

    def predict_items(self, items: list[Stage2Item], batch_size: int = 8) -> list[ProportionPrediction]:
        """Predictions for prepared items, in their order."""
        out: list[ProportionPrediction] = []
        for i in range(0, len(items), batch_size):
            chunk = items[i: i + batch_size]
            out += self.predict_batch(np.stack([it.load_image() for it in chunk]),
                                      np.stack([it.load_mask() for it in chunk]))
        return out

    def maps(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """F_p, F_n of one fitted core ((S, S, 3), (S, S)) -> (2, S/8, S/8) float32 (unmasked)."""
        out = self.forward(image[None], mask[None])
        if out.maps is None:
            raise ValueError(f"method {self.method_name!r} has no F_p / F_n maps")
        return out.maps[0].cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------------------- folders
    def save(self, path: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
        """Write the model folder (atomically); ``extra_config`` is stored in ``config.json`` too."""
        config = {"method": self.method_name, "network": asdict(self.net.spec),
                  "input_size": self.input_size, **(extra_config or {})}
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        folder = ModelFolder(MODEL_KIND, config, {"net": state},
                             {"scheme": scheme_to_mapping(self.scheme)})
        return save_model_folder(path, folder)


def load_proportion_model(path: str | Path) -> ProportionModel:
    """A model folder written by :meth:`ProportionModel.save`; InputError when it is not one."""
    folder = load_model_folder(path, MODEL_KIND)
    try:
        method = str(folder.config["method"])
        spec = NetworkSpec(**folder.config["network"])
        input_size = int(folder.config["input_size"])
        scheme = scheme_from_mapping(folder.thresholds["scheme"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"broken proportion model folder ({e})") from None
    net = ProportionNet(spec)
    try:
        net.load_state_dict(folder.weights.get("net", {}), strict=True)
    except RuntimeError as e:
        raise InputError(path, f"weights do not fit the network ({str(e).splitlines()[0]})") from None
    return ProportionModel(net, method, scheme, input_size)
