"""The course degradation pipeline (MMagic 1.x semantics), sampling separate from applying.

Image conventions: the HQ input is **uint8 HxWx3 RGB, 0-255**; the LQ output is
uint8 RGB 0-255.  Between the steps the image stays uint8 except after the
noise step, where it is float32 on the 0-255 scale, unclipped and unrounded,
exactly as in MMagic; the JPEG step rounds (half to even) and saturates it to
uint8, which is what OpenCV's ``imencode`` does implicitly.

Pipeline (MMagic transform names in brackets):

1. blur [RandomBlur]: iso/aniso Gaussian, ``cv2.filter2D`` on uint8, BORDER_REFLECT_101;
2. down [RandomResize]: scale ``U[lo, 1)``, size ``int(h*s)`` (truncated), random interpolation;
3. noise [RandomNoise]: Gaussian, sigma ``U[0, 25]`` in 0-255 units, per pixel and channel;
4. jpeg [RandomJPEGCompression]: quality ``round(U[50, 95])``; by default the RGB array is
   encoded as if it were BGR (MMagic's ``bgr2rgb=False`` quirk, ``jpeg_color_order: mmagic``);
5. up [RandomResize target 512]: random interpolation back to the HQ size;
6. final [RandomResize target 128, area].

:func:`sample_params` draws a :class:`DegradationParams` record (JSON-able, so it
can be logged and replayed); :func:`apply_params` applies one deterministically.
The draws come from an :class:`Rng` adapter: :class:`MMagicRng` uses numpy's
global ``RandomState`` and Python's ``random`` in MMagic's exact draw order, so
``random.seed(s); np.random.seed(s)`` reproduces MMagic 1.x's LQ bit for bit;
:class:`GeneratorRng` draws the same quantities from a private
``numpy.random.Generator`` and touches no global state.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from .kernels import gaussian_kernel

INTERP = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
}


# ----------------------------------------------------------------------------- RNG adapters


class Rng(Protocol):
    def uniform(self, lo: float, hi: float) -> float: ...
    def choice(self, options: Sequence, p: Sequence[float]) -> Any: ...
    def py_choice(self, options: Sequence) -> Any: ...
    def randn(self, shape: tuple[int, ...]) -> np.ndarray: ...


_CDF_CACHE: dict[tuple, np.ndarray] = {}


def _cdf(p: Sequence[float], n: int) -> np.ndarray:
    """The normalised cumulative distribution numpy's ``choice(a, p=p)`` builds (cached per ``p``).

    Validates ``p`` as numpy does (length, non-negative, sums to 1 within sqrt(eps)).
    """
    key = (n, *map(float, p))
    cdf = _CDF_CACHE.get(key)
    if cdf is None:
        pa = np.asarray(p, dtype=np.float64)
        if pa.ndim != 1 or pa.size != n or n == 0:
            raise ValueError(f"'a' and 'p' must have the same size, got {n} options and p={list(p)}")
        if np.any(pa < 0) or abs(float(pa.sum()) - 1.0) > np.sqrt(np.finfo(np.float64).eps):
            raise ValueError(f"probabilities must be non-negative and sum to 1, got {list(p)}")
        cdf = pa.cumsum()
        cdf /= cdf[-1]
        cdf.setflags(write=False)
        if len(_CDF_CACHE) < 256:
            _CDF_CACHE[key] = cdf
    return cdf


def _pick(cdf: np.ndarray, u: float) -> int:
    """``cdf.searchsorted(u, side="right")``: the index numpy's ``choice`` returns for the draw ``u``."""
    return int(cdf.searchsorted(u, side="right"))


