"""Torch building blocks both stages share: images as network inputs, and torchvision ResNet trunks,
randomly initialised or loaded from a local ImageNet weights file.

Nothing is downloaded: ``weights_path`` names a file the user has (a torchvision state dict saved
with ``torch.save`` -- read with ``weights_only=True`` -- or a ``.safetensors`` file), e.g. the
``resnet50-11ad3fa6.pth`` that torchvision's own cache holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskllp.errors import InputError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to decode means a wrong or damaged file
        raise InputError(path, f"cannot read weights ({str(e).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "not a state dict of tensors")
    return state


def resnet(name: str, weights_path: str | Path | None = None) -> nn.Module:
    """A torchvision ResNet (``resnet18``/``34``/``50``/``101``), ImageNet weights from a local file.

    The classification head (``fc``) is kept so that torchvision's files load strictly; callers take
    the trunk they need. Random initialisation when ``weights_path`` is None.
    """
    import torchvision

    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(RESNETS)})")
    model = getattr(torchvision.models, name)(weights=None)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        trunk_missing = [k for k in missing if not k.startswith("fc.")]
        if trunk_missing or unexpected:
            raise InputError(
                weights_path,
                f"not {name} weights ({len(trunk_missing)} missing, {len(unexpected)} unexpected "
                f"keys, e.g. {(trunk_missing + list(unexpected))[:3]})",
            )
    return model


def inference_device(name: str | torch.device) -> torch.device:
    """The torch device ``name`` names (``cpu``, ``cuda``, ``cuda:1``, ``mps``); InputError in one
    line when it is unknown or absent from this machine."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError("--device", f"unknown device {str(name)!r} (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device", f"{name}: CUDA is not available on this machine (no GPU or no "
                                         "driver); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError("--device", f"{name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError("--device", f"{name}: Apple's MPS is not available on this machine")
    elif device.type != "cpu":
        raise InputError("--device", f"unsupported device {str(name)!r} (cpu, cuda, cuda:1, mps)")
    return device


def inference_devices(name: str, count: int | None = None) -> list[str]:
    """The devices of one inference run, one process each: ``cpu`` -> [cpu]; ``cpu`` with ``count``
    2 -> [cpu, cpu]; ``cuda`` with ``count`` 2 -> [cuda:0, cuda:1]; ``cuda:0,1`` -> [cuda:0,
    cuda:1]. Each is checked as :func:`inference_device` checks it; InputError in one line for a
    count below 1 or a count next to listed GPUs."""
    text = str(name).strip().lower()
    if count is not None and count < 1:
        raise InputError("--devices", f"{count}: give a number of devices of 1 or more")
    if "," in text:
        kind, _, indices = text.partition(":")
        if count is not None:
            raise InputError("--devices", f"--device {name} names the devices already; drop --devices")
        names = [f"{kind}:{i.strip()}" for i in indices.split(",")]
    elif count is None or count == 1:
        names = [text]
    elif text == "cpu":
        names = ["cpu"] * count
    elif text in ("cuda", "gpu"):
        names = [f"cuda:{i}" for i in range(count)]
    else:
        raise InputError("--devices", f"--device {name} names one device; give --device cuda with "
                                      f"--devices {count}, or list them: cuda:0,1")
    devices = [inference_device(n.replace("gpu", "cuda")) for n in names]
    if len(set(map(str, devices))) < len(devices) and devices[0].type != "cpu":
        raise InputError("--device", f"{name}: a device is listed twice")
    return [str(d) for d in devices]


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a CUDA GPU with bf16; a CPU with AVX-512 BF16 or
    AMX). Elsewhere bf16 is emulated and slower than fp32 (``benchmarks/bf16_cpu.py``)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_inference_precision(device: torch.device, precision: str) -> str:
    """``"32"`` or ``"bf16"``: ``precision`` (``auto``, ``32``, ``bf16``) with ``auto`` resolved."""
    if precision == "auto":
        return "bf16" if bf16_native(device) else "32"
    return precision


@contextlib.contextmanager
def inference_autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the networks inside under bf16 autocast when ``precision`` resolves to ``bf16`` on
    ``device`` (:func:`resolve_inference_precision`); fp32 otherwise. Autocast keeps reductions
    (the masked sums) in fp32; outputs are cast back to fp32 by the callers."""
    bf16 = resolve_inference_precision(device, precision) == "bf16"
    if not bf16 or device.type not in ("cpu", "cuda"):
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


def _conv_bn_pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv name, batch-norm name) of every Conv2d that a BatchNorm2d of its output
    channels directly follows: neighbours in an ``nn.Sequential`` (the U-Net, the patch encoder, a
    ResNet's downsample) or the ``convK`` / ``bnK`` siblings of torchvision's ResNet blocks and stem,
    whose forward applies ``bnK`` right after ``convK``."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    pairs = []
    for parent in module.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            candidates = list(zip(names, names[1:], strict=False))
        elif isinstance(parent, (BasicBlock, Bottleneck, ResNet)):
            candidates = [(n, "bn" + n[4:]) for n in children
                          if n.startswith("conv") and "bn" + n[4:] in children]
        else:
            candidates = []
        for conv_name, bn_name in candidates:
            conv, bn = children[conv_name], children[bn_name]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                    and bn.num_features == conv.out_channels):
                pairs.append((parent, conv_name, bn_name))
    return pairs


@contextlib.contextmanager
def batch_norms_folded(*modules: nn.Module | None) -> Iterator[None]:
    """Inside, every convolution followed by a batch normalisation (:func:`_conv_bn_pairs`) in the
    eval-mode ``modules`` runs as one convolution with the normalisation folded into its weights and
    bias; the original layers are put back on exit, so weights, state-dict keys and training are
    untouched. The same function of the input up to rounding (fp32: ~1e-7 relative); it saves one
    pass over every activation: stage-1 detection of the 2048 px benchmark core took 12 % less time
    in fp32 and 5 % less in bf16 on this project's 2-core AVX-512 BF16 CPU (docs/stage1.md, "Speed").
    Modules in training mode (batch statistics) are left as they are."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    swapped: list[tuple[nn.Module, str, nn.Module, str, nn.Module]] = []
    try:
        for module in modules:
            if module is None or module.training:
                continue
            for parent, conv_name, bn_name in _conv_bn_pairs(module):
                conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
                if bn.training:
                    continue
                with torch.no_grad():
                    fused = fuse_conv_bn_eval(conv, bn)
                if conv.weight.is_contiguous(memory_format=torch.channels_last):
                    fused = fused.to(memory_format=torch.channels_last)
                setattr(parent, conv_name, fused)
                setattr(parent, bn_name, nn.Identity())
                swapped.append((parent, conv_name, conv, bn_name, bn))
        yield
    finally:
        for parent, conv_name, conv, bn_name, bn in reversed(swapped):
            setattr(parent, conv_name, conv)
            setattr(parent, bn_name, bn)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> ImageNet-normalised, as ResNet weights expect."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def rgb_to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) or (N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]: the one conversion from
    API-edge images (numpy HWC) to network inputs (torch NCHW) in maskllp."""
    arr = np.asarray(rgb)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) RGB, got {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` (stride 2, odd sides floored), the same values. When no gradient is
    needed it takes the maximum of the four strided sub-grids instead: PyTorch's CPU kernel also
    computes the argmax indices, and for the patch encoder's ~600 cells a tile that pooling was
    ~40 % of its time (2048 px benchmark core, bf16, 2 threads: detect 4.75 -> 4.30 s). Training
    keeps the library kernel, so gradients and their tie-breaking are PyTorch's own."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 1::2, 0::2]),
                             torch.maximum(x[..., 0::2, 1::2], x[..., 1::2, 1::2]))


def patch_encoder(channels: int, width: int) -> nn.Sequential:
    """(M, channels, S, S) float optical densities -> (M, 4 * width): three 3x3 convolution blocks with
    batch norm, ReLU and 2x2 max pooling (width, 2 width, 4 width channels), a fourth without
    pooling, then the mean over the remaining positions (so any patch side of 8 px or more works).

    Each block pools before its ReLU: the same values (max and ReLU commute), on a quarter of the
    elements; only the convolutions and batch norms hold weights, so their indices in the sequence
    (and in saved weights) are those of the ReLU-then-pool order."""
    layers: list[nn.Module] = []
    for k, out in enumerate((width, 2 * width, 4 * width, 4 * width)):
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)]
        layers += [MaxPool2x2(), nn.ReLU(inplace=True)] if k < 3 else [nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@dataclass(frozen=True)
class PatchInput:
    """The per-cell image patches a :class:`FeatureMLP` also reads, through its own small CNN."""

    channels: int
    """Stains of the patch the network reads (the first ``channels`` of the patches it is given)."""
    width: int = 16
    """Channels of the encoder's first layer (:func:`patch_encoder`; its output has 4x as many)."""
    steps_per_od: float = 64.0
    """uint8 steps per unit of optical density in the patches (how they were quantised)."""


class FeatureMLP(nn.Module):
    """(M, F) float32 per-cell features [and (M, C, S, S) uint8 patches] -> (M, n_outputs) logits: the
    features are standardised inside with the training cells' mean and SD (buffers, saved with the
    weights); with ``patches``, the output of a patch encoder (:func:`patch_encoder`, on the patches'
    optical densities) is appended to them; then ``layers`` hidden layers of ``hidden`` units with
    ReLU and dropout."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_inputs: int, n_outputs: int = 1, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.2, patches: PatchInput | None = None) -> None:
        super().__init__()
        n_encoded = 4 * patches.width if patches is not None else 0
        self.register_buffer("mean", torch.zeros(n_inputs + n_encoded))  # the encoded part stays 0 / 1
        self.register_buffer("scale", torch.ones(n_inputs + n_encoded))
        blocks: list[nn.Module] = []
        width = n_inputs + n_encoded
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, n_outputs))
        self.n_outputs = n_outputs
        self.patch_input = patches
        self.encoder = patch_encoder(patches.channels, patches.width) if patches is not None else None
        if self.encoder is not None:  # 1.7-2.4x faster on CPU, fp32 and bf16 (48 px patches, 2 threads)
            self.encoder.to(memory_format=torch.channels_last)

    def standardise_on(self, features: torch.Tensor) -> None:
        """Set the standardisation from (M, F) training cells (SD floored so constant columns stay 0;
        the patch encoder's output is not standardised)."""
        n = features.shape[1]
        self.mean[:n] = features.mean(dim=0)
        if len(features) > 1:
            self.scale[:n] = features.std(dim=0).clamp_min(1e-3)

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """(M, C, S, S) uint8 patches -> (M, n_encoded) float32: what the patch encoder gives the
        hidden layers (so a large image can be encoded tile by tile and the patches dropped)."""
        if self.encoder is None or self.patch_input is None:
            raise ValueError("this network reads no patches")
        od = patches[:, : self.patch_input.channels].float() / self.patch_input.steps_per_od
        return self.encoder(od.contiguous(memory_format=torch.channels_last)).float()

    def forward(self, features: torch.Tensor, patches: torch.Tensor | None = None,
                encoded: torch.Tensor | None = None) -> torch.Tensor:
        """``patches`` (or their ``encoded`` form, :meth:`encode`) are needed when the network reads them."""
        if self.encoder is not None:
            if encoded is None:
                if patches is None:
                    raise ValueError("this network reads each cell's patch: pass patches")
                encoded = self.encode(patches)
            features = torch.cat([features, encoded.to(features.dtype)], dim=1)
        return self.mlp((features - self.mean) / self.scale)
