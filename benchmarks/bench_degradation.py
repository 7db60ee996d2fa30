"""Degradation throughput: samples per second per core, facesr vs a deliberately naive floor.

Variants (same 512x512 synthetic faces, same sampled parameters):

* ``naive float64``: the pipeline written the obvious way in this file: float64
  image throughout, blur as a float64 FFT correlation in numpy, cv2.resize on
  float64, float64 noise, JPEG through PIL on the rounded image; the floor.
* ``facesr exact``: :func:`facesr.data.degradations.apply_params` (OpenCV, uint8,
  bit-exact MMagic semantics), what the DataLoader workers run.
* ``facesr blur.exact=false``: the same with the opt-in separable blur for
  isotropic kernels.
* ``GpuDegrader (cpu)``: the batched torch path on CPU tensors (one thread).
* ``GpuDegrader (cuda)``: the same on the GPU, when there is one.

CPU rows are single-threaded; their rate is items per CPU-second of the
measuring thread (robust to other jobs on the machine), the wall-clock rate
is in the note.  Run alone: ``python -m benchmarks.bench_degradation [--quick]``.
"""
from __future__ import annotations

import argparse
import copy
import io

import cv2
import numpy as np
import torch
from PIL import Image

from facesr.data import degradations as D
from facesr.data.kernels import gaussian_kernel

from .common import Row, cuda_sync, print_report, single_thread, skip, synthetic_face, timed

GROUP = "degradation"


# ----------------------------------------------------------------------------- the naive floor

def _naive_correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """float64 2-D correlation with reflect-101 borders via numpy FFT (no fast-size padding)."""
    r = k.shape[0] // 2
    h, w = img.shape[:2]
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    ph, pw = pad.shape[:2]
    kf = np.zeros((ph, pw))
    kf[:k.shape[0], :k.shape[1]] = k[::-1, ::-1]
    kf = np.roll(kf, (-r, -r), (0, 1))
    spec = np.fft.rfft2(pad, axes=(0, 1)) * np.fft.rfft2(kf)[..., None]
    out = np.fft.irfft2(spec, s=(ph, pw), axes=(0, 1))
    return out[r:r + h, r:r + w]


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
        k = gaussian_kernel(p.blur["size"], p.blur["sigma_x"], p.blur["sigma_y"], p.blur["theta"],
                            isotropic=p.blur["kernel"] == "iso")
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
    return Row(GROUP, name, t.per_cpu_s, "samples/CPU-s", baseline=baseline,
               note=f"{t.per_s_wall:.2f}/s wall, {t.n} samples, 1 thread")


def run(quick: bool = False) -> list[Row]:
    n_naive, n_cv, n_torch, n_cuda = (2, 8, 4, 32) if quick else (4, 24, 8, 96)
    faces = [synthetic_face(100 + i) for i in range(8)]
    cfg = D.DegradationCfg()
    recs = _records(max(n_cv, n_naive), cfg)
    fast = []
    for p in recs:
        q = copy.deepcopy(p)
        q.blur = dict(q.blur, exact=False) if q.blur else None
        fast.append(q)
    rows = [
        _cpu_rate("naive float64 (numpy FFT blur, PIL JPEG)", naive_degrade,
                  [(faces[i % 8], recs[i]) for i in range(n_naive)], baseline=True),
        _cpu_rate("facesr exact (OpenCV uint8, bit-exact)", D.apply_params,
                  [(faces[i % 8], recs[i]) for i in range(n_cv)]),
        _cpu_rate("facesr blur.exact=false", D.apply_params, [(faces[i % 8], fast[i]) for i in range(n_cv)]),
    ]
    n_iso = sum(p.blur is not None and p.blur["kernel"] == "iso" for p in recs[:n_cv])
    rows[-1].note += f", {n_iso}/{n_cv} iso kernels"

    from facesr.data.gpu_degradations import GpuDegrader
    batch = torch.from_numpy(np.stack([faces[i % 8] for i in range(n_torch)])).permute(0, 3, 1, 2).float() / 255
    deg = GpuDegrader(cfg, seed=0, device="cpu")
    with single_thread():
        t = timed(lambda: (deg(batch, 0), n_torch)[1], warmup=lambda: deg(batch[:2], 10_000))
    rows.append(Row(GROUP, f"GpuDegrader on CPU tensors (batch {n_torch})", t.per_cpu_s, "samples/CPU-s",
                    note=f"{t.per_s_wall:.2f}/s wall, 1 thread"))

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gdeg = GpuDegrader(cfg, seed=0, device=dev)
        bs = 32
        gb = torch.from_numpy(np.stack([faces[i % 8] for i in range(bs)])).permute(0, 3, 1, 2).to(dev).float() / 255

        def work():
            for j in range(n_cuda // bs):
                gdeg(gb, j * bs)
            cuda_sync()
            return (n_cuda // bs) * bs
        t = timed(work, warmup=lambda: (gdeg(gb, 10_000), cuda_sync()))
        rows.append(Row(GROUP, f"GpuDegrader on CUDA (batch {bs})", t.per_s_wall, "samples/s (GPU, wall)",
                        note=f"{torch.cuda.get_device_name(0)}; host CPU {t.cpu:.2f} s for {t.n} samples"))
    else:
        rows.append(skip(GROUP, "GpuDegrader on CUDA", "samples/s (GPU, wall)", "no CUDA device"))
    from .bench_vs_mmagic import run as run_vs_mmagic
    return rows + run_vs_mmagic(quick)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    a = ap.parse_args(argv)
    print_report("degradation", run(a.quick))


if __name__ == "__main__":
    main()
