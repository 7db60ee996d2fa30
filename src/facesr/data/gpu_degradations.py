"""Batched torch degradation (``data.degrade_on: gpu``): the course pipeline on whole batches.

What it computes
----------------
For a batch of GT faces (float **0-1**, ``(N, 3, H, W)``, normally 512x512, on
any torch device) :class:`GpuDegrader` draws one
:class:`~facesr.data.degradations.DegradationParams` record per sample (same
sampler, same ranges and draw order as the exact CPU path, from a private
``numpy.random.Generator`` seeded by ``SeedSequence([seed, 3, sample_no])``, so
the result depends only on ``(seed, sample_no)``, never on batch composition,
worker count or device) and applies it with torch ops:

1. blur: per-sample 41x41 Gaussian kernels (the float64 kernels of
   :mod:`facesr.data.kernels`), reflect padding (= OpenCV BORDER_REFLECT_101);
   computed as a real-FFT product (``blur_impl="fft"``, default: cheapest for
   41x41 kernels on CPU and GPU alike) or as direct correlation
   (``blur_impl="conv"``: two 1-D passes for isotropic kernels, a grouped
   ``conv2d`` for anisotropic ones);
2. down-resize, 5. up-resize to 512 and 6. area-resize to 128 follow OpenCV's float
   ``cv2.resize`` formulas: bilinear/bicubic through ``F.interpolate(align_corners=False,
   antialias=False)`` (half-pixel centres, a = -0.75, clamped taps and - like OpenCV -
   no antialiasing when shrinking), INTER_AREA through explicit interpolation matrices
   (fractional cell overlaps when shrinking, OpenCV's own nearest-with-edge-blend rule
   when enlarging, an ``avg_pool2d`` for the integer 512 -> 128 step), Lanczos-4 likewise.
   The blur and the final step run on the whole batch; between the down- and the
   up-resize every sample has its own size, so those steps loop over the samples
   (one or two small kernels each) and the JPEG step re-batches them (edge-padded);
3. Gaussian noise: ``sigma`` in 0-255 units, per pixel and channel (or one map for
   all channels in gray mode), added unclipped;
4. JPEG: a torch model of libjpeg's baseline codec (see :func:`jpeg_approx`) with
   per-sample quality.

Between the steps the image is rounded half-to-even and clamped to 0..255
exactly where the uint8 CPU pipeline rounds (after blur, after each resize,
before JPEG), so the two paths see the same quantisation.

How it differs from the exact OpenCV path (:func:`facesr.data.degradations.apply_params`)
---------------------------------------------------------------------------------------
* **JPEG** is an approximation of libjpeg(-turbo), not libjpeg: float RGB->YCbCr
  (JFIF coefficients, rounded) instead of 16-bit fixed point; 2x2 chroma averaging;
  an orthonormal float DCT instead of libjpeg's integer ``islow`` DCT; the same
  quantisation tables (ITU T.81 Annex K, scaled by quality exactly as libjpeg's
  ``jpeg_quality_scaling``), rounding half away from zero; float IDCT; libjpeg's
  "fancy" (triangle) chroma upsampling; float YCbCr->RGB.  Edge blocks are padded
  by replicating the last row/column (libjpeg does the same inside a block).
  Measured against ``cv2.imencode/imdecode`` on synthetic faces (q 50-95, both
  colour orders): 56-93% of pixels identical, mean |difference| 0.16-0.62 levels,
  45-51 dB between the two decodes, a few isolated pixels off by up to ~20 levels
  at sharp edges; PSNR to the codec input within 0.02 dB of libjpeg's.
* **Resizes** use float arithmetic.  OpenCV's uint8 INTER_LINEAR uses 11-bit
  fixed-point weights and truncating SIMD arithmetic that comes out 1/8 level low on
  average; bilinear steps here subtract that 1/8 before rounding, which removes the
  bias and leaves +-1 differences on ~6% of pixels.  uint8 INTER_CUBIC and INTER_AREA
  agree with the float formula after rounding except on ~0.005% / ~0.04% of pixels.
* **Blur** is computed in float32 (FFT or direct); OpenCV's filter2D (itself
  DFT-based for kernels this large) rounds a different float32 sum, so about 1
  pixel in 50,000 lands on the other side of a .5 tie (+-1 level).
* **Noise** values: with ``noise="host"`` the field is the very same float32
  field the CPU path draws from the record's ``noise_seed`` (then copied to the
  device); with ``noise="device"`` (default on CUDA) it is drawn on the device
  with ``torch.Generator(device).manual_seed(noise_seed)``: same distribution,
  different realisation, no host->device copy.
* **Flip** happens in the dataset before this degradation (the CPU path flips
  after); the kernel distribution is mirror-symmetric, so the LQ distribution
  is the same.

Statistically the two paths match: over 24 synthetic faces with the same
records, the mean bicubic-x4 PSNR(LQ, GT) differs by 0.003 dB (largest per-image
difference 0.03 dB) and the two LQ sets are 46.5 dB apart; the test suite
requires < 0.2 dB (``tests/test_gpu_degradations.py``).

TF32 is switched off inside a call (matmul and cuDNN), since its 10-bit mantissa
would move values by more than the rounding steps above.
"""
from __future__ import annotations

