"""Degradation throughput: samples per second per core, facesr vs a deliberately naive floor.

Variants (same 512x512 synthetic faces, same sampled parameters):

* ``naive float64``: the pipeline written the obvious way in this file: float64
  image throughout, blur as a float64 FFT correlation in numpy, cv2.resize on
  float64, float64 noise, JPEG through PIL on the rounded image; the floor.
* ``facesr exact``: :func:`facesr.data.degradations.apply_params` (OpenCV, uint8,
  bit-exact MMagic semantics), what the DataLoader workers run.
* ``facesr blur.exact=false``: the same with the opt-in separable blur for
  isotropic kernels.

Group ``batched vs exact (CPU)``: CPU time per sample of the exact path (sampling and
applying, per sample, as a DataLoader worker does) against the batched engine
(:mod:`facesr.data.batched_degradations`) at batch 8, 24 and 96, 512x512 -> 128x128,
interleaved round-robin in one thread.  Group ``batched: ops per batch``: torch
operations the batched engine dispatches per batch (counted with a
``TorchDispatchMode``), which must not grow with the batch size (the proxy for GPU
kernel launches).  With CUDA: the batched engine's samples/s on the GPU, the op count
there, and the training step at batch 24 with the shipped model on batched degradation
against synthetic batches (it/s, data share).

CPU rows are single-threaded; their rate is items per CPU-second of the
measuring thread (robust to other jobs on the machine), the wall-clock rate
is in the note.  Run alone: ``python -m benchmarks.bench_degradation [--quick] [--gpu-only]``.
"""

from __future__ import annotations

import argparse
import copy
import io
import time

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from facesr.data import degradations as D
from facesr.data.kernels import gaussian_kernel

from .common import (
    Row,
    bf16_l1_step,
    cuda_sync,
    print_report,
    single_thread,
    skip,
    synthetic_face,
    timed,
)

GROUP = "degradation"
GROUP_CPU = "batched vs exact (CPU)"
GROUP_OPS = "batched: ops per batch"
GROUP_GPU = "batched (GPU)"
GROUP_STEP = "train step b24 (GPU)"


# ----------------------------------------------------------------------------- the naive floor


def _naive_correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """float64 2-D correlation with reflect-101 borders via numpy FFT (no fast-size padding)."""
    r = k.shape[0] // 2
    h, w = img.shape[:2]
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    ph, pw = pad.shape[:2]
    kf = np.zeros((ph, pw))
    kf[: k.shape[0], : k.shape[1]] = k[::-1, ::-1]
    kf = np.roll(kf, (-r, -r), (0, 1))
    spec = np.fft.rfft2(pad, axes=(0, 1)) * np.fft.rfft2(kf)[..., None]
    out = np.fft.irfft2(spec, s=(ph, pw), axes=(0, 1))
    return out[r : r + h, r : r + w]


def _naive_jpeg(img: np.ndarray, quality: int, color_order: str) -> np.ndarray:
    u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if color_order == "mmagic":  # the reference encodes the RGB array as if it were BGR
        u8 = u8[..., ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u8)).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
    return out[..., ::-1] if color_order == "mmagic" else out


def naive_degrade(hq: np.ndarray, p: D.DegradationParams) -> np.ndarray:
    """The course pipeline, float64 per step (uint8 only around the JPEG codec); uint8 RGB out."""
    img = hq.astype(np.float64)
    if p.blur is not None:
        k = gaussian_kernel(
            p.blur["size"], p.blur["sigma_x"], p.blur["sigma_y"], p.blur["theta"], isotropic=p.blur["kernel"] == "iso"
        )
        img = _naive_correlate(img, k)
    if p.down is not None:
        img = cv2.resize(img, tuple(p.down["size"][::-1]), interpolation=D.INTERP[p.down["interp"]])
    if p.noise is not None:
        rng = np.random.default_rng(p.noise["noise_seed"])
        img = img + rng.standard_normal(img.shape) * p.noise["sigma"]
    if p.jpeg is not None:
        img = _naive_jpeg(img, p.jpeg["quality"], p.jpeg.get("color_order", "mmagic"))
    for step in (p.up, p.final):
        if step is not None:
            img = cv2.resize(img, tuple(step["size"][::-1]), interpolation=D.INTERP[step["interp"]])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- runs


