"""Per-sample seeds that do not depend on worker count, order or world size.

A training sample is identified by its global position ``sample_no`` in the
infinite stream; an offline-degraded image by ``(seed, stem, copy)``.  Each
gets its own ``SeedSequence``, so results are the same with 0 or 16 workers,
1 or 8 GPUs.
"""

from __future__ import annotations

import zlib

import numpy as np

from .degradations import Rng, make_rng

#: Largest seed accepted anywhere (numpy's legacy seeding, which MMagic mode reseeds with, takes 0..2**32-1).
MAX_SEED = 2**32 - 1


def stem_key(stem: str) -> int:
    """CRC-32 of the stem's bytes as the file system has them (UTF-8; a name that is not UTF-8 by its own bytes)."""
    return zlib.crc32(stem.encode("utf-8", "surrogateescape"))


def train_sample_rng(mode: str, seed: int, sample_no: int) -> Rng:
    """RNG for training sample ``sample_no`` (facesr: private Generator; mmagic: reseeded globals)."""
    return make_rng(
        mode,
        np.random.SeedSequence([seed, 1, sample_no])
        if mode == "facesr"
        else int(np.random.SeedSequence([seed, 1, sample_no]).generate_state(1)[0]),
    )


def offline_rng(mode: str, seed: int, stem: str, copy: int, copies: int) -> tuple[Rng, object]:
    """RNG for ``facesr degrade`` / validation pairs.

    facesr mode: ``SeedSequence([seed, crc32(stem), copy])``.  mmagic mode: the
    global RNGs are seeded with ``seed + copy`` before each image, exactly as
    the MMagic fixtures were made (``random.seed(s); np.random.seed(s)``).
    """
    if mode == "mmagic":
        s = seed + copy
        return make_rng("mmagic", s), s
    return make_rng("facesr", np.random.SeedSequence([seed, stem_key(stem), copy])), [seed, stem, copy]