import contextlib
import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .degradations import DegradationCfg, DegradationParams, GeneratorRng, noise_field, sample_params
from .kernels import gaussian_kernel

# ----------------------------------------------------------------------------- resize matrices


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """OpenCV's 4 cubic-convolution weights for fractional offset ``t`` in [0, 1)."""
    def w(x):
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return 0.0
    return [w(t + 1), w(t), w(1 - t), w(2 - t)]


def _lanczos4_weights(t: float) -> list[float]:
    """OpenCV's 8 Lanczos-4 weights for fractional offset ``t`` (normalised to sum 1)."""
    out = []
    for k in range(8):
        x = t + 3 - k
        if abs(x) < 1e-12:
            out.append(1.0)
        else:
            px = math.pi * x
            out.append(4 * math.sin(px) * math.sin(px / 4) / (px * px))
    s = sum(out)
    return [v / s for v in out]


@lru_cache(maxsize=64)  # up to 2 MB each; rebuilding one costs about a millisecond
def _resize_matrix_np(n_in: int, n_out: int, interp: str, area_shrink: bool) -> np.ndarray:
    """(n_out, n_in) float64 matrix M with ``out = M @ in`` along one axis, following cv2.resize.

    ``area_shrink`` selects OpenCV's true area-averaging branch for INTER_AREA
    (taken only when the image shrinks along both axes); otherwise INTER_AREA
    uses OpenCV's enlargement formula.
    """
    m = np.zeros((n_out, n_in), np.float64)
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale  # source pixels per destination pixel (as OpenCV derives it)
    f32 = np.float32  # OpenCV's INTER_AREA enlargement keeps its offsets in float32 (it decides ties)
    if interp == "nearest":
        for d in range(n_out):
            m[d, min(int(math.floor(d * scale)), n_in - 1)] = 1.0
        return m
    if interp == "area" and area_shrink:
        for d in range(n_out):
            f1 = d * scale
            f2 = f1 + scale
            cell = min(scale, n_in - f1)
            s1 = min(int(math.ceil(f1)), n_in - 1)
            s2 = min(int(math.floor(f2)), n_in - 1)
            s1 = min(s1, s2)
            if s1 - f1 > 1e-3:
                m[d, s1 - 1] += (s1 - f1) / cell
            for s in range(s1, s2):
                m[d, s] += 1.0 / cell
            if f2 - s2 > 1e-3:
                m[d, s2] += min(min(f2 - s2, 1.0), cell) / cell
        return m
    for d in range(n_out):
        if interp == "area":  # OpenCV's INTER_AREA when enlarging: nearest cells, linear blend at cell edges
            sx = int(math.floor(d * scale))
            fx = f32((d + 1) - (sx + 1) * inv_scale)
            fx = 0.0 if fx <= 0 else float(fx - f32(math.floor(fx)))
            taps, ws = [sx, sx + 1], [1.0 - fx, fx]
        else:
            fx = (d + 0.5) * scale - 0.5
            sx = int(math.floor(fx))
            fx -= sx
            if interp == "bilinear":
                taps, ws = [sx, sx + 1], [1.0 - fx, fx]
            elif interp == "bicubic":
                taps, ws = [sx - 1 + k for k in range(4)], _cubic_weights(fx)
            elif interp == "lanczos":
                taps, ws = [sx - 3 + k for k in range(8)], _lanczos4_weights(fx)
            else:
                raise ValueError(f"unknown interpolation {interp!r}")
        if interp in ("bilinear", "area"):
            if sx < 0:
                taps, ws = [0, 0], [1.0, 0.0]
            elif sx >= n_in - 1:
                taps, ws = [n_in - 1, n_in - 1], [1.0, 0.0]
        for s, w in zip(taps, ws):
            m[d, min(max(s, 0), n_in - 1)] += w
    return m