def _records(n: int, cfg: D.DegradationCfg) -> list[D.DegradationParams]:
    return [D.sample_params(cfg, (512, 512), D.GeneratorRng([0, 1, i])) for i in range(n)]


def _cpu_rate(name: str, fn, items, baseline: bool = False) -> Row:
    def work():
        for it in items:
            fn(*it)
        return len(items)

    with single_thread():
        t = timed(work, warmup=lambda: fn(*items[0]))
    return Row(
        GROUP,
        name,
        t.per_cpu_s,
        "samples/CPU-s",
        baseline=baseline,
        note=f"{t.per_s_wall:.2f}/s wall, {t.n} samples, 1 thread",
    )


class OpCounter(TorchDispatchMode):
    """Counts the torch operations dispatched inside it: ``n`` all of them, ``compute`` those that do work
    (not views such as view/expand/select, nor ``lift_fresh``): each of these is a kernel launch on a GPU."""

    def __init__(self):
        super().__init__()
        self.n = self.compute = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        if not getattr(func, "is_view", False) and "lift_fresh" not in str(func):
            self.compute += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn) -> tuple[int, int]:
    """(all ops, compute ops) that ``fn()`` dispatches."""
    with OpCounter() as c:
        fn()
    return c.n, c.compute


def _batch(faces: list[np.ndarray], n: int, device="cpu") -> torch.Tensor:
    """(n, 3, 512, 512) float 0-1 GT batch cycling through ``faces``."""
    u8 = torch.from_numpy(np.stack([faces[i % len(faces)] for i in range(n)])).permute(0, 3, 1, 2)
    return u8.to(device).float().div_(255.0)


def run_batched_cpu(faces: list[np.ndarray], cfg: D.DegradationCfg, quick: bool, sizes=(8, 24, 96)) -> list[Row]:
    """CPU time per sample, 512 -> 128: the exact path (sampling + OpenCV, per sample, as a DataLoader worker
    runs it) against the batched engine at each batch size, interleaved round-robin in one thread."""
    from facesr.data.batched_degradations import BatchedDegrader

    deg = BatchedDegrader(cfg, seed=0, device="cpu")
    batches = {b: _batch(faces, b) for b in sizes}
    n_exact = 8 if quick else 24
    cpu = {k: 0.0 for k in ("exact", *sizes)}
    done = {k: 0 for k in cpu}
    rounds = 1 if quick else 2

    def exact():
        for i in range(n_exact):
            D.degrade(faces[i % len(faces)], cfg, D.GeneratorRng([0, 1, done["exact"] + i]))
        return n_exact

    jobs = {"exact": exact}
    for b in sizes:
        jobs[b] = lambda b=b: (deg(batches[b], 10_000 + done[b]), b)[1]
    with single_thread():
        deg(batches[sizes[0]][:2], 10**9)  # warm-up: noise table, FFT plans
        D.degrade(faces[0], cfg, D.GeneratorRng([9, 9, 9]))
        for r in range(rounds):
            for k in list(jobs) if r % 2 == 0 else list(jobs)[::-1]:
                c0 = time.thread_time()
                done[k] += jobs[k]()
                cpu[k] += time.thread_time() - c0
    rows = [
        Row(
            GROUP_CPU,
            "exact (OpenCV, per sample: a DataLoader worker's work)",
            done["exact"] / cpu["exact"],
            "samples/CPU-s",
            baseline=True,
            note=f"{1000 * cpu['exact'] / done['exact']:.1f} ms/sample, {done['exact']} samples, 1 thread",
        )
    ]
    for b in sizes:
        rows.append(
            Row(
                GROUP_CPU,
                f"batched, batch {b}",
                done[b] / cpu[b],
                "samples/CPU-s",
                note=f"{1000 * cpu[b] / done[b]:.1f} ms/sample, {done[b]} samples, 1 thread",
            )
        )
    return rows


