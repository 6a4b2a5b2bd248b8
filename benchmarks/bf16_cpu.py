"""Is bf16 autocast faster than fp32 on this machine? Stage-1 U-Net and ResNet-50 forward on one
512 px tile, stage-2 ResNet-18 training step on a batch of 16 inputs of 160 px; one and all threads.

    python benchmarks/bf16_cpu.py
"""

from __future__ import annotations

import time

import torch

from maskllp.detection.classifier import CellClassifier
from maskllp.detection.unet import UNet
from maskllp.proportion.network import NetworkSpec, ProportionNet
from maskllp.training.trainer import bf16_native


def timed(fn, repeats: int = 1) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {bf16_native('cpu')}")
    unet, resnet = UNet(3, 1, 16, 4).eval(), CellClassifier("resnet50", "layer3").eval()
    stage2 = ProportionNet(NetworkSpec("maps", 2))
    tile = torch.rand(1, 3, 512, 512)
    batch, mask = torch.rand(16, 3, 160, 160), torch.ones(16, 1, 160, 160)

    def train_step() -> None:
        stage2.zero_grad()
        stage2(batch, mask).r_hat.sum().backward()

    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        for name, fn in (("U-Net forward, 512 px tile", lambda: unet(tile)),
                         ("ResNet-50 to layer3 forward, 512 px tile", lambda: resnet.feature_map(tile)),
                         ("ResNet-18 maps train step, 16 x 160 px", train_step)):
            with torch.no_grad() if "forward" in name else torch.enable_grad():
                fp32 = timed(fn)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    bf16 = timed(fn)
            print(f"{threads} thread(s)  {name:42s} fp32 {fp32:6.3f} s  bf16 {bf16:6.3f} s  "
                  f"bf16 / fp32 {bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