def resize_matrix(n_in: int, n_out: int, interp: str, area_shrink: bool = True) -> np.ndarray:
    """Public, read-only view of the cached one-axis resize matrix (float64, rows sum to 1)."""
    m = _resize_matrix_np(int(n_in), int(n_out), str(interp), bool(area_shrink))
    m.setflags(write=False)
    return m


def resize_one(img: torch.Tensor, out_hw: tuple[int, int], interp: str) -> torch.Tensor:
    """Resize one (C, h, w) float image to ``out_hw`` with cv2.resize's float semantics, no rounding.

    Bilinear and bicubic use ``F.interpolate(..., align_corners=False, antialias=False)``,
    which is OpenCV's formula (half-pixel centres, a = -0.75, clamped taps, and -
    like OpenCV - no antialiasing when shrinking); area, Lanczos-4 and nearest use
    the explicit matrices of :func:`resize_matrix`.
    """
    c, h, w = img.shape
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if (oh, ow) == (h, w):  # cv2.resize copies a same-size image, whatever the interpolation
        return img
    if interp in ("bilinear", "bicubic"):
        return F.interpolate(img[None], size=(oh, ow), mode=interp, align_corners=False)[0]
    shrink = h >= oh and w >= ow
    if interp == "area" and shrink and h % oh == 0 and w % ow == 0:
        return F.avg_pool2d(img[None], (h // oh, w // ow))[0]  # integer-factor area = box mean
    mh = torch.from_numpy(resize_matrix(h, oh, interp, shrink).astype(np.float32)).to(img.device)
    mw = torch.from_numpy(resize_matrix(w, ow, interp, shrink).astype(np.float32)).to(img.device)
    return mh @ img @ mw.T


# ----------------------------------------------------------------------------- JPEG model

# ITU-T T.81 Annex K example tables (natural order), as used by libjpeg for quality scaling.
_STD_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99]], np.int64)
_STD_CHROMA = np.full((8, 8), 99, np.int64)
_STD_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def quant_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's baseline luma/chroma quantisation tables (int 1..255, 8x8) for ``quality`` 1..100."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    out = []
    for base in (_STD_LUMA, _STD_CHROMA):
        t = (base * scale + 50) // 100
        out.append(np.clip(t, 1, 255))
    return out[0], out[1]


@lru_cache(maxsize=None)
def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix D (``coef = D @ block @ D.T``)."""
    d = np.zeros((8, 8))
    for k in range(8):
        c = math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8)
        for n in range(8):
            d[k, n] = c * math.cos(math.pi * (2 * n + 1) * k / 16)
    return d


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H/8, W/8, 8, 8)."""
    n, h, w = x.shape
    return x.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(b: torch.Tensor) -> torch.Tensor:
    n, hb, wb, _, _ = b.shape
    return b.permute(0, 1, 3, 2, 4).reshape(n, hb * 8, wb * 8)


