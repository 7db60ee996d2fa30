"""facesr's exact degradation against MMagic 1.x's transforms, per sample on one core (CPU time).

Rows (group ``degradation vs MMagic``, all sampling + applying one 512x512 -> 128x128 sample):

* ``MMagic 1.x transforms``: MMagic's own RandomBlur/RandomResize/RandomNoise/RandomJPEGCompression
  when ``mmagic`` is importable (skipped otherwise: it does not install on this machine);
* ``MMagic call sequence (re-created)``: :mod:`benchmarks.mmagic_reference`, the same numpy/cv2
  calls in the same order (the baseline; identical output to MMagic 1.2.0's transforms);
* ``facesr exact, rng=mmagic``: ``degrade(..., MMagicRng(seed))``, bit-identical LQ to MMagic, so
  the same filter2D / randn / resize / JPEG work;
* ``facesr exact, rng=facesr``: the default private Generator (ziggurat float32 noise).

The variants run interleaved (round-robin, rotating the order every sample) on the same
seeds and images, so machine load affects them alike.  Run alone:
``python -m benchmarks.bench_vs_mmagic [--quick] [--samples N]``.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings

import cv2
import numpy as np

from facesr.data import degradations as D

from .common import Row, print_report, single_thread, skip, synthetic_face
from .mmagic_reference import mmagic_pipeline, recreated_degrade

GROUP = "degradation vs MMagic"


def run(quick: bool = False, samples: int | None = None) -> list[Row]:
    n = samples or (24 if quick else 90)
    faces = [synthetic_face(200 + i) for i in range(6)]
    cfg_m, cfg_f = D.DegradationCfg(rng="mmagic"), D.DegradationCfg()

    def seeded(fn):
        def run_one(s):
            random.seed(s)
            np.random.seed(s)
            return fn(faces[s % len(faces)])

        return run_one

    variants: dict[str, object] = {}
    try:
        variants["MMagic 1.x transforms (mmagic package)"] = seeded(mmagic_pipeline())
    except ImportError:
        pass
    variants["MMagic call sequence (re-created)"] = seeded(recreated_degrade)
    variants["facesr exact, rng=mmagic"] = lambda s: D.degrade(faces[s % len(faces)], cfg_m, D.MMagicRng(s))[0]
    variants["facesr exact, rng=facesr (default)"] = lambda s: D.degrade(
        faces[s % len(faces)], cfg_f, D.GeneratorRng(s)
    )[0]
    names = list(variants)
    cpu = dict.fromkeys(names, 0.0)
    level = cv2.getLogLevel() if hasattr(cv2, "getLogLevel") else None
    with single_thread(), warnings.catch_warnings():
        if level is not None:
            cv2.setLogLevel(2)  # MMagic's float imencode logs a fallback warning per sample
        try:
            for name in names:  # warm-up
                variants[name](10_000)
            for s in range(n):
                k = s % len(names)
                for name in names[k:] + names[:k]:
                    c0 = time.thread_time()
                    variants[name](s)
                    cpu[name] += time.thread_time() - c0
        finally:
            if level is not None:
                cv2.setLogLevel(level)
    rows = []
    if "MMagic 1.x transforms (mmagic package)" not in variants:
        rows.append(skip(GROUP, "MMagic 1.x transforms (mmagic package)", "samples/CPU-s", "mmagic not importable"))
    base = "MMagic call sequence (re-created)"
    for name in names:
        rows.append(
            Row(
                GROUP,
                name,
                n / cpu[name],
                "samples/CPU-s",
                baseline=name == base,
                note=f"{1e3 * cpu[name] / n:.2f} ms/sample, {n} samples interleaved, 1 thread",
            )
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--samples", type=int, default=None)
    a = ap.parse_args(argv)
    print_report("degradation vs MMagic", run(a.quick, a.samples))


if __name__ == "__main__":
    main()
