"""Data-loader throughput: HQDegradeDataset + InfiniteSampler with 0, 1, 2 workers (samples/s, wall).

Built exactly as the trainer builds its loader (forkserver workers, single-threaded
OpenCV/torch per worker, persistent workers, prefetch), over a temporary folder
of synthetic 512x512 PNG faces, degrading on the CPU with the exact pipeline.
The first batch (worker start-up, image decode into the cache) and the batches
the workers could have queued meanwhile (workers x prefetch) are not timed.
Wall-clock only: worker CPU time is not attributable here, so numbers measured
while other jobs load the machine are pessimistic and do not scale with workers.
Run alone: ``python -m benchmarks.bench_dataloader [--quick] [--workers 0,1,2]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from torch.utils.data import DataLoader

from facesr.data.datasets import HQDegradeDataset, InfiniteSampler
from facesr.data.degradations import DegradationCfg
from facesr.training.loader import _worker_init

from .common import Row, print_report, write_faces

GROUP = "dataloader"
PREFETCH = 2  # batches queued per worker (the trainer's default is 4; 2 keeps the untimed warm-up short)


def measure(
    hq_dir: str, workers: int, batch: int, n_batches: int, crop: int | None = None, exact_blur: bool = True
) -> tuple[float, float]:
    """(samples/s after the first batch, seconds to the first batch) for one loader setting."""
    deg = DegradationCfg()
    deg.blur.exact = exact_blur
    ds = HQDegradeDataset(hq_dir, deg, seed=0, crop_size=crop)
    loader = DataLoader(
        ds,
        batch_size=batch,
        sampler=InfiniteSampler(len(ds), 0),
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH if workers else None,
        drop_last=True,
        multiprocessing_context="forkserver" if workers and sys.platform != "win32" else None,
    )
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    startup = time.perf_counter() - t0
    # Batches the workers may have queued while the first one was awaited are not timed either.
    for _ in range(workers * PREFETCH):
        next(it)
    t1 = time.perf_counter()
    for _ in range(n_batches):
        lq, gt = next(it)
    t2 = time.perf_counter()
    assert lq.shape[0] == batch and gt.shape[-1] == (crop * 4 if crop else 512)
    del it, loader
    return n_batches * batch / (t2 - t1), startup


def run(quick: bool = False, workers=(0, 1, 2)) -> list[Row]:
    batch, n_batches = (4, 3) if quick else (4, 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="facesr-bench-") as d:
        write_faces(d, 8)
        for w in workers:
            rate, startup = measure(d, w, batch, n_batches)
            rows.append(
                Row(
                    GROUP,
                    f"num_workers={w}",
                    rate,
                    "samples/s (wall)",
                    baseline=w == workers[0],
                    note=f"batch {batch}, {n_batches} batches timed, first batch after {startup:.1f} s",
                )
            )
        if not quick:
            w = max(workers)
            rate, startup = measure(d, w, batch, n_batches, exact_blur=False)
            rows.append(
                Row(
                    GROUP,
                    f"num_workers={w}, blur.exact=false",
                    rate,
                    "samples/s (wall)",
                    note=f"batch {batch}, {n_batches} batches timed",
                )
            )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches")
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default 0,1,2)")
    a = ap.parse_args(argv)
    print_report("dataloader", run(a.quick, tuple(int(w) for w in a.workers.split(","))))


if __name__ == "__main__":
    main()