def _round_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _dct_quantise_roundtrip(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One (N, H, W) plane (0-255, H and W multiples of 8, per-sample 8x8 ``table``): level shift,
    DCT, quantise, dequantise, IDCT, round -> the decoded plane (integer-valued, 0..255)."""
    d = torch.from_numpy(_dct_matrix()).to(plane.device, plane.dtype)
    b = _blocks(plane - 128.0)
    coef = d @ b @ d.T
    q = table[:, None, None]  # (N, 1, 1, 8, 8)
    coef = _round_away(coef / q) * q
    rec = d.T @ coef @ d
    return torch.clamp(torch.floor(_unblocks(rec) + 128.0 + 0.5), 0, 255)


def _fancy_upsample2(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" chroma upsampling: triangle filter (3/4, 1/4), edges replicated.

    (N, h, w) integer-valued -> (N, 2h, 2w), integer arithmetic emulated exactly
    (the vertical pass keeps 4x sums; the horizontal pass rounds with the
    alternating +8/+7 bias of libjpeg).
    """
    up = torch.cat([c[:, :1], c[:, :-1]], 1)
    dn = torch.cat([c[:, 1:], c[:, -1:]], 1)
    rows = torch.stack([3 * c + up, 3 * c + dn], 2).reshape(c.shape[0], 2 * c.shape[1], c.shape[2])
    left = torch.cat([rows[:, :, :1], rows[:, :, :-1]], 2)
    right = torch.cat([rows[:, :, 1:], rows[:, :, -1:]], 2)
    even = torch.floor((3 * rows + left + 8) / 16)
    odd = torch.floor((3 * rows + right + 7) / 16)
    return torch.stack([even, odd], 3).reshape(rows.shape[0], rows.shape[1], 2 * rows.shape[2])


def jpeg_approx(x: torch.Tensor, qualities: Sequence[int], color_order: Sequence[str] | str = "mmagic") -> torch.Tensor:
    """Approximate libjpeg 4:2:0 baseline encode+decode of a batch.

    ``x``: (N, 3, H, W) RGB on the **0-255** scale, integer-valued (already
    rounded/clamped), H and W multiples of 16.  ``qualities``: one libjpeg quality
    (1..100) per sample.  ``color_order``: ``"mmagic"`` encodes the RGB array as if
    it were BGR (the reference quirk; channels reversed around the codec), ``"rgb"``
    is the colour-correct codec.  Returns (N, 3, H, W) float, integer-valued 0..255.
    """
    n, _, h, w = x.shape
    if h % 16 or w % 16:
        raise ValueError(f"jpeg_approx needs H, W multiples of 16, got {h}x{w}")
    orders = [color_order] * n if isinstance(color_order, str) else list(color_order)
    flip = torch.tensor([o == "mmagic" for o in orders], device=x.device)[:, None, None, None]
    x = torch.where(flip, x.flip(1), x)  # the codec's view of R, G, B
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = torch.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5)
    cb = torch.floor(-0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0 + 0.5 - 1e-6)
    cr = torch.floor(0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0 + 0.5 - 1e-6)
    # h2v2 downsampling: 2x2 sum with libjpeg's alternating 1/2 bias (mean 1.5), >> 2.
    cb = torch.floor((F.avg_pool2d(cb[:, None], 2)[:, 0] * 4 + 1.5) / 4)
    cr = torch.floor((F.avg_pool2d(cr[:, None], 2)[:, 0] * 4 + 1.5) / 4)
    tabs = [quant_tables(q) for q in qualities]
    lt = torch.tensor(np.stack([t[0] for t in tabs]), dtype=x.dtype, device=x.device)
    ct = torch.tensor(np.stack([t[1] for t in tabs]), dtype=x.dtype, device=x.device)
    y = _dct_quantise_roundtrip(y, lt)
    cb = _fancy_upsample2(_dct_quantise_roundtrip(cb, ct)) - 128.0
    cr = _fancy_upsample2(_dct_quantise_roundtrip(cr, ct)) - 128.0
    r2 = y + torch.floor(1.402 * cr + 0.5)
    g2 = y + torch.floor(-0.344136286 * cb - 0.714136286 * cr + 0.5)
    b2 = y + torch.floor(1.772 * cb + 0.5)
    out = torch.clamp(torch.stack([r2, g2, b2], 1), 0, 255)
    return torch.where(flip, out.flip(1), out)


# ----------------------------------------------------------------------------- rounding, blur


_LINEAR_U8_BIAS = 0.125  # levels; measured: removes the mean offset, halves the +-1 mismatches (12% -> 6%)


def _q8(x: torch.Tensor) -> torch.Tensor:
    """Round half to even and clamp to 0..255 (OpenCV's saturate_cast<uchar>), float kept."""
    return torch.clamp(torch.round(x), 0, 255)


