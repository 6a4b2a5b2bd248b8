"""How ``predict``, ``detect`` and ``evaluate-detection`` run the networks (section ``[inference]``)."""

from __future__ import annotations

from dataclasses import dataclass

INFERENCE_PRECISIONS = ("auto", "32", "bf16")
VIEW_COUNTS = (1, 2, 4, 8)
"""How many of a core's flips and rotations stage 2 may average over (``views``)."""


@dataclass
class InferenceConfig:
    precision: str = "auto"
    """``auto``: bf16 autocast where the device computes bf16 natively (a CUDA GPU with bf16, a CPU
    with AVX-512 BF16 or AMX), fp32 elsewhere (emulated bf16 is slower than fp32); ``32`` or
    ``bf16`` to force one. Masked sums and proportions are always computed in fp32."""
    views: int = 1
    """Views of each core a stage-2 network (the pixel methods: Ours, Prop, Class, ...) is run on
    by ``predict`` and ``cv``: 1, or 2, 4, 8 of its flips and rotations (the augmentations of
    training); the estimate averages them (mean s_p and s_n; mean logits). Costs ``views`` stage-2
    passes a core; the cell methods and Det are not affected."""

    def __post_init__(self) -> None:
        if self.precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"inference.precision must be one of {', '.join(INFERENCE_PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.views not in VIEW_COUNTS:
            raise ValueError(f"inference.views must be one of {', '.join(map(str, VIEW_COUNTS))}, "
                             f"got {self.views!r}")
