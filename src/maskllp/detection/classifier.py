"""The tumour classifier g: a ResNet trunk g_f gives a feature map, read at each cell, and a linear
head g_c gives the cell's class (section 2 of the paper).

With ``n_outputs = 1`` the head's logit goes through a sigmoid (tumour vs non-tumour, BCE). With
``n_outputs = 3`` it goes through a softmax over (positive tumour, negative tumour, non-tumour),
the paper's Det baseline (cross-entropy). One code path serves both.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from maskllp.backbones import normalise_rgb, resnet

LAYER_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
THREE_CLASSES = ("positive_tumour", "negative_tumour", "non_tumour")
"""Output order of the three-class head."""


def sample_features(features: torch.Tensor, points: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear read of a feature map at cell positions.

    features: (N, C, h, w) float32 (bf16 under autocast), the map of N images of size ``image_hw``
    (each side a multiple of the map's stride). points: (M, 3) float32 rows ``(image index, y, x)``
    in pixel index coordinates of the image. Returns (M, C) float32.
    """
    height, width = image_hw
    out = features.new_zeros((len(points), features.shape[1]), dtype=torch.float32)  # also under autocast
    for i in torch.unique(points[:, 0].long()).tolist():
        sel = points[:, 0].long() == i
        yx = points[sel, 1:]
        gx = 2.0 * (yx[:, 1] + 0.5) / width - 1.0
        gy = 2.0 * (yx[:, 0] + 0.5) / height - 1.0
        grid = torch.stack([gx, gy], dim=1).view(1, 1, -1, 2).to(features.dtype)
        sampled = F.grid_sample(features[i : i + 1], grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
        out[sel] = sampled[0, :, 0, :].T.float()
    return out


class CellClassifier(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] and (M, 3) points -> (M, n_outputs) logits.

    H and W must be multiples of :attr:`stride`.
    """

    def __init__(self, backbone: str = "resnet50", feature_layer: str = "layer3", n_outputs: int = 1,
                 weights_path: str | Path | None = None) -> None:
        super().__init__()
        if feature_layer not in LAYER_STRIDES:
            raise ValueError(f"unknown feature layer {feature_layer!r} (known: {', '.join(LAYER_STRIDES)})")
        net = resnet(backbone, weights_path)
        stages = ["layer1", "layer2", "layer3", "layer4"]
        keep = stages[: stages.index(feature_layer) + 1]
        stem = [net.conv1, net.bn1, net.relu, net.maxpool]
        self.trunk = nn.Sequential(*stem, *[getattr(net, s) for s in keep])
        last_block = getattr(net, feature_layer)[-1]
        last_conv = last_block.conv3 if hasattr(last_block, "conv3") else last_block.conv2
        width = last_conv.out_channels
        self.head = nn.Linear(width, n_outputs)
        self.stride = LAYER_STRIDES[feature_layer]
        self.n_outputs = n_outputs

    def feature_map(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> (N, C, H / stride, W / stride) feature map F_t."""
        if rgb.shape[-1] % self.stride or rgb.shape[-2] % self.stride:
            raise ValueError(
                f"classifier input sides must be multiples of {self.stride}, got {tuple(rgb.shape)}"
            )
        return self.trunk(normalise_rgb(rgb))

    def classify(
        self, features: torch.Tensor, points: torch.Tensor, image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Logits (M, n_outputs) of the cells at ``points`` (see :func:`sample_features`)."""
        return self.head(sample_features(features, points, image_hw))

    def forward(self, rgb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.classify(self.feature_map(rgb), points, (rgb.shape[-2], rgb.shape[-1]))


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(M, 1) logits -> (M, 1) tumour probability (sigmoid); (M, 3) -> (M, 3) softmax."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def tumour_probability(probs: torch.Tensor) -> torch.Tensor:
    """(M, 1) or (M, 3) class probabilities -> (M,) probability of being a tumour cell."""
    return probs[:, 0] if probs.shape[1] == 1 else probs[:, 0] + probs[:, 1]


class CellClassLoss(nn.Module):
    """BCE (one output) or cross-entropy (three outputs) over labelled cells.

    logits: (M, n_outputs); labels: (M,) int64 (binary: 1 tumour, 0 non-tumour; three: index into
    :data:`THREE_CLASSES`), -1 = unlabelled, ignored. Returns a scalar (0 when no cell is labelled).
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = labels >= 0
        if not bool(keep.any()):
            return logits.sum() * 0.0
        logits, labels = logits[keep], labels[keep]
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype))
        return F.cross_entropy(logits, labels)