class MMagicRng:
    """Draws from numpy's global RandomState and Python's global ``random``, as MMagic does."""

    name = "mmagic"

    def __init__(self, seed: int | None = None):
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)

    def uniform(self, lo, hi):
        return np.random.uniform(lo, hi)

    def choice(self, options, p):
        # = np.random.choice(options, p=p) (one random_sample() draw, the same cdf and searchsorted),
        # without its argument checks and array conversions (~70 us a call; 7 calls a sample).
        return options[_pick(_cdf(p, len(options)), np.random.random_sample())]

    def py_choice(self, options):
        return random.choice(options)

    def randn(self, shape):
        # float64 standard normal, then float32, as ``np.float32(np.random.randn(...))``.
        return np.float32(np.random.randn(*shape))


class GeneratorRng:
    """Same draws from a private ``numpy.random.Generator`` (no global state touched)."""

    name = "facesr"

    def __init__(self, seed: int | Sequence[int] | np.random.SeedSequence):
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.gen = np.random.Generator(np.random.PCG64(ss))

    def uniform(self, lo, hi):
        return float(self.gen.uniform(lo, hi))

    def choice(self, options, p):
        # = options[self.gen.choice(len(options), p=p)]: one random() draw, same cdf and searchsorted.
        return options[_pick(_cdf(p, len(options)), self.gen.random())]

    def py_choice(self, options):
        return options[int(self.gen.integers(len(options)))]

    def randn(self, shape):
        return self.gen.standard_normal(shape, dtype=np.float32)


def make_rng(mode: str, seed) -> Rng:
    """``mode`` is ``"facesr"`` (private Generator) or ``"mmagic"`` (global, MMagic order)."""
    if mode == "mmagic":
        if not isinstance(seed, (int, np.integer)):
            seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        return MMagicRng(int(seed))
    if mode == "facesr":
        return GeneratorRng(seed)
    raise ValueError(f"rng must be 'facesr' or 'mmagic', got {mode!r}")


# ----------------------------------------------------------------------------- config


@dataclass
class BlurCfg:
    prob: float = 1.0
    kernel_size: list[int] = field(default_factory=lambda: [41])
    kernel_list: list[Literal["iso", "aniso"]] = field(default_factory=lambda: ["iso", "aniso"])
    kernel_prob: list[float] = field(default_factory=lambda: [0.5, 0.5])
    sigma_x: list[float] = field(default_factory=lambda: [0.2, 5.0])
    sigma_y: list[float] = field(default_factory=lambda: [0.2, 5.0])
    rotate_angle: list[float] = field(default_factory=lambda: [-3.1416, 3.1416])
    # false: separable kernels (all 'iso') run as two 1-D passes (cv2.sepFilter2D), ~6x faster blur;
    # the float sum rounds differently, so ~1 blurred pixel in 80,000 moves by +-1 level (docs/performance.md).
    exact: bool = True


@dataclass
class DownCfg:
    prob: float = 1.0
    resize_mode_prob: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.0])  # up, down, keep
    resize_scale: list[float] = field(default_factory=lambda: [0.0625, 1.0])
    resize_opt: list[Literal["bilinear", "bicubic", "area", "lanczos"]] = field(
        default_factory=lambda: ["bilinear", "area", "bicubic"]
    )
    resize_prob: list[float] = field(default_factory=lambda: [1 / 3.0, 1 / 3.0, 1 / 3.0])


@dataclass
class NoiseCfg:
    prob: float = 1.0
    gaussian_sigma: list[float] = field(default_factory=lambda: [0.0, 25.0])  # 0-255 units
    gaussian_gray_noise_prob: float = 0.0


@dataclass
class JpegCfg:
    prob: float = 1.0
    quality: list[float] = field(default_factory=lambda: [50, 95])
    color_order: Literal["mmagic", "rgb"] = (
        "mmagic"  # "mmagic": encode RGB as if BGR (reference quirk); "rgb": correct order
    )


@dataclass
class TargetResizeCfg:
    prob: float = 1.0
    size: int = 512
    resize_opt: list[Literal["bilinear", "bicubic", "area", "lanczos"]] = field(
        default_factory=lambda: ["bilinear", "area", "bicubic"]
    )
    resize_prob: list[float] = field(default_factory=lambda: [1 / 3.0, 1 / 3.0, 1 / 3.0])