def run_op_counts(
    faces: list[np.ndarray], cfg: D.DegradationCfg, quick: bool, sizes=(8, 24, 96), device: str = "cpu"
) -> list[Row]:
    """Torch ops dispatched per batch (parameter sampling to LQ), min/mean/max over a few batches: flat
    in the batch size, the proxy for kernel launches on a GPU."""
    from facesr.data.batched_degradations import BatchedDegrader

    deg = BatchedDegrader(cfg, seed=0, device=device, chunk=None, buckets=1)  # one pass, as on a GPU
    reps = 2 if quick else 4
    rows = []
    with single_thread():
        deg(_batch(faces, 2, device), 10**9)  # one-time setup (the noise table) is not counted
        for i, b in enumerate(sizes):
            batch = _batch(faces, b, device)
            counts = np.array([count_ops(lambda j=j, x=batch, b=b: deg(x, j * b)) for j in range(reps)])
            rows.append(
                Row(
                    GROUP_OPS + f" ({device})",
                    f"batched, batch {b}",
                    float(counts[:, 0].mean()),
                    "torch ops/batch",
                    baseline=i == 0,
                    note=f"all ops min {counts[:, 0].min()}, max {counts[:, 0].max()}; compute ops (no views) "
                    f"min {counts[:, 1].min()}, max {counts[:, 1].max()}; {reps} batches",
                )
            )
    return rows