def _blur_batch(x: torch.Tensor, records: Sequence[DegradationParams], impl: str) -> torch.Tensor:
    """Blur (N, 3, H, W) 0-255 with each sample's kernel; unblurred samples pass through."""
    out = x.clone()
    iso_idx, full_idx, kernels_1d, kernels_2d = [], [], [], []
    for i, p in enumerate(records):
        if p.blur is None:
            continue
        b = p.blur
        k2 = gaussian_kernel(b["size"], b["sigma_x"], b["sigma_y"], b["theta"], isotropic=b["kernel"] == "iso")
        if b["kernel"] == "iso" and impl == "conv":
            # The isotropic kernel is the outer product of its (normalised) central row profile.
            k1 = k2.sum(axis=0)
            iso_idx.append(i)
            kernels_1d.append(k1 / k1.sum())
        else:
            full_idx.append(i)
            kernels_2d.append(k2)
    if iso_idx:
        idx = torch.tensor(iso_idx, device=x.device)
        out[idx] = _sep_blur(x[idx], np.stack(kernels_1d))
    if full_idx:
        idx = torch.tensor(full_idx, device=x.device)
        fn = _fft_blur if impl == "fft" else _conv_blur
        out[idx] = fn(x[idx], np.stack(kernels_2d))
    return out


def _sep_blur(x: torch.Tensor, k1: np.ndarray) -> torch.Tensor:
    """Separable correlation with per-sample 1-D kernels ``k1`` (N, K); reflect-101 borders."""
    n, c, h, w = x.shape
    kk = k1.shape[1]
    r = kk // 2
    wt = torch.from_numpy(k1.astype(np.float32)).to(x.device).repeat_interleave(c, 0)  # (N*C, K)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, wt[:, None, None, :], groups=n * c)  # along width
    y = F.conv2d(y, wt[:, None, :, None], groups=n * c)  # along height
    return y.reshape(n, c, h, w)


def _conv_blur(x: torch.Tensor, k2: np.ndarray) -> torch.Tensor:
    """Grouped conv2d (correlation, as filter2D) with per-sample K x K kernels; reflect-101 borders."""
    n, c, h, w = x.shape
    r = k2.shape[1] // 2
    wt = torch.from_numpy(k2.astype(np.float32)).to(x.device).repeat_interleave(c, 0)[:, None]
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
    return F.conv2d(y, wt, groups=n * c).reshape(n, c, h, w)


def _fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c 7^d >= n (fast FFT lengths for pocketfft and cuFFT)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _fft_blur(x: torch.Tensor, k2: np.ndarray) -> torch.Tensor:
    """Same result as :func:`_conv_blur` (to float32 rounding) via a real FFT product."""
    n, c, h, w = x.shape
    kk = k2.shape[1]
    r = kk // 2
    xp = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect").reshape(n, c, h + 2 * r, w + 2 * r)
    lh, lw = _fft_size(h + 2 * r), _fft_size(w + 2 * r)
    # Correlation = convolution with the flipped kernel, centred at the origin (circularly).
    kf = np.zeros((n, lh, lw), np.float32)
    kf[:, :kk, :kk] = k2[:, ::-1, ::-1]
    kf = np.roll(kf, (-r, -r), (1, 2))
    kspec = torch.fft.rfft2(torch.from_numpy(kf).to(x.device))
    xspec = torch.fft.rfft2(xp, s=(lh, lw))
    y = torch.fft.irfft2(xspec * kspec[:, None], s=(lh, lw))
    return y[:, :, r:r + h, r:r + w]


# ----------------------------------------------------------------------------- the degrader


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


