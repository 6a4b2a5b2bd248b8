"""How Lightning runs training (section ``[trainer]``): one GPU, several, or the CPU."""

from __future__ import annotations

from dataclasses import dataclass

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "single_device")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    """``auto``, ``cpu``, ``gpu``..., passed to ``lightning.Trainer``."""
    devices: str = "auto"
    """``auto``, a count such as ``"4"``, or a list of GPU indices such as ``"0,1"`` (``"1,"``: the
    GPU of index 1 alone, Lightning's spelling)."""
    strategy: str = "auto"
    """``auto`` or ``ddp`` (multi-GPU data parallel), passed to ``lightning.Trainer``."""
    precision: str = "auto"
    """``auto``: ``bf16-mixed`` where the hardware computes bf16 natively (a CUDA GPU with bf16, a CPU
    with AVX-512 BF16 or AMX), else ``32-true``; or any Lightning precision (``32-true``,
    ``bf16-mixed``, ``16-mixed``...)."""
    num_workers: int = 0
    """DataLoader worker processes (0: load in the training process)."""
    seed: int = 0
    progress_bar: bool = True
    save_checkpoints: bool = False
    """Also keep Lightning checkpoints (last and best epoch) in the run's ``checkpoints/`` folder."""
    resume_checkpoints: bool = False
    """Write a resume checkpoint (weights, optimiser, schedule, callbacks, RNG and data-stream
    states) into the run's scratch folder after every epoch, so ``--resume`` continues a killed run
    to the same result; the ``train`` commands turn it on."""

    def __post_init__(self) -> None:
        def one_of(key: str, value: str, known: tuple[str, ...]) -> None:
            if value not in known:
                raise ValueError(f"trainer.{key} must be one of {', '.join(known)}, got {value!r}")

        one_of("accelerator", self.accelerator, ACCELERATORS)
        one_of("strategy", self.strategy, STRATEGIES)
        one_of("precision", self.precision, PRECISIONS)
        listed = "," in self.devices  # '0,1', or '1,' (the GPU of index 1, not a count)
        parts = ([p.strip() for p in self.devices.split(",") if p.strip()] if listed
                 else [self.devices.strip()])
        ok = self.devices.strip() in ("auto", "-1") or (bool(parts) and all(p.isdigit() for p in parts) and
                                                        (listed or int(parts[0]) >= 1))
        if not ok:
            raise ValueError(f"trainer.devices must be 'auto', a count >= 1 ('4') or a list of GPU indices "
                             f"('0,1'; '1,' for index 1 alone), got {self.devices!r}")
        if self.num_workers < 0:
            raise ValueError(f"trainer.num_workers must be >= 0, got {self.num_workers}")
