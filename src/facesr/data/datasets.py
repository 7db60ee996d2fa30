"""Datasets: HQ faces degraded on the fly for training, and LQ/GT pairs for validation.

Tensors leave the workers as **uint8 CHW** (4x less to copy and pin than
float); the trainer converts them to float 0-1 on the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ImageError
from ..io.files import list_images
from ..io.images import read_rgb
from .degradations import DegradationCfg, DegradationParams, degrade
from .pairs import load_pairs
from .seeding import offline_rng, train_sample_rng

_warned_resize = False


def prepare_hq(img: np.ndarray, size: int, policy: str, name: str) -> np.ndarray:
    """Bring an HQ image to ``size x size``: area-resize with one warning, or refuse (policy 'error')."""
    global _warned_resize
    if img.shape[:2] == (size, size):
        return img
    if policy == "error":
        raise ImageError(f"{name}: HQ image is {img.shape[1]}x{img.shape[0]}, expected {size}x{size}")
    if not _warned_resize:
        warnings.warn(
            f"{name}: HQ image is {img.shape[1]}x{img.shape[0]}, area-resizing to {size}x{size} "
            "(further such images are resized silently)",
            stacklevel=2,
        )
        _warned_resize = True
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def degrade_offline(
    hq: np.ndarray, cfg: DegradationCfg, seed: int, stem: str, copy: int = 0, copies: int = 1
) -> tuple[np.ndarray, DegradationParams]:
    """The LQ that ``facesr degrade --seed seed`` writes for ``stem`` (copy ``copy``)."""
    rng, s = offline_rng(cfg.rng, seed, stem, copy, copies)
    return degrade(hq, cfg, rng, s)


def to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> uint8 3xHxW tensor (no scaling)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class HQDegradeDataset(Dataset):
    """HQ faces, degraded on the fly.  Index with ``(sample_no, image_index)`` keys from
    :class:`InfiniteSampler`; returns ``(lq uint8 3xhxw, gt uint8 3xHxW)``.

    The degradation, flip and crop of sample ``sample_no`` come from one RNG
    seeded by ``(seed, sample_no)``.  With ``crop_size`` an LQ patch and the
    matching GT patch (x scale) are cut.  ``degrade=False`` returns only the
    (flipped, full-size) GT, for GPU-side degradation (which crops after degrading).
    """

    def __init__(
        self,
        hq_dir: str | list[str],
        deg: DegradationCfg,
        seed: int,
        hq_size: int = 512,
        hq_resize: str = "area",
        crop_size: int | None = None,
        flip: bool = True,
        scale: int = 4,
        degrade: bool = True,
        cache: bool = True,
    ):
        dirs = [hq_dir] if isinstance(hq_dir, (str, Path)) else list(hq_dir)
        # Several folders are concatenated in the order given (each folder sorted by name).
        self.files = [f for d in dirs for f in list_images(d, "data.train_hq_dir")]
        self.deg, self.seed, self.hq_size, self.hq_resize = deg, seed, hq_size, hq_resize
        self.crop_size, self.flip, self.scale, self.degrade = crop_size, flip, scale, degrade
        # Decoded HQ images are kept per worker up to a budget (173 faces = 133 MB; 5,000 would be 3.9 GB
        # per worker, so beyond the budget images are decoded again each time).
        self.cache: dict[int, np.ndarray] | None = {} if cache else None
        self.cache_budget, self.cache_bytes = 512 * 2**20, 0

    def __len__(self) -> int:
        return len(self.files)

    def load_hq(self, idx: int) -> np.ndarray:
        if self.cache is not None and idx in self.cache:
            return self.cache[idx]
        path = self.files[idx]
        img = prepare_hq(read_rgb(path), self.hq_size, self.hq_resize, str(path))
        if self.cache is not None and self.cache_bytes + img.nbytes <= self.cache_budget:
            self.cache[idx] = img
            self.cache_bytes += img.nbytes
        return img

    def __getitem__(self, key):
        sample_no, idx = key
        hq = self.load_hq(idx)
        rng = train_sample_rng(self.deg.rng, self.seed, sample_no)
        if self.degrade:
            lq, _ = degrade(hq, self.deg, rng)
        else:
            lq = None
        # Flip: one draw, same decision for LQ and GT (MMagic's Flip transform).
        if self.flip and rng.uniform(0.0, 1.0) < 0.5:
            hq = hq[:, ::-1]
            lq = lq[:, ::-1] if lq is not None else None
        if self.crop_size and lq is not None:
            lq_h = self.hq_size // self.scale
            c = self.crop_size
            top = int(rng.uniform(0, 1) * (lq_h - c + 1))
            left = int(rng.uniform(0, 1) * (lq_h - c + 1))
            s = self.scale
            hq = hq[top * s : (top + c) * s, left * s : (left + c) * s]
            lq = lq[top : top + c, left : left + c] if lq is not None else None
        gt_t = to_chw_tensor(hq)
        if lq is None:
            return torch.empty(0, dtype=torch.uint8), gt_t
        return to_chw_tensor(lq), gt_t


class InfiniteSampler(Sampler):
    """Endless stream of ``(sample_no, image_index)`` keys, sharded across ranks.

    Epoch ``e`` visits all images in the permutation drawn from ``(seed, e)``.
    Rank ``r`` of ``W`` takes global samples ``r, r+W, r+2W, ...`` starting at
    ``start``, so the global stream is the same for any world size and a
    resumed run continues it exactly.
    """

    def __init__(self, n_images: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n_images, seed, start, rank, world_size

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 2, epoch]))).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        sample_no = self.start + self.rank
        epoch, perm = -1, np.arange(0)
        while True:
            e = sample_no // self.n
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield sample_no, int(perm[sample_no % self.n])
            sample_no += self.world

    def __len__(self) -> int:  # pragma: no cover - infinite
        return 2**62


def load_val_pairs(data_cfg, deg: DegradationCfg, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Validation pairs as ``(stem, lq uint8 HxWx3, gt uint8 HxWx3)``, loaded once into memory.

    From ``val_lq_dir`` + ``val_gt_dir`` (matched by stem, sizes checked) or from
    ``val_hq_dir`` degraded with ``val_seed`` (identical to ``facesr degrade --seed``).
    """
    if data_cfg.val_lq_dir or data_cfg.val_gt_dir:
        if not (data_cfg.val_lq_dir and data_cfg.val_gt_dir):
            raise ImageError("data.val_lq_dir and data.val_gt_dir must be given together")
        return load_pairs(data_cfg.val_lq_dir, data_cfg.val_gt_dir, scale, "data.val_lq_dir", "data.val_gt_dir")
    if data_cfg.val_hq_dir:
        out = []
        for p in list_images(data_cfg.val_hq_dir, "data.val_hq_dir"):
            gt = prepare_hq(read_rgb(p), data_cfg.hq_size, data_cfg.hq_resize, str(p))
            lq, _ = degrade_offline(gt, deg, data_cfg.val_seed, p.stem)
            out.append((p.stem, lq, gt))
        return out
    return []
