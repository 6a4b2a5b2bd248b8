"""How Lightning runs training (section ``[trainer]``): one GPU, several, or the CPU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    """``auto``, ``cpu``, ``gpu``..., passed to ``lightning.Trainer``."""
    devices: str = "auto"
    """``auto``, a count such as ``"4"``, or a list such as ``"0,1"``."""
    strategy: str = "auto"
    """``auto`` or ``ddp`` (multi-GPU data parallel), passed to ``lightning.Trainer``."""
    precision: str = "auto"
    """``auto``: ``bf16-mixed`` where the hardware computes bf16 natively (a CUDA GPU with bf16, a CPU
    with AVX-512 BF16 or AMX), else ``32-true``; or any Lightning precision (``32-true``,
    ``bf16-mixed``, ``16-mixed``...)."""
    num_workers: int = 0
    seed: int = 0
    progress_bar: bool = True
    save_checkpoints: bool = False
    """Also keep Lightning checkpoints (last and best epoch) in the run's ``checkpoints/`` folder."""
