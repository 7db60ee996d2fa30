"""The steps of the batched degradation, each a fixed number of torch ops for a whole batch.

Images are float tensors ``(N, C, H, W)`` on the **0-255** scale, on any device.
Per-sample values (kernel sigmas, sizes, interpolation codes, qualities) come as
host numpy arrays of length N (:class:`facesr.data.batched_params.ParamBatch`); the
small per-sample tables built from them (kernels, sampling coordinates, gather
indices) are made on the host with a fixed number of numpy calls and copied once.

Samples of different sizes share one "canvas": sample ``i``'s image is the
top-left ``h_i x w_i`` of a tensor as large as the batch's largest; the rest
repeats the last row and column (as libjpeg pads edge blocks), so a whole batch
goes through each step at once.

How the steps follow OpenCV (the exact path) is described where each is defined;
the module docstring of :mod:`facesr.data.batched_degradations` sums up the
differences, and docs/performance.md gives the measured agreement.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from .batched_params import INTERPS

LINEAR, AREA, CUBIC, LANCZOS, NEAREST = (
    INTERPS.index(k) for k in ("bilinear", "area", "bicubic", "lanczos", "nearest")
)
#: OpenCV's uint8 INTER_LINEAR (11-bit fixed point, truncating) comes out 1/8 level low on average.
LINEAR_U8_BIAS = 0.125


def q8(x: torch.Tensor) -> torch.Tensor:
    """Round half to even and clamp to 0..255 (OpenCV's ``saturate_cast<uchar>``); float kept."""
    return torch.clamp(torch.round(x), 0, 255)


def _dev(a, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host array (numpy or tensor) as a tensor on ``device`` (one copy)."""
    t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
    return t.to(device=device, dtype=dtype or t.dtype, non_blocking=True)


_CONSTS: dict[tuple, torch.Tensor] = {}


def _const(name: str, make, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A constant table (``make()``, a host array) on ``device``, copied there once per device and dtype."""
    key = (name, str(device), dtype)
    if key not in _CONSTS:
        _CONSTS[key] = _dev(make(), device, dtype)
    return _CONSTS[key]


# ----------------------------------------------------------------------------- blur


def gaussian_kernels(
    iso: np.ndarray, ksize: np.ndarray, sigma_x: np.ndarray, sigma_y: np.ndarray, theta: np.ndarray, on: np.ndarray
) -> np.ndarray:
    """(N, K, K) float64 normalised kernels, K = the largest ``ksize``; as :func:`facesr.data.kernels.gaussian_kernel`
    (covariance rounded to float32, density in float64, normalised twice).  Smaller kernels sit in the
    middle, zero around; samples with ``on`` false get the identity (a centred 1)."""
    r = int(np.max(ksize)) // 2
    ax = np.arange(-r, r + 1, dtype=np.float64)
    yy, xx = ax[None, :, None], ax[None, None, :]
    c = np.where(iso, 1.0, np.cos(theta)).astype(np.float32)
    s = np.where(iso, 0.0, np.sin(theta)).astype(np.float32)
    vx = (sigma_x**2).astype(np.float32)
    vy = np.where(iso, sigma_x**2, sigma_y**2).astype(np.float32)
    # Sigma = R diag(vx, vy) R^T in float32, as kernels.sigma_matrix
    a, b, d = (
        v.astype(np.float64) for v in (c * c * vx + s * s * vy, c * s * vx - s * c * vy, s * s * vx + c * c * vy)
    )
    det = a * d - b * b  # Sigma^-1, rounded to float32 as np.linalg.inv of a float32 matrix returns it
    ia, ib, id_ = ((v / det).astype(np.float32).astype(np.float64)[:, None, None] for v in (d, -b, a))
    q = ia * xx * xx + 2 * ib * xx * yy + id_ * yy * yy  # [x y] Sigma^-1 [x y]^T
    half = (np.asarray(ksize) // 2).astype(np.float64)[:, None, None]
    kern = np.exp(-0.5 * q) * ((np.abs(xx) <= half) & (np.abs(yy) <= half))
    kern /= kern.sum((1, 2), keepdims=True)
    kern /= kern.sum((1, 2), keepdims=True)
    delta = ((xx == 0) & (yy == 0)).astype(np.float64)
    return np.where(np.asarray(on)[:, None, None], kern, delta)


def _fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c 7^d >= n (fast FFT lengths for pocketfft, MKL and cuFFT)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def blur(x: torch.Tensor, kernels: np.ndarray) -> torch.Tensor:
    """Correlate each sample with its own (K, K) kernel (anchor at the centre, reflect-101 borders, as
    ``cv2.filter2D``), all at once as one real-FFT product in float32.  ``kernels``: (N, K, K) host array."""
    h, w = x.shape[2:]
    k = kernels.shape[-1]
    r = k // 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")  # torch's reflect = OpenCV's BORDER_REFLECT_101
    lh, lw = _fft_size(h + 2 * r), _fft_size(w + 2 * r)
    # correlation = convolution with the flipped kernel, centred at the origin (circularly)
    kf = F.pad(_dev(kernels[:, ::-1, ::-1].astype(np.float32), x.device), (0, lw - k, 0, lh - k))
    kspec = torch.fft.rfft2(torch.roll(kf, (-r, -r), (1, 2)))
    y = torch.fft.irfft2(torch.fft.rfft2(xp, s=(lh, lw)) * kspec[:, None], s=(lh, lw))
    return y[:, :, r : r + h, r : r + w]


# ----------------------------------------------------------------------------- resize: source coordinates


def _axis_coords(n_in: np.ndarray, n_out: np.ndarray, interp: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Per-sample source coordinates (float64, host) along one axis for ``length`` output pixels.

    Output pixels past a sample's ``n_out`` repeat its last one.  Returns ``"point"``: the
    coordinate to interpolate at (bilinear/area-enlarge/nearest: clamped into the image;
    bicubic/Lanczos: the unclamped centre), ``"f1"``/``"f2"``: the area-shrink cell
    ``[d * scale, min((d + 1) * scale, n_in)]``.
    """
    ni, no = n_in.astype(np.float64)[:, None], n_out.astype(np.float64)[:, None]
    d = np.minimum(np.arange(length, dtype=np.float64)[None, :], no - 1)
    inv = no / ni
    scale = 1.0 / inv  # as OpenCV: scale = 1 / inv_scale
    centre = (d + 0.5) * scale - 0.5
    sx = np.floor(d * scale)
    fx = ((d + 1) - (sx + 1) * inv).astype(np.float32)  # OpenCV keeps INTER_AREA's enlargement offsets in float32
    fx = np.where(fx <= 0, np.float32(0), fx - np.floor(fx)).astype(np.float64)
    it = interp[:, None]
    linear_pt = np.where(it == AREA, sx + fx, np.where(it == NEAREST, sx, centre))
    point = np.where((it == CUBIC) | (it == LANCZOS), centre, np.minimum(np.maximum(linear_pt, 0.0), ni - 1))
    return {"point": point, "f1": d * scale, "f2": np.minimum(d * scale + scale, ni)}


def _families(
    interp: np.ndarray, in_h: np.ndarray, in_w: np.ndarray, out_h: np.ndarray, out_w: np.ndarray
) -> np.ndarray:
    """Which kernel computes each sample: 0 linear (bilinear, area enlarging, nearest, same-size copy),
    1 bicubic, 2 area shrinking (both axes), 3 Lanczos-4."""
    same = (in_h == out_h) & (in_w == out_w)
    shrink = (out_h <= in_h) & (out_w <= in_w)
    fam = np.select([same, interp == CUBIC, (interp == AREA) & shrink, interp == LANCZOS], [0, 1, 2, 3], 0)
    return fam.astype(np.int64)


def _normalised(p: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """Pixel coordinate -> grid_sample's [-1, 1] coordinate for an input ``size`` pixels long."""
    return 2.0 * p / (size - 1) - 1.0 if align_corners else (2.0 * p + 1.0) / size - 1.0


def _grid(py: np.ndarray, px: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(N, Ho, Wo, 2) sampling grid from per-sample row and column coordinates (already normalised)."""
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    gy, gx = _dev(py.astype(np_dtype), device), _dev(px.astype(np_dtype), device)
    n, ho, wo = gy.shape[0], gy.shape[1], gx.shape[1]
    return torch.stack([gx[:, None, :].expand(n, ho, wo), gy[:, :, None].expand(n, ho, wo)], -1)


# ----------------------------------------------------------------------------- resize: the kernels


def _resize_sampled(x: torch.Tensor, cy: dict, cx: dict, mode: str) -> torch.Tensor:
    """Bilinear or bicubic ``grid_sample`` at the per-sample points (border = per-tap clamping, as OpenCV)."""
    hs, ws = x.shape[2], x.shape[3]
    grid = _grid(_normalised(cy["point"], hs, False), _normalised(cx["point"], ws, False), x.device, x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def _resize_area_shrink(x: torch.Tensor, cy: dict, cx: dict) -> torch.Tensor:
    """OpenCV INTER_AREA when shrinking: the mean over each output pixel's cell of the input.

    Computed exactly from the float64 summed-area table, whose bilinear interpolation is the
    integral of the piecewise-constant image; only the samples' own pixels are read.
    """
    n, c, hs, ws = x.shape
    sat = F.pad(x.double(), (1, 0, 1, 0)).cumsum(2).cumsum(3)  # (N, C, hs + 1, ws + 1)
    ry = np.stack([cy["f1"], cy["f2"]], -1).reshape(n, -1)  # (N, 2 Ho): f1, f2 of each output row
    rx = np.stack([cx["f1"], cx["f2"]], -1).reshape(n, -1)
    grid = _grid(_normalised(ry, hs + 1, True), _normalised(rx, ws + 1, True), x.device, torch.float64)
    corners = F.grid_sample(sat, grid, mode="bilinear", padding_mode="border", align_corners=True)
    ho, wo = ry.shape[1] // 2, rx.shape[1] // 2
    i = corners.view(n, c, ho, 2, wo, 2)
    box = i[:, :, :, 1, :, 1] - i[:, :, :, 0, :, 1] - i[:, :, :, 1, :, 0] + i[:, :, :, 0, :, 0]
    inv_cell = 1.0 / ((cy["f2"] - cy["f1"])[:, :, None] * (cx["f2"] - cx["f1"])[:, None, :])
    return (box * _dev(inv_cell[:, None], x.device)).to(x.dtype)


def _lanczos_taps(cy: dict, n_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's 8 Lanczos-4 taps per output pixel: (N, L, 8) clamped indices and normalised weights."""
    p = cy["point"]
    sx = np.floor(p)
    t = (p - sx)[..., None] + 3 - np.arange(8, dtype=np.float64)
    px = np.pi * t
    small = np.abs(t) < 1e-12
    safe = np.where(small, 1.0, px)
    w = np.where(small, 1.0, 4 * np.sin(safe) * np.sin(safe / 4) / (safe * safe))
    w /= w.sum(-1, keepdims=True)
    idx = np.clip(sx[..., None] - 3 + np.arange(8), 0, (n_in.astype(np.float64) - 1)[:, None, None])
    return idx.astype(np.int64), w


def _taps_axis(x: torch.Tensor, idx: np.ndarray, w: np.ndarray, dim: int) -> torch.Tensor:
    """Weighted sum of gathered taps along ``dim`` (2 rows, 3 columns); idx/w (N, L, T) host arrays."""
    n, c = x.shape[:2]
    other = x.shape[5 - dim]
    ti, tw = _dev(idx, x.device), _dev(w, x.device, x.dtype)
    shape = (n, 1, -1, 1) if dim == 2 else (n, 1, 1, -1)
    full = (n, c, idx.shape[1], other) if dim == 2 else (n, c, other, idx.shape[1])
    out = x.gather(dim, ti[:, :, 0].reshape(shape).expand(full)) * tw[:, :, 0].reshape(shape)
    for k in range(1, idx.shape[-1]):  # a fixed number of taps (8), whatever the batch size
        out = out + x.gather(dim, ti[:, :, k].reshape(shape).expand(full)) * tw[:, :, k].reshape(shape)
    return out


def _resize_lanczos(x: torch.Tensor, cy: dict, cx: dict, in_h: np.ndarray, in_w: np.ndarray) -> torch.Tensor:
    """OpenCV INTER_LANCZOS4: separable 8-tap passes, taps clamped to each sample's own image."""
    iy, wy = _lanczos_taps(cy, in_h)
    ix, wx = _lanczos_taps(cx, in_w)
    return _taps_axis(_taps_axis(x, iy, wy, 2), ix, wx, 3)


def replicate_edges(x: torch.Tensor, h: np.ndarray, w: np.ndarray) -> torch.Tensor:
    """Canvas rows/columns past each sample's (h, w) set to its last row/column (two gathers)."""
    n, c, hh, ww = x.shape
    rows = _dev(np.minimum(np.arange(hh)[None, :], np.asarray(h)[:, None] - 1), x.device)
    cols = _dev(np.minimum(np.arange(ww)[None, :], np.asarray(w)[:, None] - 1), x.device)
    x = x.gather(2, rows.view(n, 1, hh, 1).expand(n, c, hh, ww))
    return x.gather(3, cols.view(n, 1, 1, ww).expand(n, c, hh, ww))


def _avg_pool_factors(shape: tuple[int, int], in_h, in_w, out_h, out_w, canvas) -> tuple[int, int] | None:
    """Integer factors when every sample shrinks its whole (unpadded) canvas to the whole output canvas by the
    same integer factors (INTER_AREA's box mean = ``avg_pool2d``), else None."""
    hs, ws = shape
    same = np.all(in_h == hs) and np.all(in_w == ws) and np.all(out_h == canvas[0]) and np.all(out_w == canvas[1])
    if not same or hs % canvas[0] or ws % canvas[1]:
        return None
    return hs // canvas[0], ws // canvas[1]


def _resize_family(f: int, x: torch.Tensor, cy: dict, cx: dict, in_h, in_w, out_h, out_w, canvas) -> torch.Tensor:
    """Family ``f`` of :func:`_families` for the samples of ``x`` (their coordinates ``cy``/``cx``)."""
    if f == 0:
        return _resize_sampled(x, cy, cx, "bilinear")
    if f == 1:  # bicubic taps reach 2 pixels past the image: make the canvas repeat each sample's edge
        if np.any(in_h < x.shape[2]) or np.any(in_w < x.shape[3]):
            x = replicate_edges(x, in_h, in_w)
        return _resize_sampled(x, cy, cx, "bicubic")
    if f == 2:
        pool = _avg_pool_factors((x.shape[2], x.shape[3]), in_h, in_w, out_h, out_w, canvas)
        return F.avg_pool2d(x, pool) if pool else _resize_area_shrink(x, cy, cx)
    return _resize_lanczos(x, cy, cx, in_h, in_w)


def resize(
    x: torch.Tensor,
    in_h: np.ndarray,
    in_w: np.ndarray,
    out_h: np.ndarray,
    out_w: np.ndarray,
    interp: np.ndarray,
    canvas: tuple[int, int],
) -> torch.Tensor:
    """Resize each sample with ``cv2.resize``'s float formulas; no rounding.

    ``x``: (N, C, Hs, Ws) canvas, sample i's image its top-left ``in_h[i] x in_w[i]`` (the rest
    repeating its last row/column where it matters).  Per-sample output sizes and interpolation
    codes (host arrays); returns the (N, C, canvas) output canvas, rows/columns past each output
    size repeating the last one.  Samples are grouped by kernel family (one ``grid_sample`` per
    family present), so the op count does not depend on N.
    """
    fam = _families(interp, in_h, in_w, out_h, out_w)
    cy = _axis_coords(in_h, out_h, interp, canvas[0])
    cx = _axis_coords(in_w, out_w, interp, canvas[1])
    present = np.unique(fam)
    if len(present) == 1:
        return _resize_family(int(present[0]), x, cy, cx, in_h, in_w, out_h, out_w, canvas)
    out = x.new_empty((x.shape[0], x.shape[1], canvas[0], canvas[1]))
    for f in present.tolist():  # at most 4 families, whatever the batch size
        idx = np.flatnonzero(fam == f)
        dev_idx = _dev(idx, x.device)
        sub = {k: v[idx] for k, v in cy.items()}, {k: v[idx] for k, v in cx.items()}
        y = _resize_family(f, x.index_select(0, dev_idx), *sub, in_h[idx], in_w[idx], out_h[idx], out_w[idx], canvas)
        out.index_copy_(0, dev_idx, y)
    return out


def resize_u8(x: torch.Tensor, in_h, in_w, out_h, out_w, interp: np.ndarray, canvas: tuple[int, int]) -> torch.Tensor:
    """:func:`resize`, then rounded as ``cv2.resize`` rounds uint8 output (bilinear 1/8 level lower first)."""
    y = resize(x, in_h, in_w, out_h, out_w, interp, canvas)
    resized = (interp == LINEAR) & ~((in_h == out_h) & (in_w == out_w))
    if np.all(resized):
        y = y - LINEAR_U8_BIAS
    elif np.any(resized):
        y = y - _dev(resized.astype(np.float32) * LINEAR_U8_BIAS, y.device).view(-1, 1, 1, 1)
    return q8(y)


# ----------------------------------------------------------------------------- noise


class NoiseBank:
    """Gaussian noise for a batch from a fixed table of N(0, 1) values, one cheap gather per pixel.

    The table holds ``2**bits`` float32 standard-normal values drawn once from the run seed
    (``torch.Generator``, on the CPU, so every device gets the same table).  Sample i reads
    entry ``(a_i * n + b_i) mod 2**bits`` for its pixel number ``n`` (channel-major over its own
    ``h x w`` image), with an odd ``a_i`` and a ``b_i`` hashed from its 63-bit noise key: a
    bijection, so one sample's values are distinct draws of the table, and the field depends
    only on (seed, key) and the sample's own size, never on the batch or the canvas.
    """

    def __init__(self, seed: int, bits: int = 22):
        if not 10 <= bits <= 28:
            raise ValueError(f"noise table bits must be in 10..28, got {bits}")
        self.bits, self.seed = int(bits), int(seed)
        g = torch.Generator().manual_seed(int(seed) & ((1 << 63) - 1))
        self.table_cpu = torch.randn(1 << self.bits, generator=g, dtype=torch.float32)
        self._tables: dict[str, torch.Tensor] = {}

    def table(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._tables:
            self._tables[key] = self.table_cpu.to(device)
        return self._tables[key]

    def offsets(
        self, keys: np.ndarray, gray: np.ndarray, h: np.ndarray, w: np.ndarray, channels: int, canvas: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Host index terms (channel (N, C), row (N, Hc), column (N, Wc)), each < 2**bits; a pixel's table
        entry is their sum modulo 2**bits.  Canvas pixels past (h, w) take the edge pixel's entry."""
        from .batched_params import key64

        m = (1 << self.bits) - 1
        a = (key64(keys, 1).astype(np.int64) & m) | 1
        b = key64(keys, 2).astype(np.int64) & m
        rows = np.minimum(np.arange(canvas[0])[None, :], h[:, None] - 1)
        cols = np.minimum(np.arange(canvas[1])[None, :], w[:, None] - 1)
        ch = np.arange(channels)[None, :] * (~np.asarray(gray, dtype=bool))[:, None]
        a = a[:, None]
        return (
            (a * ((ch * (h * w)[:, None]) & m)) & m,
            (a * ((rows * w[:, None]) & m)) & m,
            (a * cols + b[:, None]) & m,
        )

    def field(
        self,
        keys: np.ndarray,
        gray: np.ndarray,
        h: np.ndarray,
        w: np.ndarray,
        channels: int,
        canvas: tuple[int, int],
        device: torch.device,
    ) -> torch.Tensor:
        """(N, C, Hc, Wc) standard-normal field (see :meth:`offsets`); gray samples share one map."""
        t_c, t_r, t_x = self.offsets(keys, gray, h, w, channels, canvas)
        n = len(keys)
        idx = _dev(t_c.astype(np.int32), device).view(n, channels, 1, 1) + _dev(t_r.astype(np.int32), device).view(
            n, 1, canvas[0], 1
        )
        idx = (idx + _dev(t_x.astype(np.int32), device).view(n, 1, 1, canvas[1])).bitwise_and_((1 << self.bits) - 1)
        return self.table(device).index_select(0, idx.flatten()).view(n, channels, canvas[0], canvas[1])


def record_noise(records, h: np.ndarray, w: np.ndarray, canvas: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The exact path's own numpy noise fields of ``records`` on a canvas (edge-repeated), (N, 3, Hc, Wc).
    Per-record host work: for agreement checks and offline degradation, not the training hot path."""
    from .degradations import noise_field

    hh, ww = canvas
    out = np.zeros((len(records), 3, hh, ww), np.float32)
    for i, p in enumerate(records):
        if p.noise is None:
            continue
        hi, wi = int(h[i]), int(w[i])
        f = noise_field(p, (hi, wi, 3))
        f = np.broadcast_to(f[:, :, :1], f.shape) if p.noise["gray"] else f
        out[i] = np.pad(f, ((0, hh - hi), (0, ww - wi), (0, 0)), mode="edge").transpose(2, 0, 1)
    return torch.from_numpy(out).to(device)


# ----------------------------------------------------------------------------- JPEG model

# ITU-T T.81 Annex K example tables (natural order), as used by libjpeg for quality scaling.
_STD_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.int64,
)
_STD_CHROMA = np.full((8, 8), 99, np.int64)
_STD_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def quant_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's baseline luma/chroma quantisation tables (int 1..255, 8x8) for ``quality`` 1..100."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return tuple(np.clip((base * scale + 50) // 100, 1, 255) for base in (_STD_LUMA, _STD_CHROMA))  # type: ignore[return-value]


@cache
def _all_quant_tables() -> np.ndarray:
    """(101, 2, 8, 8) float32: luma and chroma tables for qualities 0..100 (0 behaves as 1)."""
    return np.stack([np.stack(quant_tables(q)) for q in range(101)]).astype(np.float32)


@cache
def _dct_basis() -> np.ndarray:
    """(64, 1, 8, 8) float32 basis of the orthonormal 8x8 DCT-II: filter ``8k + l`` is ``D[k, y] * D[l, x]``,
    so a stride-8 ``conv2d`` gives each block's ``D b D^T`` and ``conv_transpose2d`` inverts it."""
    k, n = np.arange(8)[:, None], np.arange(8)[None, :]
    d = np.sqrt(np.where(k == 0, 1 / 8, 2 / 8)) * np.cos(np.pi * (2 * n + 1) * k / 16)
    return np.einsum("ky,lx->klyx", d, d).reshape(64, 1, 8, 8).astype(np.float32)


@cache
def _fancy_filters() -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's h2v2 "fancy" upsampling as 4 phase filters (3x3) and biases: output pixel (2i+a, 2j+b) is
    ``(wv_a (x) wh_b) * c + bias_b >> 4`` with wv/wh = [1, 3, 0] (towards the previous row/column) or
    [0, 3, 1] (the next), bias 8 (even column) or 7 (odd); phase 2a+b is pixel_shuffle's channel."""
    taps = (np.array([1.0, 3.0, 0.0]), np.array([0.0, 3.0, 1.0]))
    w = np.stack([np.outer(taps[a], taps[b]) for a in (0, 1) for b in (0, 1)])[:, None]
    return w.astype(np.float32), np.array([8.0, 7.0, 8.0, 7.0], np.float32)


def _round_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _dct_quantise_roundtrip(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(M, 1, H, W) planes (0-255, H and W multiples of 8; per-plane (M, 8, 8) ``table``): level shift, DCT,
    quantise (round half away from zero, as libjpeg), dequantise, IDCT, round -> decoded, integer-valued 0..255."""
    basis = _const("dct", _dct_basis, plane.device, plane.dtype)
    coef = F.conv2d(plane - 128.0, basis, stride=8)  # (M, 64, H/8, W/8)
    q = table.reshape(-1, 64, 1, 1)
    coef = _round_away(coef / q) * q
    rec = F.conv_transpose2d(coef, basis, stride=8)
    return torch.clamp(torch.floor(rec + 128.5), 0, 255)


def _fancy_upsample2(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" chroma upsampling (triangle filter 3/4, 1/4, edges replicated, its integer
    rounding emulated exactly): (M, 1, h, w) integer-valued -> (M, 1, 2h, 2w)."""
    w = _const("fancy_w", lambda: _fancy_filters()[0], c.device, c.dtype)
    bias = _const("fancy_b", lambda: _fancy_filters()[1], c.device, c.dtype)
    y = F.conv2d(F.pad(c, (1, 1, 1, 1), mode="replicate"), w, bias)
    return F.pixel_shuffle(torch.floor(y / 16), 2)


_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]])
_TO_YCC_BIAS = np.array([0.5, 128.5 - 1e-6, 128.5 - 1e-6], np.float32)
_FROM_CC = np.array([[0.0, 1.402], [-0.344136286, -0.714136286], [1.772, 0.0]])


def _colour_matrices(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (N, 3, 3) RGB -> YCbCr and (N, 3, 2) CbCr -> RGB-offset matrices (float32), with MMagic's
    channel reversal (encode the RGB array as if BGR, decode in the same order) folded in where ``rgb`` is false."""
    rev = np.eye(3)[::-1]
    flip = ~np.asarray(rgb, dtype=bool)[:, None, None]
    to = np.where(flip, (_TO_YCC @ rev)[None], _TO_YCC[None])
    back = np.where(flip, (rev @ _FROM_CC)[None], _FROM_CC[None])
    return to.astype(np.float32), back.astype(np.float32)


def jpeg_approx(
    x: torch.Tensor, quality, rgb=False, sizes: tuple[np.ndarray, np.ndarray] | None = None
) -> torch.Tensor:
    """Approximate libjpeg 4:2:0 baseline encode+decode of a batch.

    ``x``: (N, 3, H, W) RGB on the **0-255** scale, integer-valued (already rounded and
    clamped), H and W multiples of 16.  ``quality``: per-sample libjpeg quality 1..100
    (tensor or sequence).  ``rgb``: per-sample bool (or one bool, or the strings "rgb"/"mmagic"):
    false encodes the RGB array as if it were BGR (MMagic's quirk: channels reversed around
    the codec).  ``sizes``: per-sample image (heights, widths) within the canvas (CPU int64), when
    smaller than ``x``: the decoded chroma then repeats its edge past each image, as libjpeg's
    upsampler does, so a sample's result does not depend on the canvas around it.
    Returns (N, 3, H, W) float, integer-valued 0..255.
    """
    n, _, h, w = x.shape
    if h % 16 or w % 16:
        raise ValueError(f"jpeg_approx needs H, W multiples of 16, got {h}x{w}")
    if isinstance(rgb, (str, bool)) or (isinstance(rgb, (list, tuple)) and rgb and isinstance(rgb[0], str)):
        vals = [rgb] * n if isinstance(rgb, (str, bool)) else list(rgb)
        rgb = [v is True or v == "rgb" for v in vals]
    to, back = (_dev(m, x.device, x.dtype) for m in _colour_matrices(np.asarray(rgb, dtype=bool).reshape(n)))
    ycc = torch.baddbmm(
        _const("ycc_bias", lambda: _TO_YCC_BIAS, x.device, x.dtype).view(1, 3, 1), to, x.reshape(n, 3, h * w)
    )
    ycc = torch.floor(ycc).view(n, 3, h, w)
    # h2v2 downsampling: 2x2 sum with libjpeg's alternating 1/2 bias (mean 1.5), >> 2.
    cc = torch.floor((F.avg_pool2d(ycc[:, 1:], 2) * 4 + 1.5) / 4)
    tabs = _dev(_all_quant_tables()[np.clip(np.asarray(quality, dtype=np.int64).reshape(n), 1, 100)], x.device, x.dtype)
    y = _dct_quantise_roundtrip(ycc[:, :1], tabs[:, 0])
    cc = _dct_quantise_roundtrip(cc.reshape(2 * n, 1, h // 2, w // 2), tabs[:, 1].repeat_interleave(2, 0))
    if sizes is not None:
        ch, cw = ((np.asarray(v) + 1) // 2 for v in sizes)
        if np.any(ch < h // 2) or np.any(cw < w // 2):
            cc = replicate_edges(cc.view(n, 2, h // 2, w // 2), ch, cw).view(2 * n, 1, h // 2, w // 2)
    cc = _fancy_upsample2(cc).view(n, 2, h * w) - 128.0
    terms = torch.floor(torch.bmm(back, cc).add_(0.5))
    return torch.clamp(y.view(n, 1, h * w) + terms, 0, 255).view(n, 3, h, w)
