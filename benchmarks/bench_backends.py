"""CPU inference backends for the shipped model: speed (interleaved CPU time) and PSNR cost.

Variants (rows whose package is missing are skipped):

* torch fp32 (channels_last) and torch bf16 autocast + channels_last: what ``facesr.load()``'s
  :class:`~facesr.inference.Restorer` runs (``amp=False`` / ``amp=True``); bf16 is the precision
  policy's CPU choice and the baseline of the verdicts;
* onnxruntime fp32, and int8 (``quantize_static``, QDQ, per-channel weights, calibrated on degraded faces);
* OpenVINO fp32 and bf16 hints (:class:`facesr.inference.openvino.OpenVinoModel`), and int8 by NNCF
  post-training quantization on the same calibration faces.

Speed: per image on one thread, process CPU time (counts every thread of this process; all
backends are pinned to one inference thread), 128x128 input, batch 1 and 4, variants run
round-robin so machine load hits them alike.  Quality: PSNR (facesr.metrics.psnr, RGB, no crop)
against the GT on dev-val pairs made by ``facesr degrade DIR OUT --seed 0``.
Verdict: keep when >= 1.3x faster than the policy's torch choice on this CPU (bf16 with native bf16,
else fp32) and at most 0.05 dB below fp32 torch (mean over the pairs).

``python benchmarks/bench_backends.py [--calib 200] [--eval-limit N] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
for _p in (REPO, REPO / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import facesr  # noqa: E402
from facesr.data.degradations import DegradationCfg  # noqa: E402
from facesr.imageio import read_rgb  # noqa: E402
from facesr.inference import OnnxModel, export_onnx  # noqa: E402
from facesr.metrics import psnr  # noqa: E402

SPEED_KEEP, DB_KEEP = 1.3, 0.05


def hardware() -> str:
    from benchmarks.common import hardware_line
    from facesr.inference.precision import cpu_flags, cpu_supports_bf16

    f = cpu_flags()
    isa = [x for x in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni") if x in f]
    return hardware_line() + f" | ISA: {' '.join(isa) or '?'} | native bf16: {cpu_supports_bf16()}"


def calibration_batches(n: int, size: int = 512) -> list[np.ndarray]:
    """``n`` degraded train-hq faces as float32 (1, 3, 128, 128) 0-1 (facesr degrade, seed 1)."""
    from facesr.data.datasets import degrade_offline

    files = sorted((SHARED / "data" / "train-hq").glob("*.png"))[:n]
    cfg, out = DegradationCfg(), []
    for p in files:
        hq = read_rgb(p)
        if hq.shape[:2] != (size, size):
            import cv2

            hq = cv2.resize(hq, (size, size), interpolation=cv2.INTER_AREA)
        lq, _ = degrade_offline(hq, cfg, 1, p.stem)
        out.append((lq.astype(np.float32).transpose(2, 0, 1)[None] / 255.0).copy())
    return out


def eval_pairs(limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    from facesr.cli import main as cli

    pairs = []
    tmp = Path(tempfile.mkdtemp(prefix="facesr-bb-"))
    for name in ("dev-val-hq", "dev-val-celebahq"):
        src = SHARED / "data" / name
        if not src.is_dir():
            continue
        out = tmp / name
        if cli(["degrade", str(src), str(out), "--seed", "0"]) != 0:
            raise RuntimeError(f"facesr degrade {src} failed")
        n = 0
        for p in sorted(src.iterdir()):
            lq_p = out / (p.stem + ".png")  # facesr degrade writes PNG whatever the HQ format
            if lq_p.is_file() and (not limit or n < limit):
                pairs.append((read_rgb(lq_p), read_rgb(p)))
                n += 1
    return pairs


class TorchRunner:
    def __init__(self, amp: bool):
        self.r = facesr.load(device="cpu", amp=amp, channels_last=True)
        self.amp = amp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.r.model(t).float().numpy()


def build_variants(calib, cache: Path | None = None) -> tuple[dict, dict]:
    """``calib``: list of batches, or a callable making them (only called when a quantizer needs them).
    ``cache``: folder keeping the int8 models (ort_int8.onnx, ov_int8.xml) between runs."""
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    _calib: list = []

    def get_calib():
        if not _calib:
            _calib.extend(calib() if callable(calib) else calib)
        return _calib

    variants, skipped = {}, {}
    variants["torch fp32 (channels_last)"] = TorchRunner(False)
    variants["torch bf16 + channels_last"] = TorchRunner(True)
    model = facesr.load(device="cpu").model.to(memory_format=torch.contiguous_format)
    onnx_bytes = export_onnx(model, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="facesr-bb-"))
    (tmp / "fp32.onnx").write_bytes(onnx_bytes)
    try:
        import onnxruntime  # noqa: F401

        variants["onnxruntime fp32"] = OnnxModel(onnx_bytes, threads=1)
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(get_calib())

            def get_next(self):
                x = next(self.it, None)
                return None if x is None else {"lq": x}

        int8 = (cache or tmp) / "ort_int8.onnx"
        if not int8.is_file():
            t0 = time.time()
            quantize_static(
                str(tmp / "fp32.onnx"),
                str(int8),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            print(f"onnxruntime quantize_static: {time.time() - t0:.0f} s on {len(get_calib())} faces", flush=True)
        variants["onnxruntime int8 (static QDQ)"] = OnnxModel(int8, threads=1)
    except ImportError:
        skipped["onnxruntime fp32"] = skipped["onnxruntime int8 (static QDQ)"] = "onnxruntime not installed"
    try:
        import openvino

        from facesr.inference.openvino import OpenVinoModel, quantize_int8, read_model

        variants["OpenVINO fp32"] = OpenVinoModel(onnx_bytes, "f32", threads=1)
        ov_bf16 = OpenVinoModel(onnx_bytes, "bf16", threads=1)
        variants[f"OpenVINO bf16 hint (runs {ov_bf16.precision})"] = ov_bf16
        try:
            ov_int8 = (cache or tmp) / "ov_int8.xml"
            if ov_int8.is_file():
                q = openvino.Core().read_model(str(ov_int8))
            else:
                t0 = time.time()
                q = quantize_int8(read_model(onnx_bytes), get_calib())
                openvino.save_model(q, str(ov_int8), compress_to_fp16=False)
                print(f"NNCF quantize: {time.time() - t0:.0f} s on {len(get_calib())} faces", flush=True)
            variants["OpenVINO int8 (NNCF PTQ)"] = OpenVinoModel(q, "f32", threads=1)
        except ImportError as e:  # MissingExtraError: nncf absent
            skipped["OpenVINO int8 (NNCF PTQ)"] = str(e)
    except ImportError:
        skipped["OpenVINO fp32"] = skipped["OpenVINO bf16 hint"] = "openvino not installed"
    return variants, skipped


def speed(variants: dict, batch: int, rounds: int) -> dict[str, float]:
    """Seconds of process CPU time per image, round-robin over the variants."""
    x = np.random.default_rng(0).random((batch, 3, 128, 128), dtype=np.float32)
    names = list(variants)
    for n in names:
        variants[n](x)  # warm-up (and first-shape compilation)
    cpu = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            c0 = time.process_time()
            variants[n](x)
            cpu[n] += time.process_time() - c0
    return {n: cpu[n] / (rounds * batch) for n in names}


def quality(variants: dict, pairs, slow_limit: int) -> dict[str, float]:
    """Mean PSNR per variant; torch bf16 (emulated, ~10x slower without native bf16) on the first
    ``slow_limit`` pairs only, its delta then taken against fp32 torch on the same pairs."""
    out = {}
    for n, f in variants.items():
        vals = []
        use = pairs[:slow_limit] if "bf16 + channels_last" in n and slow_limit else pairs
        if len(use) < len(pairs):
            ref = variants["torch fp32 (channels_last)"]
            ref_vals = [
                psnr(
                    np.rint(
                        np.clip(ref(lq.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0))[0], 0, 1)
                        * 255.0
                    )
                    .astype(np.uint8)
                    .transpose(1, 2, 0),
                    gt,
                )
                for lq, gt in use
            ]
        for lq, gt in use:
            y = f(lq.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0))[0]
            sr = np.rint(np.clip(y, 0, 1) * 255.0).astype(np.uint8).transpose(1, 2, 0)
            vals.append(psnr(sr, gt))
        out[n] = float(np.mean(vals))
        if len(use) < len(pairs):  # report on the common scale: fp32 mean over all pairs + the subset's delta
            out[n] = out["torch fp32 (channels_last)"] + out[n] - float(np.mean(ref_vals))
        print(f"  PSNR {n}: {out[n]:.4f} dB over {len(vals)} pairs", flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=200, help="calibration faces for the int8 variants")
    ap.add_argument("--eval-limit", type=int, default=None, help="use only the first N pairs of each dev-val folder")
    ap.add_argument("--rounds", type=int, default=3, help="timed calls per variant and batch size")
    ap.add_argument("--cache", default=None, help="folder to keep/reuse the int8 models (quantizing takes minutes)")
    ap.add_argument("--no-quality", action="store_true", help="speed only")
    ap.add_argument(
        "--slow-eval-limit",
        type=int,
        default=0,
        help="score torch bf16 on only the first N pairs (0 = all; it is emulated without native bf16)",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(hardware(), flush=True)
    variants, skipped = build_variants(lambda: calibration_batches(a.calib), Path(a.cache) if a.cache else None)
    pairs = [] if a.no_quality else eval_pairs(a.eval_limit)
    q = quality(variants, pairs, a.slow_eval_limit) if pairs else {}
    sp = {b: speed(variants, b, a.rounds) for b in (1, 4)}
    from facesr.inference.precision import cpu_supports_bf16

    bf16, fp32 = "torch bf16 + channels_last", "torch fp32 (channels_last)"
    # The verdict baseline is what the precision policy picks on this CPU: bf16 only with native bf16
    # (without it, autocast bf16 is emulated and ~10x slower than fp32, which would flatter every row).
    base = bf16 if cpu_supports_bf16() else fp32
    print(
        f"verdict baseline: {base} (native bf16: {cpu_supports_bf16()}); keep = >= {SPEED_KEEP}x faster "
        f"at both batch sizes and <= {DB_KEEP} dB below fp32 torch"
    )
    print(
        f"\nbatch 1 and 4, 128x128 -> 512x512, 1 thread, CPU s/image (process time), {a.rounds} rounds; "
        f"PSNR over {len(pairs)} dev-val pairs (seed 0)"
        + (f"; torch bf16 on the first {a.slow_eval_limit}" if a.slow_eval_limit else "")
    )
    print(
        f"{'variant':40s} {'s/img b1':>9s} {'s/img b4':>9s} {'vs bf16 b1/b4':>14s} {'vs fp32 b1/b4':>14s} "
        f"{'PSNR dB':>8s} {'dB vs fp32':>10s}  verdict"
    )
    for n in variants:
        r16 = [sp[b][bf16] / sp[b][n] for b in (1, 4)]
        rb = [sp[b][base] / sp[b][n] for b in (1, 4)]
        r32 = [sp[b][fp32] / sp[b][n] for b in (1, 4)]
        d = q.get(n, float("nan")) - q.get(fp32, float("nan"))
        if n in (bf16, fp32):
            verdict = "baseline"
        else:
            verdict = "KEEP" if min(rb) >= SPEED_KEEP and d >= -DB_KEEP else "reject"
        print(
            f"{n:40s} {sp[1][n]:9.3f} {sp[4][n]:9.3f} {r16[0]:6.2f}/{r16[1]:5.2f}x {r32[0]:6.2f}/{r32[1]:5.2f}x "
            f"{q.get(n, float('nan')):8.3f} {d:+10.3f}  {verdict}"
        )
    for n, why in skipped.items():
        print(f"{n:40s} skipped: {why}")
    print(f"load avg at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
