"""Inference cost of each registered architecture preset on this CPU, interleaved in one run.

    python -m benchmarks.bench_archs [--rounds 5] [--precision fp32,fp32-winograd,bf16] [--threads 1] [--batch 1]
                                     [--openvino] [--int8 MODEL.xml]

Restores one 128x128 face (``Restorer.restore``, the path every command uses) with MSRResNet-16
(the reference and the model shipped in facesr 0.1) and with the LQResNet presets, alternating the
models every round so that machine load affects all alike.  Reports per-image CPU time of the
process with torch (and OpenVINO) on one thread (a per-core figure, robust to other jobs) and the
ratio to MSRResNet-16.  The fp32 pass also times the default ``facesr.load().restore`` (precision
``auto``, which on one thread of an AVX2 CPU is ``fp32-winograd``) and ``facesr.load(precision="fp32")``
against a re-creation of MMagic's eager forward, and with ``--openvino`` / ``--int8 MODEL.xml`` the shipped
model on ``--backend openvino`` (fp32 on the fly; the int8 IR from ``facesr export --openvino
MODEL.xml --int8 LQ_DIR``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import facesr
from facesr.inference import Restorer
from facesr.models import build_model

from .common import hardware_line
from .mmagic_reference import mmagic_msrresnet

MMAGIC = "MMagic-style eager MSRResNet-16"
MODELS = {
    "msrresnet16 (0.1 shipped)": ("msrresnet", {"num_blocks": 16}),
    "lqresnet 96x12 (0.2 shipped)": ("lqresnet", {"mid_channels": 96, "num_blocks": 12}),
    "lqresnet 64x29": ("lqresnet", {"mid_channels": 64, "num_blocks": 29}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--precision",
        default="fp32,fp32-winograd,bf16",
        help="comma-separated: fp32, fp32-winograd, bf16 (bf16 is slow on CPUs without native bf16)",
    )
    ap.add_argument("--openvino", action="store_true", help="also the shipped model on OpenVINO fp32")
    ap.add_argument("--int8", metavar="MODEL.xml", help="also this int8 OpenVINO IR of the shipped model")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: per-image CPU time of the process); above 1 the table is wall "
        "clock, and precision auto picks fp32-winograd only if OMP_WAIT_POLICY=PASSIVE was set "
        "before this ran (as the facesr CLI does)",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=1,
        help="faces per call (restore_batch; MMagic eager: one NCHW batch); times are per face",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.threads == 1 else time.perf_counter
    imgs = [np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8) for i in range(a.batch)]
    print(hardware_line(), f"| batch {a.batch}")
    for prec in a.precision.split(","):
        runs = {}
        for name, (arch, kw) in MODELS.items():
            r = Restorer(build_model(arch, **kw).eval(), device="cpu", precision=prec)
            runs[name] = lambda r=r: r.restore_batch(imgs)
        if prec == "fp32":
            # The default a user gets, against a re-creation of MMagic's eager inference of its MSRResNet-16
            # (fp32, contiguous NCHW, uint8 -> float / 255 -> forward -> clamp -> uint8; no channels_last;
            # MMagic's residual block, with its multiply by res_scale = 1.0).
            mm = mmagic_msrresnet(16).eval()

            def mmagic_eager():
                with torch.inference_mode():
                    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255).contiguous()
                    y = mm(x).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
                return list(y)

            runs[MMAGIC] = mmagic_eager
            extra = {
                "facesr.load().restore (default: {})": facesr.load(),
                "facesr.load(precision='fp32')": facesr.load(precision="fp32"),
            }
            if a.openvino:
                extra["facesr.load(backend='openvino')"] = facesr.load(backend="openvino", threads=a.threads)
            if a.int8:
                extra["openvino int8 IR (--model-file)"] = Restorer.from_openvino(a.int8, threads=a.threads)
            for name, r in extra.items():
                runs[name.format(r.precision)] = lambda r=r: r.restore_batch(imgs)
        times = {name: [] for name in runs}
        for f in runs.values():
            f()  # warm-up
        for _ in range(a.rounds):  # round-robin, so that machine load affects all alike
            for name, f in runs.items():
                t = clock()
                f()
                times[name].append((clock() - t) / a.batch)
        base = np.median(times[next(iter(times))])
        mm = times.get(MMAGIC)
        for name, ts in times.items():
            med = float(np.median(ts))
            vs_mm = f"   {np.median(mm) / med:5.2f}x vs MMagic eager" if mm else ""
            clock_name = "CPU" if a.threads == 1 else "wall"
            print(
                f"{prec:13s} {name:48s} {med * 1000:8.0f} ms {clock_name}/image   {base / med:5.2f}x vs msrresnet16"
                f"{vs_mm}"
            )


if __name__ == "__main__":
    main()