def _edge_pad(img: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """(C, h, w) -> (C, hp, wp), the last row/column replicated (libjpeg's edge-block padding)."""
    _, h, w = img.shape
    if (h, w) == (hp, wp):
        return img
    return F.pad(img[None], (0, wp - w, 0, hp - h), mode="replicate")[0]


class GpuDegrader:
    """Degrade GT batches on their own device.

    ``deg_cfg``: a :class:`DegradationCfg` (its ``rng`` field is ignored: this
    path always uses private per-sample Generators).  ``seed``: the run seed.
    ``device``: where the work happens (tensors passed in are moved there).
    ``crop_size``: LQ patch size in pixels (None = the whole LQ).  ``scale``: GT/LQ
    size ratio used for the aligned GT crop.  ``noise``: ``"host"`` (bit-identical
    noise field to the CPU path, drawn with numpy and copied) or ``"device"``
    (drawn on the device with torch); default: host on CPU, device elsewhere.
    ``blur_impl``: ``"fft"`` (default: one real-FFT product per plane, any kernel;
    the fastest on CPU and GPU for 41x41 kernels) or ``"conv"`` (two 1-D passes for
    isotropic kernels, a grouped 41x41 ``conv2d`` for anisotropic ones).
    """

    def __init__(self, deg_cfg: DegradationCfg, seed: int, device: torch.device | str = "cpu",
                 crop_size: int | None = None, scale: int = 4, noise: str | None = None, blur_impl: str | None = None):
        self.cfg, self.seed = deg_cfg, int(seed)
        self.device = torch.device(device)
        self.crop_size, self.scale = crop_size, int(scale)
        self.noise = noise or ("host" if self.device.type == "cpu" else "device")
        self.blur_impl = blur_impl or "fft"
        if self.noise not in ("host", "device"):
            raise ValueError(f"noise must be 'host' or 'device', got {self.noise!r}")
        if self.blur_impl not in ("conv", "fft"):
            raise ValueError(f"blur_impl must be 'conv' or 'fft', got {self.blur_impl!r}")

    # -- sampling ---------------------------------------------------------------------------------------
    def sample_rng(self, sample_no: int) -> GeneratorRng:
        """The private RNG of training sample ``sample_no`` (degradation draws, then the crop)."""
        return GeneratorRng(np.random.SeedSequence([self.seed, 3, int(sample_no)]))

    def sample(self, sample_no: int, in_size: tuple[int, int]) -> tuple[DegradationParams, tuple[int, int] | None]:
        """Parameters of sample ``sample_no`` and its LQ crop origin ``(top, left)`` (None without crop)."""
        rng = self.sample_rng(sample_no)
        p = sample_params(self.cfg, in_size, rng, seed=[self.seed, 3, int(sample_no)])
        crop = None
        if self.crop_size:
            lh, lw = self._out_size(p)
            c = self.crop_size
            if c > min(lh, lw):
                raise ValueError(f"crop_size {c} is larger than the LQ ({lh}x{lw})")
            crop = (int(rng.uniform(0, 1) * (lh - c + 1)), int(rng.uniform(0, 1) * (lw - c + 1)))
        return p, crop

    @staticmethod
    def _out_size(p: DegradationParams) -> tuple[int, int]:
        size = tuple(p.in_size)
        for step in (p.down, p.up, p.final):
            if step is not None:
                size = tuple(step["size"])
        return int(size[0]), int(size[1])

    # -- applying ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, gt255: torch.Tensor, records: Sequence[DegradationParams]) -> torch.Tensor:
        """Degrade (N, 3, H, W) GT on the **0-255** scale with one record each; returns LQ 0-255
        (N, 3, h, w), float32, integer-valued (rounded/clamped where the uint8 CPU path is uint8)."""
        x = _q8(gt255.to(self.device, torch.float32))
        n = x.shape[0]
        if len(records) != n:
            raise ValueError(f"{len(records)} records for a batch of {n}")
        if any(tuple(p.in_size) != tuple(x.shape[2:]) for p in records):
            raise ValueError(f"records sampled for sizes {sorted({tuple(p.in_size) for p in records})}, "
                             f"batch is {tuple(x.shape[2:])}")
        with _no_tf32():
            # 1. blur: the whole batch at once (all samples share the HQ size)
            if any(p.blur is not None for p in records):
                x = _q8(_blur_batch(x, records, self.blur_impl))
            # 2. down-resize: sizes differ per sample, so from here to the up-resize each sample
            #    is its own (3, h, w) tensor; only the JPEG step re-batches (edge-padded).
            imgs = [self._resize(x[i], p.down) for i, p in enumerate(records)]
            # 3. noise (0-255 units, unclipped, unrounded)
            imgs = [im + self._noise(p, im.shape) if p.noise is not None else im for im, p in zip(imgs, records)]
            # 4. JPEG: rounds/clamps its input (as cv2.imencode does), one batched codec call
            imgs = [_q8(im) for im in imgs]
            jpeg_idx = [i for i, p in enumerate(records) if p.jpeg is not None]
            if jpeg_idx:
                hp = -(-max(imgs[i].shape[1] for i in jpeg_idx) // 16) * 16
                wp = -(-max(imgs[i].shape[2] for i in jpeg_idx) // 16) * 16
                batch = torch.stack([_edge_pad(imgs[i], hp, wp) for i in jpeg_idx])
                dec = jpeg_approx(batch, [records[i].jpeg["quality"] for i in jpeg_idx],
                                  [records[i].jpeg.get("color_order", "mmagic") for i in jpeg_idx])
                for j, i in enumerate(jpeg_idx):
                    imgs[i] = dec[j, :, :imgs[i].shape[1], :imgs[i].shape[2]]
            # 5. up-resize to the HQ size, 6. final area-resize to the LQ size
            imgs = [self._resize(im, p.up) for im, p in zip(imgs, records)]
            if len({tuple(im.shape) for im in imgs}) == 1:
                x = torch.stack(imgs)
                if all(p.final is not None and p.final == records[0].final for p in records):
                    # same final step for all (the course config: area 512 -> 128): batched
                    return self._resize_batch(x, records[0].final)
                imgs = list(x)
            imgs = [self._resize(im, p.final) for im, p in zip(imgs, records)]
        if len({tuple(im.shape) for im in imgs}) != 1:
            raise ValueError(f"samples ended at different sizes {sorted({tuple(im.shape[1:]) for im in imgs})}; "
                             "check the resize steps of the degradation config")
        return torch.stack(imgs)

    @staticmethod
    def _resize(img: torch.Tensor, step: dict | None) -> torch.Tensor:
        """One resize step on a (3, h, w) 0-255 image, rounded like cv2's uint8 output."""
        if step is None:
            return img
        y = resize_one(img, tuple(step["size"]), step["interp"])
        if step["interp"] == "bilinear":
            y = y - _LINEAR_U8_BIAS
        return _q8(y)

    @staticmethod
    def _resize_batch(x: torch.Tensor, step: dict) -> torch.Tensor:
        """The same resize step for a whole (N, 3, h, w) batch."""
        oh, ow = step["size"]
        n, c, h, w = x.shape
        y = resize_one(x.reshape(n * c, h, w), (oh, ow), step["interp"]).reshape(n, c, oh, ow)
        if step["interp"] == "bilinear":
            y = y - _LINEAR_U8_BIAS
        return _q8(y)

    def _noise(self, p: DegradationParams, shape) -> torch.Tensor:
        """Gaussian noise of record ``p`` for a (3, h, w) image, 0-255 units."""
        c, h, w = shape
        if self.noise == "host":
            f = torch.from_numpy(noise_field(p, (h, w, 3))).permute(2, 0, 1).to(self.device)
        else:
            g = torch.Generator(device=self.device)
            g.manual_seed(int(p.noise["noise_seed"]))
            f = torch.randn((3, h, w), generator=g, device=self.device)
        f = f * float(p.noise["sigma"])
        if p.noise["gray"]:
            f = f[:1].expand(c, h, w)
        return f

    def __call__(self, gt_batch: torch.Tensor, first_sample_no: int, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Degrade a GT batch: float **0-1** (N, 3, H, W) -> ``(lq, gt)``, both float32 0-1 on ``device``.

        Sample ``i`` of the batch is training sample ``first_sample_no + i * stride``
        (``stride`` = world size under DDP, where rank r's batch holds samples
        r, r+W, ...).  ``lq`` is (N, 3, H/4, W/4) for the course config, or the
        ``crop_size`` patch; ``gt`` is the input, cropped to the matching
        ``crop_size * scale`` patch when cropping.  LQ values are multiples of 1/255.
        """
        if gt_batch.ndim != 4 or gt_batch.shape[1] != 3:
            raise ValueError(f"GT batch must be (N, 3, H, W), got {tuple(gt_batch.shape)}")
        gt = gt_batch.to(self.device, torch.float32)
        n, _, h, w = gt.shape
        pairs = [self.sample(first_sample_no + i * stride, (h, w)) for i in range(n)]
        lq = self.apply(gt * 255.0, [p for p, _ in pairs]).div_(255.0)
        if self.crop_size:
            c, s = self.crop_size, self.scale
            lq = torch.stack([lq[i, :, t:t + c, l:l + c] for i, (_, (t, l)) in enumerate(pairs)])
            gt = torch.stack([gt[i, :, t * s:(t + c) * s, l * s:(l + c) * s] for i, (_, (t, l)) in enumerate(pairs)])
        return lq.contiguous(), gt.contiguous()
