"""The batched degradation engine (``data.degrade_engine: batched``): the course pipeline on whole batches.

What it computes
----------------
For a batch of GT faces (float **0-1**, ``(N, 3, H, W)``, normally 512x512, on any torch
device), :class:`BatchedDegrader` draws every sample's parameters at once
(:func:`facesr.data.batched_params.sample_batch`: the exact path's distributions, drawn
from hashes of ``(seed, sample number, draw)``, so a sample's degradation depends only on
the run seed and its sample number, never on the batch, batch size, worker count or
device) and applies them with a fixed number of torch ops per batch, whatever its size
(:mod:`facesr.data.batched_ops`):

1. blur: every sample's 41x41 kernel in one real-FFT product, reflect-101 borders;
2. down-resize: one ``grid_sample`` per interpolation family for the whole batch
   (bilinear, bicubic; INTER_AREA shrinking as exact cell means from a float64
   summed-area table; Lanczos-4 as 8-tap gathers), each sample at its own size on a
   shared canvas whose extra rows/columns repeat the edge;
3. Gaussian noise: ``sigma`` in 0-255 units, per pixel and channel (or one map for all
   channels in gray mode), added unclipped, read from a table of N(0, 1) values at
   per-sample hashed positions (:class:`facesr.data.batched_ops.NoiseBank`);
4. JPEG: a torch model of libjpeg's baseline 4:2:0 codec, per-sample quality;
5. up-resize to the HQ size and 6. area-resize to the LQ size, like step 2.

Between the steps the image is rounded half-to-even and clamped to 0..255 exactly where
the uint8 OpenCV pipeline is uint8 (after blur, after each resize, before JPEG).

How it differs from the exact OpenCV path (:func:`facesr.data.degradations.apply_params`)
---------------------------------------------------------------------------------------
* **Parameters** have the same distributions but other draws (a different generator).
  Given the same records (:meth:`BatchedDegrader.apply` takes them too) both paths use
  the same parameters.
* **Noise**: another realisation of the same Gaussian field; ``noise="record"`` instead
  uses the exact path's own numpy field of each record (per-sample host work: for
  agreement checks and ``facesr degrade --engine batched``).
* **JPEG** is an approximation of libjpeg, not libjpeg: float colour conversion and DCT
  instead of libjpeg's fixed-point ones; the same Annex K tables and quality scaling,
  4:2:0 with libjpeg's rounding biases and "fancy" chroma upsampling.
* **Resizes** use float arithmetic.  OpenCV's uint8 INTER_LINEAR is fixed point and comes
  out 1/8 level low on average; the bilinear steps subtract that 1/8 before rounding.
* **Blur** is a float32 FFT product; OpenCV rounds another float32 sum, so a few pixels in
  100,000 land on the other side of a .5 tie.
* **Flip** happens in the dataset before this degradation (the exact path flips after);
  the kernel distribution is mirror-symmetric, so the LQ distribution is the same.

The measured agreement (PSNR between the two paths' LQ on the same records; mean and
distribution of the bicubic-x4 PSNR over 2,000 samples) is in docs/performance.md and
pinned by tests/test_batched_degradations.py.  TF32 is switched off inside a call, since
its 10-bit mantissa would move values by more than the rounding steps above.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import numpy as np
import torch

from . import batched_ops as ops
from .batched_params import ParamBatch, key64, sample_batch
from .degradations import DegradationCfg, DegradationParams

#: Noise sources of :class:`BatchedDegrader`.
NOISE_MODES = ("batched", "record")
_NOISE_STREAM = 5  # the noise table's key: (seed, 5)


@contextlib.contextmanager
def _no_tf32():
    m, c = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = m
        torch.backends.cudnn.allow_tf32 = c


def _ceil16(v: int) -> int:
    return -(-int(v) // 16) * 16


def noise_table_bits(cfg: DegradationCfg) -> int:
    """Size (log2) of the noise table: room for 4x the largest noisy image the config can make."""
    up_p = cfg.down.resize_mode_prob[0] if cfg.down.resize_mode_prob else 0.0
    side = int(cfg.up.size * (max(1.0, float(cfg.down.resize_scale[1])) if up_p > 0 else 1.0))
    return max(22, min(28, math.ceil(math.log2(max(1, 3 * side * side))) + 2))


class BatchedDegrader:
    """Degrade GT batches on a torch device (CPU or GPU).

    ``deg_cfg``: the :class:`DegradationCfg` (its ``rng`` field is ignored).  ``seed``: the run
    seed.  ``device``: where the work happens.  ``crop_size``: LQ patch size in pixels (None =
    the whole LQ); ``scale``: GT/LQ size ratio for the aligned GT crop.  ``noise``:
    ``"batched"`` (default) or ``"record"`` (see the module docstring).  ``out_device``: where
    :meth:`__call__` returns its tensors (default ``device``).  ``buckets``: how many groups of
    similar-sized samples go through the middle steps; ``chunk``: at most this many samples per
    pass (None: the whole batch; 0, the default: 4 on the CPU, the whole batch elsewhere).  Neither
    changes the result.
    """

    def __init__(
        self,
        deg_cfg: DegradationCfg,
        seed: int,
        device: torch.device | str = "cpu",
        crop_size: int | None = None,
        scale: int = 4,
        noise: str = "batched",
        out_device: torch.device | str | None = None,
        buckets: int | None = None,
        chunk: int | None = 0,
    ):
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        self.cfg, self.seed = deg_cfg, int(seed)
        self.device = torch.device(device)
        self.out_device = torch.device(out_device) if out_device is not None else self.device
        self.crop_size, self.scale, self.noise = crop_size, int(scale), noise
        cpu = self.device.type == "cpu"
        # Samples go from the down- to the up-resize in this many groups of similar size: less padding to
        # compute on (2 groups: ~1.7x less than one canvas), more op launches (GPU default: one group).
        self.buckets = int(buckets) if buckets is not None else (2 if cpu else 1)
        # On the CPU, batches go through in chunks of 4 samples: whole-batch temporaries of hundreds of MB
        # are fresh mmaps each time, and their page faults cost as much as the work (docs/performance.md).
        self.chunk = (4 if cpu else None) if chunk == 0 else chunk
        if self.buckets < 1 or (self.chunk is not None and self.chunk < 1):
            raise ValueError(f"buckets and chunk must be at least 1, got {buckets}, {chunk}")
        self._bank: ops.NoiseBank | None = None

    # -- parameters -------------------------------------------------------------------------------------
    def sample_params(self, sample_nos: np.ndarray | Sequence[int], in_size: tuple[int, int]) -> ParamBatch:
        """The parameters (and LQ crop origins, with ``crop_size``) of training samples ``sample_nos``."""
        return sample_batch(self.cfg, self.seed, sample_nos, in_size, self.crop_size)

    def sample(self, sample_no: int, in_size: tuple[int, int]) -> tuple[DegradationParams, tuple[int, int] | None]:
        """Sample ``sample_no``'s parameters as a record, and its LQ crop origin ``(top, left)`` (None without crop)."""
        pb = self.sample_params([sample_no], in_size)
        crop = None
        if pb.crop_top is not None and pb.crop_left is not None:
            crop = (int(pb.crop_top[0]), int(pb.crop_left[0]))
        return pb.to_records()[0], crop

    @property
    def bank(self) -> ops.NoiseBank:
        if self._bank is None:
            self._bank = ops.NoiseBank(int(key64(self.seed, _NOISE_STREAM)) >> 1, noise_table_bits(self.cfg))
        return self._bank

    # -- applying ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(
        self, gt255: torch.Tensor, params: ParamBatch | Sequence[DegradationParams], noise: str | None = None
    ) -> torch.Tensor:
        """Degrade (N, 3, H, W) GT on the **0-255** scale with per-sample parameters (a :class:`ParamBatch` or
        exact-path records); returns the LQ (N, 3, h, w) on ``device``, float32 0-255, integer-valued."""
        pb = params if isinstance(params, ParamBatch) else ParamBatch.from_records(params)
        noise = noise or self.noise
        if noise not in NOISE_MODES or (noise == "record" and pb.records is None):
            raise ValueError(f"noise {noise!r}: use 'batched', or 'record' with exact-path records")
        if gt255.ndim != 4 or gt255.shape[0] != len(pb):
            raise ValueError(f"{len(pb)} parameter rows for a batch of shape {tuple(gt255.shape)}")
        if tuple(gt255.shape[2:]) != tuple(pb.in_size):
            raise ValueError(f"parameters drawn for size {tuple(pb.in_size)}, batch is {tuple(gt255.shape[2:])}")
        n = len(pb)
        if self.chunk is None or n <= self.chunk:
            return self._apply(gt255, pb, noise)
        parts = [np.arange(s, min(s + self.chunk, n)) for s in range(0, n, self.chunk)]
        return torch.cat([self._apply(gt255[int(i[0]) : int(i[-1]) + 1], pb.subset(i), noise) for i in parts])

    def _apply(self, gt255: torch.Tensor, pb: ParamBatch, noise: str) -> torch.Tensor:
        """:meth:`apply` on one pass's samples."""
        x = ops.q8(gt255.to(self.device, torch.float32))
        with _no_tf32():
            if pb.blur_on.any():
                k = ops.gaussian_kernels(pb.blur_iso, pb.blur_ksize, pb.sigma_x, pb.sigma_y, pb.theta, pb.blur_on)
                x = ops.q8(ops.blur(x, k))
            x = self._middle(x, pb, noise)
            h, w = pb.sizes_after("up")
            fh, fw = pb.sizes_after("final")
            if np.any(fh != fh[0]) or np.any(fw != fw[0]):
                raise ValueError(
                    f"samples end at different sizes ({sorted(set(zip(fh.tolist(), fw.tolist())))}); "
                    "check the resize steps of the degradation config"
                )
            return ops.resize_u8(x, h, w, fh, fw, pb.interp_of("final"), (int(fh[0]), int(fw[0])))

    def _middle(self, x: torch.Tensor, pb: ParamBatch, noise: str) -> torch.Tensor:
        """Steps 2-5 (down, noise, JPEG, up), in up to ``buckets`` groups of samples of similar size (each on
        its own canvas: less padding to process, and the same result as one canvas)."""
        h, w = pb.sizes_after("up")
        if np.any(h != h[0]) or np.any(w != w[0]):  # a config whose up step varies in size: one canvas
            return self._down_to_up(x, pb, noise)
        dh, dw = pb.sizes_after("down")
        groups = np.array_split(np.argsort(dh * dw, kind="stable"), min(self.buckets, len(pb)))
        if len(groups) == 1:
            return self._down_to_up(x, pb, noise)
        out = x.new_empty((x.shape[0], x.shape[1], int(h[0]), int(w[0])))
        for idx in groups:  # a fixed number of groups, whatever the batch size
            dev_idx = ops._dev(idx, x.device)
            out.index_copy_(0, dev_idx, self._down_to_up(x.index_select(0, dev_idx), pb.subset(idx), noise))
        return out

    def _down_to_up(self, x: torch.Tensor, pb: ParamBatch, noise: str) -> torch.Tensor:
        """Steps 2-5 for samples on one canvas."""
        h0, w0 = pb.sizes_after("in")
        h, w = pb.sizes_after("down")
        need16 = bool(pb.jpeg_on.any())
        canvas = (_ceil16(h.max()), _ceil16(w.max())) if need16 else (int(h.max()), int(w.max()))
        x = ops.resize_u8(x, h0, w0, h, w, pb.interp_of("down"), canvas)
        if pb.noise_on.any():
            if noise == "record":
                field = ops.record_noise(pb.records, h, w, canvas, x.device)
            else:
                field = self.bank.field(pb.noise_key, pb.noise_gray, h, w, x.shape[1], canvas, x.device)
            sigma = ops._dev(np.where(pb.noise_on, pb.noise_sigma, 0.0).astype(np.float32), x.device)
            x = x + field * sigma.view(-1, 1, 1, 1)  # float32, unclipped, unrounded (as MMagic 1.x)
        x = ops.q8(x)  # what cv2.imencode (or the next uint8 resize) sees
        if need16:
            dec = ops.jpeg_approx(x, pb.jpeg_quality, pb.jpeg_rgb, (h, w))
            x = dec if pb.jpeg_on.all() else torch.where(ops._dev(pb.jpeg_on, x.device).view(-1, 1, 1, 1), dec, x)
        uh, uw = pb.sizes_after("up")
        return ops.resize_u8(x, h, w, uh, uw, pb.interp_of("up"), (int(uh.max()), int(uw.max())))

    def __call__(
        self, gt_batch: torch.Tensor, first_sample_no: int, stride: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Degrade a GT batch: float **0-1** (N, 3, H, W) -> ``(lq, gt)``, float32 0-1 on ``out_device``.

        Sample ``i`` is training sample ``first_sample_no + i * stride`` (``stride`` = world size under
        DDP, where rank r's batch holds samples r, r+W, ...).  ``lq`` is (N, 3, H/4, W/4) for the course
        config, or the ``crop_size`` patch; ``gt`` is the input, cut to the matching ``crop_size * scale``
        patch when cropping.  LQ values are multiples of 1/255.
        """
        if gt_batch.ndim != 4 or gt_batch.shape[1] != 3:
            raise ValueError(f"GT batch must be (N, 3, H, W), got {tuple(gt_batch.shape)}")
        gt = gt_batch.to(self.device, torch.float32)
        n, _, h, w = gt.shape
        nos = int(first_sample_no) + np.arange(n, dtype=np.int64) * int(stride)
        pb = self.sample_params(nos, (h, w))
        lq = self.apply(gt * 255.0, pb).div_(255.0)
        if self.crop_size and pb.crop_top is not None and pb.crop_left is not None:
            lq = _crop(lq, pb.crop_top, pb.crop_left, self.crop_size)
            gt = _crop(gt, pb.crop_top * self.scale, pb.crop_left * self.scale, self.crop_size * self.scale)
        return lq.to(self.out_device).contiguous(), gt.to(self.out_device).contiguous()


def _crop(x: torch.Tensor, top: np.ndarray, left: np.ndarray, size: int) -> torch.Tensor:
    """Per-sample ``size x size`` crops at (top, left) (host arrays), two gathers for the batch."""
    n, c, _, ww = x.shape
    rows = ops._dev(top[:, None] + np.arange(size), x.device)
    cols = ops._dev(left[:, None] + np.arange(size), x.device)
    x = x.gather(2, rows.view(n, 1, size, 1).expand(n, c, size, ww))
    return x.gather(3, cols.view(n, 1, 1, size).expand(n, c, size, size))


def train_degrader(cfg, device: torch.device) -> BatchedDegrader | None:
    """The trainer's batched degrader for config ``cfg`` (None with ``data.degrade_engine: exact``).

    It runs on ``data.degrade_device`` (``auto``: the training ``device``) and returns its
    batches on ``device``.
    """
    if cfg.data.degrade_engine != "batched":
        return None
    from ..devices import resolve_device

    spec = cfg.data.degrade_device
    where = device if spec == "auto" else resolve_device(spec, option="data.degrade_device")
    return BatchedDegrader(
        cfg.degradation, cfg.seed, where, cfg.data.crop_size, cfg.model.upscale_factor, out_device=device
    )
