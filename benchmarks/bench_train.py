"""Training speed: iterations/s of the MSRResNet recipes under each speed option, on synthetic tensors.

Mode 1 (default, used by ``python -m benchmarks``): one training step =
forward (optionally under bf16 autocast) -> L1 loss in fp32 -> backward -> Adam,
for MSRResNet-16 and -24, on random tensors (no data loading), comparing

    eager fp32 + foreach Adam (the trainer's CPU default)  [baseline]
    channels_last | bf16 autocast | bf16 + channels_last | for-loop Adam | fused Adam | torch.compile

On CPU: one thread, small LQ crops (batch 4 at 24x24 LQ, 16x16 with --quick); the
rate is iterations per CPU-second of the measuring thread (robust to other jobs).
On CUDA: batch 16 at the full 128x128 LQ, wall clock with synchronisation.

Mode 2, ``--config configs/X.yaml --iters N``: runs the real trainer
(:func:`facesr.training.trainer.train`) for N iterations into a temporary folder
and reports it/s and the data-wait fraction from its ``log.jsonl`` (the first
log window, which holds the worker start-up, is reported separately).
Validation is switched off unless ``--keep-val``; ``--synthetic`` trains on a
temporary folder of synthetic faces instead of the config's ``data.train_hq_dir``;
``--set key=value`` overrides like ``facesr train``.

Run alone: ``python -m benchmarks.bench_train [--quick] [--compile]`` or the --config form.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from facesr.models import build_model

from .common import Row, cuda_sync, print_report, single_thread, skip, write_faces

GROUP = "train"

VARIANTS = [
    # name, channels_last, bf16, adam impl, compile
    ("eager fp32, foreach Adam", False, False, "foreach", False),
    ("channels_last", True, False, "foreach", False),
    ("bf16 autocast", False, True, "foreach", False),
    ("bf16 + channels_last", True, True, "foreach", False),
    ("for-loop Adam", False, False, "loop", False),
    ("fused Adam", False, False, "fused", False),
    ("torch.compile", False, False, "foreach", True),
]


def _step_fn(model, opt, lq, gt, bf16: bool, device):
    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(lq)
        loss = F.l1_loss(out.float(), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def measure_variant(
    num_blocks: int,
    channels_last: bool,
    bf16: bool,
    adam: str,
    compile_: bool,
    device: torch.device,
    batch: int,
    lq_size: int,
    iters: int,
    warmup: int,
) -> tuple[float, float]:
    """(iterations per second of the clock that matters on ``device``, wall it/s)."""
    torch.manual_seed(0)
    model = build_model("msrresnet", mid_channels=64, num_blocks=num_blocks, upscale_factor=4).to(device)
    lq = torch.rand(batch, 3, lq_size, lq_size, device=device)
    gt = torch.rand(batch, 3, lq_size * 4, lq_size * 4, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        lq = lq.contiguous(memory_format=torch.channels_last)
        gt = gt.contiguous(memory_format=torch.channels_last)
    kw = {"foreach": {"foreach": True}, "loop": {"foreach": False}, "fused": {"fused": True}}[adam]
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999), **kw)
    net = torch.compile(model) if compile_ else model
    step = _step_fn(net, opt, lq, gt, bf16, device)
    for _ in range(warmup):
        step()
    cuda_sync()
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(iters):
        loss = step()
    float(loss.detach())
    cuda_sync()
    wall = time.perf_counter() - w0
    cpu = time.thread_time() - c0
    rate = iters / wall if device.type == "cuda" else iters / cpu
    return rate, iters / wall


def run(quick: bool = False, compile_: bool = False, blocks=(16, 24)) -> list[Row]:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        batch, lq_size, iters, warmup = 16, 128, (10 if quick else 30), 3
        unit = "it/s (GPU, wall)"
    else:
        batch, lq_size, iters, warmup = (4, 16, 2, 1) if quick else (4, 24, 3, 1)
        unit = "it/CPU-s (1 thread)"
    if quick:
        blocks = blocks[:1]
    rows: list[Row] = []
    ctx = single_thread() if not cuda else _Null()
    with ctx:
        for nb in blocks:
            group = f"{GROUP} B={nb}"
            for i, (name, cl, bf16, adam, comp) in enumerate(VARIANTS):
                if comp and not (compile_ or cuda):
                    rows.append(
                        skip(
                            group,
                            name,
                            unit,
                            "inductor warm-up takes minutes on a small CPU; pass --compile (bench_train) to include it",
                        )
                    )
                    continue
                if comp and shutil.which("c++") is None and shutil.which("g++") is None and not cuda:
                    rows.append(skip(group, name, unit, "no C++ compiler for inductor"))
                    continue
                try:
                    t0 = time.perf_counter()
                    rate, wall_rate = measure_variant(
                        nb, cl, bf16, adam, comp, device, batch, lq_size, iters, warmup + (2 if comp else 0)
                    )
                    note = f"batch {batch}, LQ {lq_size}x{lq_size}, {iters} it; {wall_rate:.3g} it/s wall"
                    if comp:
                        note += f"; incl. warm-up {time.perf_counter() - t0:.0f} s total"
                    rows.append(Row(group, f"MSRResNet-{nb} {name}", rate, unit, baseline=i == 0, note=note))
                except Exception as exc:  # an option unsupported on this build/device: report, continue
                    rows.append(skip(group, f"MSRResNet-{nb} {name}", unit, f"{type(exc).__name__}: {exc}"[:120]))
    return rows


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- real trainer run


def run_config(
    config: str | None,
    iters: int,
    overrides: list[str] | None = None,
    synthetic: bool = False,
    keep_val: bool = False,
    work_dir: str | None = None,
) -> dict:
    """Train ``iters`` iterations with the real loop; returns it/s and data-wait figures from log.jsonl."""
    from facesr.config import load_config
    from facesr.training.trainer import train

    tmp = tempfile.mkdtemp(prefix="facesr-bench-train-")
    try:
        ov = list(overrides or [])
        if synthetic:
            write_faces(Path(tmp) / "hq", 8)
            ov.append(f"data.train_hq_dir={Path(tmp) / 'hq'}")
        if not keep_val:
            ov += ["data.val_lq_dir=null", "data.val_gt_dir=null", "data.val_hq_dir=null"]
        log_every = max(1, iters // 4)
        ov += [
            f"train.max_iters={iters}",
            f"train.log_interval={log_every}",
            f"train.val_interval={iters}",
            f"train.ckpt_interval={iters}",
        ]
        cfg = load_config(config, ov)
        wd = Path(work_dir) if work_dir else Path(tmp) / "work"
        t0 = time.perf_counter()
        train(cfg, wd, quiet=True)
        total = time.perf_counter() - t0
        recs = [json.loads(line) for line in (wd / "log.jsonl").read_text().splitlines()]
        tr = [r for r in recs if r.get("kind") == "train"]
        first, rest = tr[0], tr[1:] or tr[:1]
        n_rest = sum(log_every for _ in rest)
        secs = sum(log_every / r["it_per_s"] for r in rest if r["it_per_s"] > 0)
        wait = sum(r["data_wait"] * log_every / r["it_per_s"] for r in rest if r["it_per_s"] > 0)
        return {
            "it_per_s": n_rest / secs if secs else float("nan"),
            "data_wait": wait / secs if secs else float("nan"),
            "first_window_it_per_s": first["it_per_s"],
            "first_window_data_wait": first["data_wait"],
            "batch_size": cfg.train.batch_size,
            "num_workers": cfg.data.num_workers,
            "crop_size": cfg.data.crop_size,
            "degrade_on": cfg.data.degrade_on,
            "precision": cfg.train.precision,
            "total_s": total,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def real_loop_row(quick: bool = False) -> Row:
    """A short real trainer run on synthetic faces (cpu_ship-like settings), as one table row."""
    iters = 8
    cfg = Path(__file__).resolve().parents[1] / "configs" / "cpu_ship.yaml"
    # One torch thread in the main process: on a machine that other jobs keep busy, multi-threaded
    # OpenMP barriers stall whenever a thread is descheduled, which would swamp the measurement.
    with single_thread():
        r = run_config(
            str(cfg) if cfg.is_file() else None,
            iters,
            synthetic=True,
            overrides=["data.crop_size=16", "train.batch_size=4", "data.num_workers=1"],
        )
    return Row(
        "train (real loop)",
        "facesr.training.trainer.train",
        r["it_per_s"],
        "it/s (wall)",
        baseline=True,
        note=(
            f"data-wait {r['data_wait']:.0%} after warm-up (first window {r['first_window_data_wait']:.0%}); "
            f"cpu_ship.yaml with batch {r['batch_size']}, crop {r['crop_size']}, workers {r['num_workers']}, "
            f"precision {r['precision']}, 1 torch thread, synthetic faces"
        ),
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="MSRResNet-16 only, tiny crops, fewer iterations")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow warm-up on CPU)")
    ap.add_argument("--config", help="run the real trainer with this YAML config instead")
    ap.add_argument("--iters", type=int, default=20, help="iterations for --config (default 20)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--synthetic", action="store_true", help="--config: train on synthetic faces")
    ap.add_argument("--keep-val", action="store_true", help="--config: keep the config's validation")
    a = ap.parse_args(argv)
    if a.config:
        r = run_config(a.config, a.iters, a.set, a.synthetic, a.keep_val)
        print(
            f"{a.config}: {r['it_per_s']:.3f} it/s, data-wait {r['data_wait']:.1%} (after the first log window; "
            f"first window {r['first_window_it_per_s']:.3f} it/s, data-wait {r['first_window_data_wait']:.1%}); "
            f"batch {r['batch_size']}, workers {r['num_workers']}, crop {r['crop_size']}, "
            f"degrade_on {r['degrade_on']}, precision {r['precision']}; {a.iters} iterations in {r['total_s']:.1f} s"
        )
        return
    print_report("train", run(a.quick, a.compile))


if __name__ == "__main__":
    main()