def run_gpu(faces: list[np.ndarray], cfg: D.DegradationCfg, quick: bool, sizes=(8, 24, 96)) -> list[Row]:
    """The batched engine on CUDA: samples/s (wall, synchronised) at each batch size."""
    from facesr.data.batched_degradations import BatchedDegrader

    if not torch.cuda.is_available():
        return [skip(GROUP_GPU, "batched on CUDA", "samples/s (GPU, wall)", "no CUDA device")]
    dev = torch.device("cuda")
    deg = BatchedDegrader(cfg, seed=0, device=dev)
    rows = []
    for i, b in enumerate(sizes):
        batch = _batch(faces, b, dev)
        reps = max(2, (96 if quick else 384) // b)
        deg(batch, 10**9)
        cuda_sync()
        t = timed(lambda x=batch, b=b, r=reps: (sum(deg(x, j * b)[0].shape[0] for j in range(r)), cuda_sync())[0])
        rows.append(
            Row(
                GROUP_GPU,
                f"batched on CUDA, batch {b}",
                t.per_s_wall,
                "samples/s (GPU, wall)",
                baseline=i == 0,
                note=f"{1000 * t.wall / reps:.2f} ms/batch; {torch.cuda.get_device_name(0)}; "
                f"host CPU {1000 * t.cpu / reps:.2f} ms/batch",
            )
        )
    return rows


def run_train_step_gpu(faces: list[np.ndarray], cfg: D.DegradationCfg, quick: bool, batch: int = 24) -> list[Row]:
    """The training step at batch 24 of full 128x128 LQ with the shipped architecture (bf16 autocast,
    channels_last, fused Adam): on synthetic batches (pure compute) against batches degraded by the
    batched engine inside the step; it/s and the degradation's share of the step (wall, synchronised)."""
    if not torch.cuda.is_available():
        return [skip(GROUP_STEP, "training step on batched degradation", "it/s (GPU, wall)", "no CUDA device")]
    from facesr.assets import shipped_checkpoint
    from facesr.data.batched_degradations import BatchedDegrader
    from facesr.models import load_model

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = load_model(shipped_checkpoint())[0].to(dev).train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    deg = BatchedDegrader(cfg, seed=0, device=dev)
    gt_u8 = (_batch(faces, batch, dev) * 255).round().to(torch.uint8)
    lq_syn = torch.rand(batch, 3, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
    gt_syn = torch.rand(batch, 3, 512, 512, device=dev).contiguous(memory_format=torch.channels_last)
    it = [0]

    step = bf16_l1_step(model, opt)

    def degraded():
        it[0] += 1
        lq, gt = deg(gt_u8.float().div_(255.0), it[0] * batch)
        return lq.contiguous(memory_format=torch.channels_last), gt.contiguous(memory_format=torch.channels_last)

    def timed_loop(fn, n):
        cuda_sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        cuda_sync()
        return (time.perf_counter() - t0) / n

    variants = {
        "synthetic": lambda: step(lq_syn, gt_syn),
        "batched": lambda: step(*degraded()),
        "degrade only": degraded,
    }
    for fn in variants.values():
        timed_loop(fn, 5)  # warm-up (cuDNN autotuning, FFT plans, noise table)
    secs = {k: 0.0 for k in variants}
    n, rounds = (10, 2) if quick else (25, 4)
    for r in range(rounds):  # interleaved, the order reversed every other round
        for k in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            secs[k] += timed_loop(variants[k], n) / rounds
    share = secs["degrade only"] / secs["batched"]
    name = torch.cuda.get_device_name(0)
    return [
        Row(
            GROUP_STEP,
            "shipped model, synthetic batches (pure compute)",
            1 / secs["synthetic"],
            "it/s (GPU, wall)",
            baseline=True,
            note=f"batch {batch}, 128x128 LQ, bf16 + channels_last, fused Adam; {name}",
        ),
        Row(
            GROUP_STEP,
            "shipped model, batched degradation in the step",
            1 / secs["batched"],
            "it/s (GPU, wall)",
            note=f"degradation {1000 * secs['degrade only']:.2f} ms of {1000 * secs['batched']:.2f} ms per step: "
            f"data share {share:.1%}",
        ),
    ]


def run(quick: bool = False, gpu_only: bool = False) -> list[Row]:
    faces = [synthetic_face(100 + i) for i in range(8)]
    cfg = D.DegradationCfg()
    if gpu_only:
        if not torch.cuda.is_available():
            return run_gpu(faces, cfg, quick)
        return (
            run_gpu(faces, cfg, quick)
            + run_op_counts(faces, cfg, True, device="cuda")
            + run_train_step_gpu(faces, cfg, quick)
        )
    n_naive, n_cv = (2, 8) if quick else (4, 24)
    recs = _records(max(n_cv, n_naive), cfg)
    fast = []
    for p in recs:
        q = copy.deepcopy(p)
        q.blur = dict(q.blur, exact=False) if q.blur else None
        fast.append(q)
    rows = [
        _cpu_rate(
            "naive float64 (numpy FFT blur, PIL JPEG)",
            naive_degrade,
            [(faces[i % 8], recs[i]) for i in range(n_naive)],
            baseline=True,
        ),
        _cpu_rate(
            "facesr exact (OpenCV uint8, bit-exact)", D.apply_params, [(faces[i % 8], recs[i]) for i in range(n_cv)]
        ),
        _cpu_rate("facesr blur.exact=false", D.apply_params, [(faces[i % 8], fast[i]) for i in range(n_cv)]),
    ]
    n_iso = sum(p.blur is not None and p.blur["kernel"] == "iso" for p in recs[:n_cv])
    rows[-1].note += f", {n_iso}/{n_cv} iso kernels"
    rows += run_batched_cpu(faces, cfg, quick)
    rows += run_op_counts(faces, cfg, quick)
    rows += run_gpu(faces, cfg, quick)
    if torch.cuda.is_available():
        rows += run_op_counts(faces, cfg, True, device="cuda") + run_train_step_gpu(faces, cfg, quick)
    from .bench_vs_mmagic import run as run_vs_mmagic

    return rows + run_vs_mmagic(quick)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--gpu-only", action="store_true", help="only the CUDA rows (the GPU stage runs these)")
    a = ap.parse_args(argv)
    print_report("degradation", run(a.quick, a.gpu_only))


if __name__ == "__main__":
    main()
