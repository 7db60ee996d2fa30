"""Inference speed and memory of facesr's Restorer, measured side by side in one run.

Speed mode (default): seconds per 128x128 LQ image (x4 -> 512x512) for

* eager fp32 (contiguous NCHW),
* fp32 channels_last,
* bf16 autocast + channels_last,
* onnxruntime (CPU, the model exported in memory),

each timed through ``Restorer.run_batch`` (uint8 in, uint8 out, so pre/post-processing
is included), the variants interleaved within every repeat so background load hits them
alike; the median over repeats is reported with its ratio to eager fp32 and the achieved
GFLOP/s.  FLOPs: ``facesr.models.count_flops`` counts multiply-adds (MACs, as MMagic's
get_flops does); GFLOP/s here = 2 * MACs / seconds.

Memory mode (``--memory``): peak resident memory (``ru_maxrss`` of a fresh subprocess) for
the model alone, an untiled ``--mem-untiled`` LQ, and a ``--mem-size`` LQ (default
2048x2048) restored with tiling (automatic, and ``--tile``).  Compute for 2048x2048 is
256 x a 128x128 image, so use a small ``--mid-channels``/``--num-blocks`` on a CPU;
activation memory depends on mid-channels and tile size, not on the number of blocks.

Usage::

    python benchmarks/bench_inference.py                       # reference MSRResNet 64 ch / 16 blocks
    python benchmarks/bench_inference.py --num-blocks 4 --repeats 3 --threads 2
    python benchmarks/bench_inference.py --memory --mid-channels 32 --num-blocks 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def hardware_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
        if names:
            cpu = names[0]
        flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except OSError:
        isa = []
    try:
        import onnxruntime

        ort = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = ", onnxruntime not installed"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"hardware: {cpu}, {os.cpu_count()} logical cores (ISA: {' '.join(isa) or 'n/a'}){gpu}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads){ort}; python {platform.python_version()}"
    )


def build(mid: int, blocks: int):
    import torch

    from facesr.models import MSRResNet

    torch.manual_seed(0)
    return MSRResNet(mid_channels=mid, num_blocks=blocks).eval()


def speed(a) -> None:
    import numpy as np
    import torch

    from facesr.inference import OnnxModel, Restorer, export_onnx
    from facesr.models import count_flops, count_params

    model = build(a.mid_channels, a.num_blocks)
    macs = count_flops(model, (3, 128, 128))
    print(
        f"model: MSRResNet mid_channels={a.mid_channels} num_blocks={a.num_blocks}, "
        f"{count_params(model):,} params, {macs / 1e9:.2f} G multiply-adds per 128x128 image "
        f"(= {2 * macs / 1e9:.2f} GFLOP)"
    )
    variants = {
        "eager fp32": lambda: Restorer(build(a.mid_channels, a.num_blocks), device="cpu", channels_last=False),
        "channels_last fp32": lambda: Restorer(build(a.mid_channels, a.num_blocks), device="cpu", channels_last=True),
        "bf16 autocast + channels_last": lambda: Restorer(
            build(a.mid_channels, a.num_blocks), device="cpu", channels_last=True, amp=True
        ),
    }
    try:
        import onnxruntime  # noqa: F401

        onnx_bytes = export_onnx(model, check=False)
        variants["onnxruntime (CPU EP)"] = lambda: Restorer(OnnxModel(onnx_bytes, threads=a.threads))
    except ImportError:
        print("onnxruntime not installed: skipping that variant")
    restorers = {k: f() for k, f in variants.items()}
    batch = np.random.default_rng(0).integers(0, 256, (a.batch, 128, 128, 3), dtype=np.uint8)
    ref = None
    for name, r in restorers.items():  # warm-up (first-call allocations, oneDNN primitive creation)
        out = r.run_batch(batch)
        if ref is None:
            ref = out
        diff = int(np.abs(out.astype(np.int16) - ref).max())
        restorers[name] = (r, diff)
    times: dict[str, list[float]] = {k: [] for k in restorers}
    for _ in range(a.repeats):
        for name, (r, _) in restorers.items():
            t0 = time.perf_counter()
            r.run_batch(batch)
            times[name].append((time.perf_counter() - t0) / a.batch)
    base = statistics.median(times["eager fp32"])
    print(f"batch {a.batch}, {a.repeats} repeats (median), threads {torch.get_num_threads()}")
    print(f"{'variant':32s} {'s / image':>10s} {'min':>8s} {'vs eager':>9s} {'GFLOP/s':>8s} {'max |diff|':>11s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:32s} {med:10.4f} {min(ts):8.4f} {base / med:8.2f}x {2 * macs / med / 1e9:8.1f} "
            f"{restorers[name][1]:>8d} lv"
        )
    print(
        "vs eager = speed-up over eager fp32 (>1 is faster); GFLOP/s = 2 x multiply-adds / time; "
        "max |diff| = largest 8-bit difference of the uint8 output from eager fp32"
    )


def _child_mem(a) -> None:
    """Run in a fresh process: restore one random image, print peak RSS (MiB) and seconds."""
    import numpy as np

    from facesr.inference import Restorer

    r = Restorer(build(a.mid_channels, a.num_blocks), device="cpu", tile=a.child_tile)
    if a.child_size:
        img = np.random.default_rng(0).integers(0, 256, (a.child_size, a.child_size, 3), dtype=np.uint8)
        t0 = time.perf_counter()
        out = r.restore(img)
        dt = time.perf_counter() - t0
        assert out.shape == (4 * a.child_size, 4 * a.child_size, 3)
    else:
        dt = 0.0
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {dt:.1f}")


def memory(a) -> None:
    from facesr.inference import Restorer

    runs = [
        ("model only (no image)", 0, 0),
        (f"{a.mem_untiled}x{a.mem_untiled} untiled", a.mem_untiled, 0),
        (
            f"{a.mem_size}x{a.mem_size} auto-tiled ({Restorer.AUTO_TILE} tiles + overlap {2 * a.num_blocks + 4})",
            a.mem_size,
            0,
        ),
        (f"{a.mem_size}x{a.mem_size} --tile {a.tile}", a.mem_size, a.tile),
    ]
    out_mb = (4 * a.mem_size) ** 2 * 3 / 2**20
    print(
        f"peak RSS per fresh process, MSRResNet mid_channels={a.mid_channels} num_blocks={a.num_blocks} "
        f"(the {4 * a.mem_size}x{4 * a.mem_size} uint8 output of a {a.mem_size}x{a.mem_size} LQ alone is "
        f"{out_mb:.0f} MiB)"
    )
    for label, size, tile in runs:
        if size > a.mem_untiled and size and not tile and size * size <= Restorer.AUTO_TILE_PIXELS:
            label += " (below the auto-tile size: untiled)"
        cmd = [
            sys.executable,
            __file__,
            "--_child",
            "--mid-channels",
            str(a.mid_channels),
            "--num-blocks",
            str(a.num_blocks),
            "--child-size",
            str(size),
            "--child-tile",
            str(tile),
        ]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(
                f"  {label:48s} failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}"
            )
            continue
        rss, secs = res.stdout.split()[-2:]
        print(f"  {label:48s} {float(rss):8.0f} MiB  {float(secs):7.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-blocks", type=int, default=16)
    ap.add_argument("--mid-channels", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0 = library default)")
    ap.add_argument("--memory", action="store_true", help="measure peak RSS with tiling instead of speed")
    ap.add_argument("--mem-size", type=int, default=2048, help="LQ side for the tiled memory run (default 2048)")
    ap.add_argument("--mem-untiled", type=int, default=256, help="LQ side for the untiled memory run (default 256)")
    ap.add_argument("--tile", type=int, default=128, help="explicit tile size for the memory run (default 128)")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child-tile", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    if a._child:
        _child_mem(a)
        return
    print(hardware_line())
    memory(a) if a.memory else speed(a)


if __name__ == "__main__":
    main()
