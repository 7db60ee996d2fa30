"""GPU throughput of each study architecture, side by side in one process (used by scripts/gpu_session.sh).

Prints one row per (architecture, what, precision): training it/s at batch 24 of 128x128 LQ
(bf16 autocast + channels_last, Adam, synthetic data: pure compute) and inference images/s
at batch 16 of 128x128 for fp32 / bf16 / fp16.  Wall clock with CUDA synchronisation.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from facesr.models import build_model, count_flops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks/
from benchmarks.common import bf16_l1_step

ARCHS = {
    "msrresnet16": ("msrresnet", {"num_blocks": 16}),
    "lq_deep": ("lqresnet", {"mid_channels": 64, "num_blocks": 29}),
    "lq_wide": ("lqresnet", {"mid_channels": 96, "num_blocks": 12}),
}


def timed(fn, warm: int, reps: int) -> float:
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'arch':12s} {'what':22s} {'rate':>10s}  GFLOP/s")
    for name, (arch, kw) in ARCHS.items():
        model = build_model(arch, **kw)
        macs = count_flops(model, (3, 128, 128))
        model = model.to(dev).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        x = torch.rand(24, 3, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.rand(24, 3, 512, 512, device=dev).contiguous(memory_format=torch.channels_last)

        train_step = bf16_l1_step(model, opt)
        s = timed(lambda: train_step(x, y), 5, 20)
        print(f"{name:12s} {'train b24 bf16':22s} {1 / s:8.1f}it/s  {3 * 2 * macs * 24 / s / 1e9:8.0f}", flush=True)
        model.eval()
        xi = torch.rand(16, 3, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
        for prec, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):

            def infer():
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                    model(xi)

            s = timed(infer, 3, 10)
            print(f"{name:12s} {'infer b16 ' + prec:22s} {16 / s:8.1f}img/s {2 * macs * 16 / s / 1e9:8.0f}", flush=True)


if __name__ == "__main__":
    main()
