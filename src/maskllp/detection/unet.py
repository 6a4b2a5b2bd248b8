"""The detector h: a U-Net that regresses the cell-centre heatmap (Ronneberger et al. 2015).

Batch normalisation (an affine map per channel at inference) and zero padding keep the network
translation-equivariant for shifts by multiples of its total stride, away from the input border;
tiled inference relies on that.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch normalisation and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """(N, in_channels, H, W) float32 -> (N, out_channels, H, W) float32.

    ``depth`` levels with ``base_channels * 2**k`` channels at level k; H and W must be multiples
    of :attr:`stride` (``2 ** (depth - 1)``).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_channels: int = 16,
                 depth: int = 4) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"U-Net depth must be at least 2, got {depth}")
        widths = [base_channels * 2**k for k in range(depth)]
        self.down = nn.ModuleList(
            [DoubleConv(in_channels, widths[0])]
            + [DoubleConv(widths[k - 1], widths[k]) for k in range(1, depth)]
        )
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList(
            [nn.ConvTranspose2d(widths[k], widths[k - 1], 2, stride=2) for k in range(depth - 1, 0, -1)]
        )
        self.up = nn.ModuleList(
            [DoubleConv(2 * widths[k - 1], widths[k - 1]) for k in range(depth - 1, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.stride = 2 ** (depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(f"U-Net input sides must be multiples of {self.stride}, got {tuple(x.shape)}")
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        return self.head(x)


def receptive_radius(depth: int) -> int:
    """Pixels of input on each side that one output pixel of :class:`UNet` can depend on."""
    radius = 0
    for k in range(depth):  # contracting path: two 3x3 convolutions at scale 2**k, then a pooling
        radius += 2 * 2**k + (2**k if k < depth - 1 else 0)
    for k in range(depth - 2, -1, -1):  # expanding path: transposed conv, then two 3x3 convolutions
        radius += 2**k + 2 * 2**k
    return radius
