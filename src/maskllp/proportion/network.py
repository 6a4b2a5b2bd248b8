"""The proportion network f: a ResNet-18 trunk with a map head (F_p, F_n) or a pooled head.

Map head (the paper's network, and every proportion-loss method of Table 1): the outputs of ResNet-18
layers 2, 3 and 4 (strides 8, 16, 32) are each projected by a 1x1 convolution to ``width`` channels,
upsampled to the stride-8 grid and summed (a feature-pyramid style fusion, so each map cell sees both
fine texture -- membrane staining -- and the context of layer 4), followed by a 3x3 convolution, ReLU,
and a 1x1 convolution to two channels made non-negative by softplus: F_p and F_n, (N, 2, H/8, W/8).
Stride 8 keeps roughly one to a few cells per map cell at the paper's 2048 px input, so the maps can
be read as positive / negative tumour-cell density (the paper's Fig. 5), while softplus keeps them
strictly positive (s_p + s_n > 0 whenever the mask is not empty) with non-zero gradients.

Pooled head (``Class``, ``O-Reg``): average pooling of layer 4 over the core's extent (not the
padding around it) and one linear layer to K logits (cross-entropy) or K - 1 cumulative logits
(ordinal regression).

Inputs are (N, 3, H, W) float32 RGB in [0, 1]; ImageNet normalisation happens inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from maskllp.backbones import normalise_rgb, resnet
from maskllp.proportion.masked import mask_to_grid, masked_sums, proportion_from_sums
from maskllp.stains import HED_FROM_RGB

HeadKind = Literal["maps", "class", "ordinal"]
MAP_STRIDE = 8


@dataclass(frozen=True)
class NetworkSpec:
    """What is needed to rebuild a network (stored in a model folder's ``config.json``)."""

    head: HeadKind
    n_outputs: int
    """2 for the map head; K (class) or K - 1 (ordinal) for the pooled head."""
    width: int = 128
    """Channels of the fused map features (map head only)."""
    masked: bool = True
    """Map head: sum the maps over the tumour mask; False ("w/o mask" methods): M = 1 over the
    core's extent, whatever mask is given."""
    input_channels: Literal["rgb", "stain"] = "rgb"
    """``rgb``: the image, ImageNet-normalised; ``stain``: its H, E, DAB optical densities."""


STAIN_SCALE = 0.5
"""Stain densities (log10 OD) are divided by this before the network (tissue ODs are ~0-1.5)."""


def stain_channels(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) hematoxylin, eosin, DAB optical densities
    (:mod:`maskllp.stains`) divided by :data:`STAIN_SCALE`; white glass is 0."""
    od = -torch.log10(image.clamp_min(1.0 / 255.0))
    matrix = torch.as_tensor(HED_FROM_RGB, dtype=image.dtype, device=image.device)
    return torch.einsum("nchw,cs->nshw", od, matrix) / STAIN_SCALE


class ResNetTrunk(nn.Module):
    """ResNet-18 stem and layers 1-4; returns the layer 2, 3, 4 features (strides 8, 16, 32)."""

    def __init__(self, weights_path: str | Path | None = None, input_channels: str = "rgb") -> None:
        super().__init__()
        r = resnet("resnet18", weights_path)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.input_channels = input_channels

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = stain_channels(image) if self.input_channels == "stain" else normalise_rgb(image)
        x = self.layer1(self.stem(x))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return c2, c3, self.layer4(c3)


class MapHead(nn.Module):
    """Fuse (128, 256, 512)-channel features at strides 8/16/32 into (N, 2, h, w) maps >= 0."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (128, 256, 512)])
        self.smooth = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 2, 1)

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        size = features[0].shape[-2:]
        fused = sum(
            F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if i else lat(f)
            for i, (lat, f) in enumerate(zip(self.lateral, features, strict=True))
        )
        return F.softplus(self.out(F.relu(self.smooth(F.relu(fused)))))


class PooledHead(nn.Module):
    """Average pooling of the layer-4 features (512 channels) over the core's extent (weights
    (N, 1, h, w) in [0, 1] on the layer-4 grid; all ones: global average) and one linear layer."""

    def __init__(self, n_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(512, n_outputs)

    def forward(self, features: tuple[torch.Tensor, ...], weights: torch.Tensor) -> torch.Tensor:
        f = features[-1]
        w = weights.to(f.dtype)
        pooled = (f * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-6)
        return self.fc(pooled)


@dataclass
class HeadOutput:
    """What one forward pass gives, for a batch of N cores.

    Map head: ``maps`` (N, 2, h, w), ``sums`` (N, 2) = (s_p, s_n), ``r_hat`` (N,) and ``defined``
    (N,) bool (False where the mask is empty; ``r_hat`` is then 0 and meaningless). Pooled head:
    ``logits`` (N, K) or (N, K - 1), ``defined`` all True.
    """

    defined: torch.Tensor
    maps: torch.Tensor | None = None
    sums: torch.Tensor | None = None
    r_hat: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    @property
    def loss_input(self) -> torch.Tensor:
        """What the method's loss takes: ``r_hat`` (map head) or ``logits`` (pooled head)."""
        out = self.r_hat if self.r_hat is not None else self.logits
        assert out is not None
        return out


class ProportionNet(nn.Module):
    """Trunk + head; ``forward(image, mask, extent)`` -> :class:`HeadOutput`.

    ``image`` (N, 3, H, W) float32 in [0, 1]; ``mask`` (N, 1, H, W) float32 in [0, 1] (the tumour
    mask at the input resolution); ``extent`` (N, 1, H, W) float32 {0, 1}, the core's own pixels
    (None: all of the input). A masked map head sums over ``mask``; an unmasked map head and the
    pooled head use ``extent``.
    """

    def __init__(self, spec: NetworkSpec, weights_path: str | Path | None = None) -> None:
        super().__init__()
        if spec.head == "maps" and spec.n_outputs != 2:
            raise ValueError("the map head has two outputs (F_p, F_n)")
        self.spec = spec
        self.trunk = ResNetTrunk(weights_path, spec.input_channels)
        self.head: nn.Module = MapHead(spec.width) if spec.head == "maps" else PooledHead(spec.n_outputs)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, extent: torch.Tensor | None = None
                ) -> HeadOutput:
        extent = torch.ones_like(mask) if extent is None else extent
        features = self.trunk(image)
        if self.spec.head != "maps":
            weights = mask_to_grid(extent, (features[-1].shape[-2], features[-1].shape[-1]))
            out = self.head(features, weights)
            return HeadOutput(defined=torch.ones(out.shape[0], dtype=torch.bool, device=out.device),
                              logits=out)
        out = self.head(features)
        sums, mask_area = masked_sums(out, mask if self.spec.masked else extent)
        r_hat, defined = proportion_from_sums(sums, mask_area)
        return HeadOutput(defined=defined, maps=out, sums=sums, r_hat=r_hat)