@dataclass
class DegradationCfg:
    """Parameters of the course pipeline; every range and probability as in MMagic's params dicts."""

    blur: BlurCfg = field(default_factory=BlurCfg)
    down: DownCfg = field(default_factory=DownCfg)
    noise: NoiseCfg = field(default_factory=NoiseCfg)
    jpeg: JpegCfg = field(default_factory=JpegCfg)
    up: TargetResizeCfg = field(default_factory=TargetResizeCfg)
    final: TargetResizeCfg = field(
        default_factory=lambda: TargetResizeCfg(size=128, resize_opt=["area"], resize_prob=[1.0])
    )
    rng: Literal["facesr", "mmagic"] = "facesr"  # "facesr" or "mmagic"


# ----------------------------------------------------------------------------- params record


@dataclass
class DegradationParams:
    """One sampled degradation.  ``None`` for a step means the step was skipped.

    ``noise_seed`` regenerates the noise field in ``facesr`` mode; in ``mmagic``
    mode the noise is drawn from the global state during sampling and kept in
    ``noise`` (not serialised), so such a record replays by re-sampling its seed.
    """

    in_size: tuple[int, int]
    blur: dict | None = None
    down: dict | None = None
    noise: dict | None = None
    jpeg: dict | None = None
    up: dict | None = None
    final: dict | None = None
    rng: str = "facesr"
    seed: Any = None
    noise_field: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        # As asdict() minus noise_field, without deep-copying that (up to 3 MB) array first.
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "noise_field"}
        d["in_size"] = list(self.in_size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> DegradationParams:
        d = dict(d)
        d["in_size"] = tuple(d["in_size"])
        return cls(**d)


def _gate(rng: Rng, prob: float) -> bool:
    """MMagic's ``np.random.uniform() > prob`` -> skip.  Always consumes one draw."""
    return not (rng.uniform(0.0, 1.0) > prob)


def sample_params(cfg: DegradationCfg, in_size: tuple[int, int], rng: Rng, seed: Any = None) -> DegradationParams:
    """Draw every random quantity of one degradation, in MMagic's order.

    ``in_size`` is the HQ (height, width).
    """
    p = DegradationParams(in_size=(int(in_size[0]), int(in_size[1])), rng=getattr(rng, "name", "facesr"), seed=seed)
    h, w = in_size

    # 1. RandomBlur.get_kernel: type, size (Python random), sx, sy, theta, beta_g, beta_p, omega,
    #    then random_mixed_kernels re-draws type and sigmas from degenerate ranges, then 6 step draws.
    b = cfg.blur
    if _gate(rng, b.prob):
        ktype = str(rng.choice(b.kernel_list, b.kernel_prob))
        ksize = int(rng.py_choice(b.kernel_size))
        sx = rng.uniform(b.sigma_x[0], b.sigma_x[1])
        sy = rng.uniform(b.sigma_y[0], b.sigma_y[1])
        theta = rng.uniform(b.rotate_angle[0], b.rotate_angle[1])
        rng.uniform(0.5, 4)  # beta_gaussian (unused by iso/aniso)
        rng.uniform(1, 2)  # beta_plateau (unused)
        rng.uniform(np.pi / 3.0, np.pi) if ksize < 13 else rng.uniform(np.pi / 5.0, np.pi)  # omega (unused)
        rng.choice([ktype], [1])
        sx = rng.uniform(sx, sx)
        if ktype == "aniso":
            sy = rng.uniform(sy, sy)
            theta = rng.uniform(theta, theta)
        elif ktype != "iso":
            raise ValueError(f"blur kernel type {ktype!r} is not supported (use 'iso' or 'aniso')")
        for _ in range(6):
            rng.uniform(0, 0)
        p.blur = {"kernel": ktype, "size": ksize, "sigma_x": float(sx), "sigma_y": float(sy), "theta": float(theta)}
        if not b.exact:  # recorded only when set, so exact records stay as they were
            p.blur["exact"] = False

    # 2. RandomResize (no target): interpolation, mode, scale; size truncated.
    d = cfg.down
    if _gate(rng, d.prob):
        interp = str(rng.choice(d.resize_opt, d.resize_prob)).lower()
        mode = str(rng.choice(["up", "down", "keep"], d.resize_mode_prob))
        if mode == "up":
            s = rng.uniform(1, d.resize_scale[1])
        elif mode == "down":
            s = rng.uniform(d.resize_scale[0], 1)
        else:
            s = 1
        h, w = int(h * s), int(w * s)
        if h < 1 or w < 1:
            raise ValueError(f"resize scale {s} gives an empty image from {in_size}")
        p.down = {"interp": interp, "mode": mode, "scale": float(s), "size": [h, w]}

    # 3. RandomNoise: type, sigma, gray check, randn(h, w, 3), one step draw.
    n = cfg.noise
    if _gate(rng, n.prob):
        rng.choice(["gaussian"], [1])
        sigma = rng.uniform(n.gaussian_sigma[0], n.gaussian_sigma[1])
        gray = bool(rng.uniform(0.0, 1.0) < n.gaussian_gray_noise_prob)
        noise_seed = None
        if isinstance(rng, MMagicRng):
            p.noise_field = rng.randn((h, w, 3))
        else:
            noise_seed = int(rng.gen.integers(2**63))  # type: ignore[attr-defined]
        rng.uniform(0, 0)
        p.noise = {"sigma": float(sigma), "gray": gray, "noise_seed": noise_seed}

    # 4. RandomJPEGCompression: quality = Python round(U[lo, hi]), one step draw after encoding.
    j = cfg.jpeg
    if _gate(rng, j.prob):
        q = round(rng.uniform(j.quality[0], j.quality[1]))
        rng.uniform(0, 0)
        p.jpeg = {"quality": int(q), "color_order": j.color_order}

    # 5./6. RandomResize to fixed sizes: interpolation only.
    for name, t in (("up", cfg.up), ("final", cfg.final)):
        if _gate(rng, t.prob):
            setattr(p, name, {"interp": str(rng.choice(t.resize_opt, t.resize_prob)).lower(), "size": [t.size, t.size]})
    return p


# ----------------------------------------------------------------------------- applying


def to_uint8(img: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Round half to even and saturate to uint8, as OpenCV's ``convertTo(CV_8U)``.

    ``overwrite=True`` lets a float32 ``img`` be used as scratch space (its contents
    are then undefined); the default never modifies ``img``.
    """
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.float32 and img.ndim in (2, 3) and img.size:
        # Clamp the negatives, then cv2.convertScaleAbs (scale 1, shift 0): saturate_cast<uchar>,
        # i.e. round half to even and saturate, in one pass; equal to clip(rint(x)) (checked in
        # tests/test_perf_degradation.py) and 2-3x fewer passes over the image.
        pos = np.maximum(img, 0, out=img if overwrite else None)
        return cv2.convertScaleAbs(pos)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def apply_blur(img: np.ndarray, kernel: np.ndarray, exact: bool = True) -> np.ndarray:
    """Correlate with ``kernel`` (anchor at centre, BORDER_REFLECT_101); uint8 in -> uint8 out.

    ``exact=False`` runs a separable kernel (outer product of its marginals to
    1e-12, e.g. every isotropic Gaussian) as two 1-D passes with ``cv2.sepFilter2D``:
    ~6x faster, but the float32 sum is rounded differently from ``filter2D``'s, so
    about 1 pixel in 80,000 differs by one level.  Other kernels always use ``filter2D``.
    """
    if not exact:
        kx, ky = kernel.sum(axis=0), kernel.sum(axis=1)
        if np.abs(np.outer(ky, kx) - kernel).max() <= 1e-12:
            return cv2.sepFilter2D(img, -1, kx, ky, borderType=cv2.BORDER_REFLECT_101)
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def resize(img: np.ndarray, size_hw: Sequence[int], interp: str) -> np.ndarray:
    """``cv2.resize`` to (height, width) with a named interpolation."""
    h, w = int(size_hw[0]), int(size_hw[1])
    return cv2.resize(img, (w, h), interpolation=INTERP[interp])


def jpeg_roundtrip(img: np.ndarray, quality: int, color_order: str = "mmagic") -> np.ndarray:
    """Encode and decode with OpenCV's libjpeg (4:2:0).  Float input is rounded and saturated first.

    ``color_order="mmagic"`` passes the RGB array to OpenCV unchanged, so OpenCV
    treats it as BGR (the reference quirk); ``"rgb"`` reverses the channels
    around the codec, which is the colour-correct JPEG.
    """
    img = to_uint8(img)
    if color_order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if out is None:
        raise RuntimeError("OpenCV failed to decode its own JPEG")
    if color_order == "rgb":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return out


def noise_field(p: DegradationParams, shape: tuple[int, int, int]) -> np.ndarray:
    """The float32 standard-normal field of ``shape`` for this record (before scaling by sigma)."""
    if p.noise_field is not None:
        if p.noise_field.shape != shape:
            raise ValueError(f"stored noise field {p.noise_field.shape} does not match image {shape}")
        return p.noise_field
    if p.noise is None or p.noise.get("noise_seed") is None:
        raise ValueError("this degradation record has no noise seed; re-sample it from its seed to replay")
    return np.random.Generator(np.random.PCG64(p.noise["noise_seed"])).standard_normal(shape, dtype=np.float32)


def apply_params(hq: np.ndarray, p: DegradationParams) -> np.ndarray:
    """Degrade ``hq`` (uint8 HxWx3 RGB) with a sampled record; returns uint8 RGB LQ."""
    if hq.dtype != np.uint8 or hq.ndim != 3 or hq.shape[2] != 3:
        raise ValueError(f"HQ image must be uint8 HxWx3, got {hq.dtype} {hq.shape}")
    if tuple(hq.shape[:2]) != tuple(p.in_size):
        raise ValueError(f"record was sampled for size {p.in_size}, image is {hq.shape[:2]}")
    img: np.ndarray = hq
    if p.blur is not None:
        k = gaussian_kernel(
            p.blur["size"], p.blur["sigma_x"], p.blur["sigma_y"], p.blur["theta"], isotropic=p.blur["kernel"] == "iso"
        )
        img = apply_blur(img, k, exact=p.blur.get("exact", True))
    if p.down is not None:
        img = resize(img, p.down["size"], p.down["interp"])
    if p.noise is not None:
        field_ = noise_field(p, img.shape)
        if p.noise["gray"]:
            noise = field_ * p.noise["sigma"]  # float32, 0-255 units
            img = img + noise[:, :, :1]  # float32, unclipped, unrounded (as MMagic 1.x)
        else:
            # = img + field * sigma (float32; the addition commutes exactly) in one buffer: a
            # regenerated field is ours to overwrite, a stored one (mmagic records) is not.
            buf = field_ if field_ is not p.noise_field else None
            noise = np.multiply(field_, p.noise["sigma"], out=buf)
            img = np.add(noise, img, out=noise)
    if p.jpeg is not None:
        img = jpeg_roundtrip(img, p.jpeg["quality"], p.jpeg.get("color_order", "mmagic"))
    for step in (p.up, p.final):
        if step is not None:
            img = resize(to_uint8(img), step["size"], step["interp"])
    return to_uint8(img)


def degrade(hq: np.ndarray, cfg: DegradationCfg, rng: Rng, seed: Any = None) -> tuple[np.ndarray, DegradationParams]:
    """Sample and apply one degradation: uint8 RGB HQ -> (uint8 RGB LQ, params record)."""
    p = sample_params(cfg, hq.shape[:2], rng, seed)
    return apply_params(hq, p), p
