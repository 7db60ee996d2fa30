"""``python -m benchmarks [--quick] [--only degradation,dataloader,train,inference,matmul]``.

Runs the selected benchmarks in one process and prints one table of rates and
ratios (every ratio compares rows measured side by side in this run), preceded
by the hardware line.  ``inference`` times the model (fp32, channels_last, fp32-winograd, bf16;
the row facesr's ``--precision auto`` picks here is marked), then ``facesr.load().restore`` on a
128x128 face with the default policy, with ``precision="fp32"`` and with flip TTA against a
re-creation of MMagic's eager MSRResNet-16 forward (the baseline) and fp32 eager (interleaved),
and also calls ``benchmarks/bench_inference.py``
(the Restorer backends: eager, channels_last, bf16, onnxruntime) when present and
prints its own table after ours.

Units: ``samples/CPU-s`` and ``it/CPU-s`` count CPU time of the measuring thread
with torch/OpenCV on one thread (per-core rates, not inflated or deflated by
other jobs); ``(wall)`` rates are wall clock; GPU rates are wall clock with
synchronisation.  GFLOP/s = 2 x multiply-adds / s (``count_flops`` counts MACs).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .common import Row, cuda_sync, format_table, hardware_line, single_thread, skip

ALL = ("degradation", "dataloader", "train", "inference", "matmul")


# ----------------------------------------------------------------------------- matmul roofline


def run_matmul(quick: bool = False) -> list[Row]:
    """torch.mm GFLOP/s on large fp32 and bf16 matrices: the machine's practical compute ceiling."""
    rows = []
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    n = 8192 if cuda else (1024 if quick else 2048)
    reps = 20 if cuda else (2 if quick else 3)
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)
        ctx = single_thread() if not cuda else _Null()
        with ctx:
            torch.mm(a, b)
            cuda_sync()
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            cuda_sync()
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        secs = wall if cuda else cpu
        gf = 2 * n**3 * reps / secs / 1e9
        note = f"{n}x{n} @ {n}x{n}, " + (
            "GPU, TF32 " + ("on" if torch.backends.cuda.matmul.allow_tf32 else "off")
            if cuda and dtype == torch.float32
            else ("GPU" if cuda else "1 thread, CPU time")
        )
        rows.append(Row("GFLOP/s", f"torch.mm {name}", gf, "GFLOP/s", baseline=dtype == torch.float32, note=note))
    # The model's own dominant layer (3x3 conv, 64 -> 64 channels at 128x128) as a second reference:
    # on some CPUs the BLAS behind torch.mm is slower than oneDNN's convolution kernels.
    w = torch.randn(64, 64, 3, 3, device=dev)
    x = torch.randn(16 if cuda else 1, 64, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
    macs = x.shape[0] * 64 * 64 * 9 * 128 * 128
    for bf16 in (False, True):
        ctx = single_thread() if not cuda else _Null()
        with ctx, torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            torch.nn.functional.conv2d(x, w, padding=1)
            cuda_sync()
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(reps * 2):
                torch.nn.functional.conv2d(x, w, padding=1)
            cuda_sync()
            secs = (time.perf_counter() - w0) if cuda else (time.thread_time() - c0)
        rows.append(
            Row(
                "GFLOP/s",
                f"conv3x3 64->64 @128x128 {'bf16' if bf16 else 'fp32'}, channels_last",
                2 * macs * reps * 2 / secs / 1e9,
                "GFLOP/s",
                note="the model's dominant layer; " + ("GPU" if cuda else "1 thread, CPU time"),
            )
        )
    return rows


# ----------------------------------------------------------------------------- inference


def run_inference(quick: bool = False) -> list[Row]:
    """MSRResNet-16 forward at 128x128 LQ: images/s and achieved GFLOP/s (fp32, channels_last, bf16)."""
    from facesr.inference.precision import auto_precision
    from facesr.inference.winograd import nnpack_available, winograd_model
    from facesr.models import build_model, count_flops

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    model = build_model("msrresnet", mid_channels=64, num_blocks=16, upscale_factor=4).eval()
    macs = count_flops(model, (3, 128, 128))
    model = model.to(dev)
    batch = 16 if cuda else 1
    n = (10 if quick else 30) if cuda else (1 if quick else 2)
    unit = "images/s (GPU, wall)" if cuda else "images/CPU-s (1 thread)"
    rows, gf_rows = [], []
    x = torch.rand(batch, 3, 128, 128, device=dev)
    with single_thread() if not cuda else _Null():
        auto = auto_precision(dev)[0]
    variants = [
        ("eager fp32", False, False),
        ("channels_last fp32", True, False),
        ("bf16 autocast + channels_last", True, True),
    ]
    if not cuda and nnpack_available():
        variants.insert(2, ("fp32-winograd (NNPACK, NCHW)", False, False))
    for i, (name, cl, bf16) in enumerate(variants):
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        if "winograd" in name:
            m = winograd_model(model)[0]
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        ctx = single_thread() if not cuda else _Null()
        with ctx, torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            m(xi)
            cuda_sync()
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                m(xi)
            cuda_sync()
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        rate = n * batch / (wall if cuda else cpu)
        default = {"bf16": cl and bf16, "fp32": cl and not bf16, "fp32-winograd": "winograd" in name}.get(auto, False)
        rows.append(
            Row(
                "inference",
                f"MSRResNet-16 128x128 {name}",
                rate,
                unit,
                baseline=i == 0,
                note=f"batch {batch}, {n * batch} images; {n * batch / wall:.3g} images/s wall"
                + (f"; facesr's default here (precision auto -> {auto})" if default else ""),
            )
        )
        gf_rows.append(
            Row(
                "GFLOP/s",
                f"MSRResNet-16 inference, {name}",
                2 * macs * rate / 1e9,
                "GFLOP/s",
                note=f"{macs / 1e9:.2f} G MACs/image x 2; ratio = fraction of the fp32 matmul rate",
            )
        )
    model.to(memory_format=torch.contiguous_format)
    return rows + gf_rows


def run_restore(quick: bool = False) -> list[Row]:
    """``facesr.load().restore`` on one 128x128 face: fp32, the default (precision auto) and the default
    with flip TTA, against a re-creation of MMagic's eager MSRResNet-16 forward (the baseline) and a plain
    fp32 eager forward of the shipped model (contiguous NCHW); calls interleaved, one thread."""
    import numpy as np

    import facesr
    from facesr.assets import sample_face_path, shipped_checkpoint
    from facesr.data.datasets import degrade_offline
    from facesr.data.degradations import DegradationCfg
    from facesr.io.images import read_rgb
    from facesr.models import load_model

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    face, _ = degrade_offline(read_rgb(sample_face_path()), DegradationCfg(), 0, "sample_face")
    face = np.ascontiguousarray(face[:128, :128])

    class Eager:
        """The plain fp32 forward a user would write: contiguous NCHW float in, uint8 HWC out."""

        def __init__(self):
            self.model = load_model(shipped_checkpoint())[0].eval().to(dev)

        def restore(self, img):
            with torch.inference_mode():
                x = torch.from_numpy(img).to(dev).permute(2, 0, 1)[None].float().div(255.0).contiguous()
                y = self.model(x).clamp(0, 1).mul(255.0).round().to(torch.uint8)
                return y[0].permute(1, 2, 0).cpu().numpy()

    class MMagicEager(Eager):
        """MMagic's MSRResNet-16 (its own residual block) in the same plain fp32 forward: the issue's baseline."""

        def __init__(self):
            from .mmagic_reference import mmagic_msrresnet

            self.model = mmagic_msrresnet(16).eval().to(dev)

    variants = {}
    with single_thread() if not cuda else _Null():
        variants["MMagic-style eager MSRResNet-16 fp32 (re-created)"] = MMagicEager()
        variants["fp32 eager: the shipped model, contiguous NCHW"] = Eager()
        variants["facesr.load(precision='fp32')"] = facesr.load(precision="fp32")
        default = facesr.load()
        layout = "channels_last" if default.channels_last else "NCHW"
        variants[f"default: facesr.load() (precision auto -> {default.precision}, {layout})"] = default
        variants["default + flip TTA: facesr.load(tta='flip')"] = facesr.load(tta="flip")
        for r in variants.values():
            r.restore(face)  # warm-up
        cpu = {k: 0.0 for k in variants}
        wall = {k: 0.0 for k in variants}
        rounds = 2 if quick else (20 if cuda else 8)
        for i in range(rounds):  # interleaved, the order reversed every other round
            for k, r in list(variants.items()) if i % 2 == 0 else list(variants.items())[::-1]:
                c0, w0 = time.thread_time(), time.perf_counter()
                r.restore(face)  # numpy out: synchronised
                cpu[k] += time.thread_time() - c0
                wall[k] += time.perf_counter() - w0
    unit = "images/s (GPU, wall)" if cuda else "images/CPU-s (1 thread)"
    return [
        Row(
            "restore() 128x128",
            k,
            rounds / (wall[k] if cuda else cpu[k]),
            unit,
            baseline=i == 0,
            note=f"shipped model, {rounds} calls interleaved; {rounds / wall[k]:.3g} images/s wall",
        )
        for i, k in enumerate(variants)
    ]


def run_backend_table(quick: bool = False) -> str | None:
    """benchmarks/bench_inference.py's Restorer-backend table, if that module is present (captured text)."""
    try:
        from . import bench_inference
    except ImportError:
        return None
    import contextlib
    import io

    buf = io.StringIO()
    a = argparse.Namespace(mid_channels=64, num_blocks=16, batch=1, repeats=1 if quick else 3, threads=1)
    with single_thread(), contextlib.redirect_stdout(buf):
        bench_inference.speed(a)
    return buf.getvalue()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples/iterations (about a minute of CPU)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--compile", action="store_true", help="train: also time torch.compile (slow warm-up on CPU)")
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in only if s not in ALL]
    if bad:
        ap.error(f"--only: unknown benchmark(s) {', '.join(bad)}; choose from {', '.join(ALL)}")
    print(hardware_line())
    print(f"mode: {'quick' if a.quick else 'default'}; benchmarks: {', '.join(only)}", flush=True)
    rows: list[Row] = []
    extra_text = []
    t_start = time.perf_counter()
    for name in ALL:
        if name not in only:
            continue
        t0 = time.perf_counter()
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            if name == "degradation":
                from . import bench_degradation

                rows += bench_degradation.run(a.quick)
            elif name == "dataloader":
                from . import bench_dataloader

                rows += bench_dataloader.run(a.quick)
            elif name == "train":
                from . import bench_train

                rows += bench_train.run(a.quick, a.compile)
                if not a.quick:
                    rows.append(bench_train.real_loop_row())
            elif name == "inference":
                rows += run_inference(a.quick)
                rows += run_restore(a.quick)
                txt = run_backend_table(a.quick)
                if txt:
                    extra_text.append(
                        "== inference backends (benchmarks/bench_inference.py, 1 thread, wall clock)\n" + txt.rstrip()
                    )
            elif name == "matmul":
                rows += run_matmul(a.quick)
        except Exception as exc:  # keep the other benchmarks' results
            rows.append(skip(name, "(failed)", "-", f"{type(exc).__name__}: {exc}"[:160]))
        print(f"... {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    # Keep the GFLOP/s group together (matmul rows first) regardless of the order they ran in.
    gf = [r for r in rows if r.group == "GFLOP/s"]
    gf.sort(key=lambda r: (not r.name.startswith("torch.mm"), not r.name.startswith("conv3x3")))
    rows = [r for r in rows if r.group != "GFLOP/s"] + gf
    print(format_table(rows))
    for t in extra_text:
        print()
        print(t)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
