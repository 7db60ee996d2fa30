"""Degradation parameters of a whole batch as arrays, drawn with no per-sample Python work.

:class:`ParamBatch` holds one entry per sample of everything
:func:`facesr.data.degradations.sample_params` draws (blur kernel, resize sizes and
interpolations, noise sigma, JPEG quality, ...) as numpy arrays on the host.  It is made
either

* by :func:`sample_batch`: the course pipeline's distributions (same ranges,
  probabilities and size truncation as the exact sampler) drawn from a counter-based
  generator: every draw is a SplitMix64 hash of ``(seed, stream, sample number, draw
  index)``, computed for the whole batch with a fixed number of array operations, so a
  sample's parameters depend only on the run seed and its sample number (never on the
  batch it lands in, the batch size, the worker count or the device); or
* by :meth:`ParamBatch.from_records`, from exact-path records (to feed the very same
  parameters through both engines, or for ``facesr degrade --engine batched``).

:meth:`ParamBatch.to_records` turns rows back into JSON-able records.  The parameters stay
on the host, so every decision that depends on them (which samples share an
interpolation, the largest intermediate size) costs no device sync and no torch op;
the per-sample tables the device needs are built from them and copied once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .degradations import DegradationCfg, DegradationParams

#: Interpolation codes (index = code).
INTERPS = ("bilinear", "area", "bicubic", "lanczos", "nearest")
#: Resize modes of the down step (index = code), in MMagic's order.
MODES = ("up", "down", "keep")

# Draw slots of one sample (each one 64-bit hash).
_SLOTS = (
    "blur_gate",
    "kernel",
    "ksize",
    "sigma_x",
    "sigma_y",
    "theta",
    "down_gate",
    "down_interp",
    "mode",
    "scale",
    "noise_gate",
    "sigma",
    "gray",
    "noise_key",
    "jpeg_gate",
    "quality",
    "up_gate",
    "up_interp",
    "final_gate",
    "final_interp",
    "crop_top",
    "crop_left",
)
_SLOT = {name: i for i, name in enumerate(_SLOTS)}
#: Stream number of the batched sampler in the ``(seed, stream, sample)`` key (the exact path's training
#: stream is 1, the sampler permutation 2, the old per-sample batched path 3).
STREAM = 4
_U64 = np.uint64
_GAMMA = _U64(0x9E3779B97F4A7C15)


# ----------------------------------------------------------------------------- counter-based hashing


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (a bijection of 64-bit words) on a uint64 array; wraps modulo 2**64."""
    z = np.asarray(z, dtype=_U64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def key64(*words) -> np.ndarray:
    """Hash a sequence of integers / uint64 arrays (broadcast) into one uint64 key per element."""
    h = np.zeros((), dtype=_U64)
    with np.errstate(over="ignore"):
        for w in words:
            w = (
                np.asarray(w).astype(np.int64, copy=False).astype(_U64)
                if not isinstance(w, int)
                else _U64(w & 0xFFFFFFFFFFFFFFFF)
            )
            h = splitmix64(h + _GAMMA ^ w)
    return h


def hash_draws(seed: int, stream: int, sample_nos: np.ndarray, n_draws: int) -> np.ndarray:
    """(N, n_draws) uint64 hashes of ``(seed, stream, sample_no, draw)``: SplitMix64 streams keyed per sample."""
    base = key64(int(seed), int(stream), np.asarray(sample_nos, dtype=np.int64))
    with np.errstate(over="ignore"):
        return splitmix64(base[:, None] + _GAMMA * np.arange(1, n_draws + 1, dtype=_U64)[None, :])


def _uniform(h: np.ndarray) -> np.ndarray:
    """float64 uniform in [0, 1) from 64-bit hashes (53 bits)."""
    return (h >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _choice(u: np.ndarray, p: Sequence[float]) -> np.ndarray:
    """Index drawn with probabilities ``p`` for uniforms ``u`` (numpy ``choice``'s cdf and searchsorted)."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(p) - 1)


# ----------------------------------------------------------------------------- the batch of parameters


@dataclass
class ParamBatch:
    """Per-sample degradation parameters: numpy arrays of length N on the host.

    Bool ``*_on``: the step runs.  Sizes are (height, width) in pixels; ``sigma_*`` in
    pixels, ``theta`` in radians, ``noise_sigma`` in 0-255 units, interpolation codes index
    :data:`INTERPS`.  ``noise_key``: 63-bit key of the sample's noise (the record's
    ``noise_seed``).  ``crop_top/left``: LQ crop origin, or None.
    """

    in_size: tuple[int, int]
    blur_on: np.ndarray
    blur_iso: np.ndarray
    blur_ksize: np.ndarray
    sigma_x: np.ndarray
    sigma_y: np.ndarray
    theta: np.ndarray
    down_on: np.ndarray
    down_interp: np.ndarray
    down_mode: np.ndarray
    down_scale: np.ndarray
    down_h: np.ndarray
    down_w: np.ndarray
    noise_on: np.ndarray
    noise_sigma: np.ndarray
    noise_gray: np.ndarray
    noise_key: np.ndarray
    jpeg_on: np.ndarray
    jpeg_quality: np.ndarray
    jpeg_rgb: np.ndarray
    up_on: np.ndarray
    up_interp: np.ndarray
    up_h: np.ndarray
    up_w: np.ndarray
    final_on: np.ndarray
    final_interp: np.ndarray
    final_h: np.ndarray
    final_w: np.ndarray
    crop_top: np.ndarray | None = None
    crop_left: np.ndarray | None = None
    #: Where the rows came from: the records (from_records), or the run seed and sample numbers (sample_batch).
    records: list[DegradationParams] | None = None
    run_seed: int | None = None
    sample_nos: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.blur_on.shape[0])

    def sizes_after(self, step: str) -> tuple[np.ndarray, np.ndarray]:
        """(heights, widths) of every sample after ``step`` (``"in"``, ``"down"``, ``"up"`` or ``"final"``)."""
        if step not in ("in", "down", "up", "final"):
            raise ValueError(f"unknown step {step!r}")
        h = np.full(len(self), self.in_size[0], dtype=np.int64)
        w = np.full(len(self), self.in_size[1], dtype=np.int64)
        if step == "in":
            return h, w
        for name in ("down", "up", "final"):
            on = getattr(self, f"{name}_on")
            h = np.where(on, getattr(self, f"{name}_h"), h)
            w = np.where(on, getattr(self, f"{name}_w"), w)
            if name == step:
                break
        return h, w

    def interp_of(self, step: str) -> np.ndarray:
        """Interpolation codes of ``step`` ("down", "up", "final"); a skipped step copies (nearest, same size)."""
        return np.where(getattr(self, f"{step}_on"), getattr(self, f"{step}_interp"), INTERPS.index("nearest"))

    def subset(self, idx: np.ndarray) -> ParamBatch:
        """The rows ``idx`` (int array), in that order."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, np.ndarray):
                kw[k] = v[idx]
        if self.records is not None:  # record mode only (not a hot path)
            kw["records"] = [self.records[i] for i in np.asarray(idx).tolist()]
        return ParamBatch(**kw)

    @classmethod
    def from_records(cls, records: Sequence[DegradationParams]) -> ParamBatch:
        """Rows from exact-path records (all sampled for one HQ size).  Per-record Python: not for hot paths."""
        if not records:
            raise ValueError("no degradation records")
        in_size = (int(records[0].in_size[0]), int(records[0].in_size[1]))
        if any(tuple(int(v) for v in p.in_size) != in_size for p in records):
            raise ValueError(
                f"records sampled for sizes {sorted({tuple(p.in_size) for p in records})}; one batch needs one HQ size"
            )
        cols: dict[str, list] = {
            f.name: []
            for f in fields(cls)
            if f.type.startswith("np.ndarray") and f.name not in ("crop_top", "crop_left", "sample_nos")
        }
        for p in records:
            _record_row(p, cols, *in_size)
        return cls(in_size=in_size, records=list(records), **{k: _column(k, v) for k, v in cols.items()})  # type: ignore[arg-type]

    def to_records(self) -> list[DegradationParams]:
        """One JSON-able :class:`DegradationParams` per row (the exact path can replay them; its noise
        field then comes from ``noise_seed`` with numpy, another realisation of the same noise)."""
        if self.records is not None:
            return list(self.records)
        cols = {
            f.name: getattr(self, f.name).tolist()
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        nos = cols.get("sample_nos") or [None] * len(self)
        seeds = [None if s is None or self.run_seed is None else [self.run_seed, STREAM, s] for s in nos]
        return [_row_record(cols, i, self.in_size, seeds[i]) for i in range(len(self))]


def _column(name: str, values: list) -> np.ndarray:
    if name.endswith("_on") or name in ("blur_iso", "noise_gray", "jpeg_rgb"):
        return np.asarray(values, dtype=bool)
    if name in ("sigma_x", "sigma_y", "theta", "down_scale", "noise_sigma"):
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=np.int64)


def _record_row(p: DegradationParams, cols: dict[str, list], h: int, w: int) -> None:
    """Append record ``p``'s values to the column lists (neutral values for skipped steps)."""
    b = p.blur or {}
    cols["blur_on"].append(p.blur is not None)
    cols["blur_iso"].append(b.get("kernel", "iso") == "iso")
    cols["blur_ksize"].append(int(b.get("size", 1)))
    for k in ("sigma_x", "sigma_y", "theta"):
        cols[k].append(float(b.get(k, 1.0 if k != "theta" else 0.0)))
    d = p.down or {}
    cols["down_on"].append(p.down is not None)
    cols["down_interp"].append(INTERPS.index(d.get("interp", "nearest")))
    cols["down_mode"].append(MODES.index(d.get("mode", "keep")))
    cols["down_scale"].append(float(d.get("scale", 1.0)))
    dh, dw = (int(v) for v in d.get("size", (h, w)))
    cols["down_h"].append(dh)
    cols["down_w"].append(dw)
    n = p.noise or {}
    cols["noise_on"].append(p.noise is not None)
    cols["noise_sigma"].append(float(n.get("sigma", 0.0)))
    cols["noise_gray"].append(bool(n.get("gray", False)))
    cols["noise_key"].append(int(n.get("noise_seed") or 0) & ((1 << 63) - 1))
    j = p.jpeg or {}
    cols["jpeg_on"].append(p.jpeg is not None)
    cols["jpeg_quality"].append(int(j.get("quality", 95)))
    cols["jpeg_rgb"].append(j.get("color_order", "mmagic") == "rgb")
    for name in ("up", "final"):  # a skipped step's size is never read (ParamBatch.sizes_after)
        s = getattr(p, name) or {}
        cols[f"{name}_on"].append(getattr(p, name) is not None)
        cols[f"{name}_interp"].append(INTERPS.index(s.get("interp", "nearest")))
        sh, sw = (int(v) for v in s.get("size", (1, 1)))
        cols[f"{name}_h"].append(sh)
        cols[f"{name}_w"].append(sw)


def _row_record(c: dict[str, list], i: int, in_size: tuple[int, int], seed: Any) -> DegradationParams:
    """Row ``i`` of the column lists as an exact-path record."""
    p = DegradationParams(in_size=(int(in_size[0]), int(in_size[1])), rng="batched", seed=seed)
    if c["blur_on"][i]:
        p.blur = {
            "kernel": "iso" if c["blur_iso"][i] else "aniso",
            "size": c["blur_ksize"][i],
            "sigma_x": c["sigma_x"][i],
            "sigma_y": c["sigma_y"][i],
            "theta": c["theta"][i],
        }
    if c["down_on"][i]:
        p.down = {
            "interp": INTERPS[c["down_interp"][i]],
            "mode": MODES[c["down_mode"][i]],
            "scale": c["down_scale"][i],
            "size": [c["down_h"][i], c["down_w"][i]],
        }
    if c["noise_on"][i]:
        p.noise = {"sigma": c["noise_sigma"][i], "gray": c["noise_gray"][i], "noise_seed": c["noise_key"][i]}
    if c["jpeg_on"][i]:
        p.jpeg = {"quality": c["jpeg_quality"][i], "color_order": "rgb" if c["jpeg_rgb"][i] else "mmagic"}
    for name in ("up", "final"):
        if c[f"{name}_on"][i]:
            setattr(
                p, name, {"interp": INTERPS[c[f"{name}_interp"][i]], "size": [c[f"{name}_h"][i], c[f"{name}_w"][i]]}
            )
    return p


# ----------------------------------------------------------------------------- the batched sampler


def _lerp(u: np.ndarray, lo_hi: Sequence[float]) -> np.ndarray:
    """``lo + (hi - lo) * u``, numpy's ``uniform(lo, hi)`` formula."""
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * u


def _interp_codes(u: np.ndarray, opts: Sequence[str], probs: Sequence[float]) -> np.ndarray:
    """Interpolation codes (:data:`INTERPS`) drawn from ``opts`` with ``probs``."""
    return np.asarray([INTERPS.index(str(o).lower()) for o in opts], dtype=np.int64)[_choice(u, probs)]


def _down_sizes(col: dict, d, h0: int, w0: int) -> tuple[np.ndarray, ...]:
    """Down-resize mode, scale and truncated size, as :func:`sample_params` (``int(h * s)``)."""
    mode = _choice(col["mode"], d.resize_mode_prob)
    u = col["scale"]
    scale = np.where(
        mode == 0, _lerp(u, (1.0, d.resize_scale[1])), np.where(mode == 1, _lerp(u, (d.resize_scale[0], 1.0)), 1.0)
    )
    return mode, scale, np.floor(h0 * scale).astype(np.int64), np.floor(w0 * scale).astype(np.int64)


def sample_batch(
    cfg: DegradationCfg,
    seed: int,
    sample_nos: Sequence[int] | np.ndarray,
    in_size: tuple[int, int],
    crop_size: int | None = None,
) -> ParamBatch:
    """Draw the parameters of training samples ``sample_nos`` (>= 0) for HQ ``in_size`` (h, w).

    Same distributions as :func:`facesr.data.degradations.sample_params` (the draws
    themselves differ: they come from :func:`hash_draws`).  ``crop_size``: also draw an LQ
    crop origin of that size.  A fixed number of array operations, whatever N.
    """
    nos = np.asarray(sample_nos, dtype=np.int64).reshape(-1)
    hashes = hash_draws(seed, STREAM, nos, len(_SLOTS))
    col = {name: _uniform(hashes[:, i]) for name, i in _SLOT.items()}
    h0, w0 = int(in_size[0]), int(in_size[1])
    b, d, nz, j = cfg.blur, cfg.down, cfg.noise, cfg.jpeg
    kinds = [str(k) for k in b.kernel_list]
    if any(k not in ("iso", "aniso") for k in kinds):
        raise ValueError(f"blur kernel types {kinds}: only 'iso' and 'aniso' are supported")
    mode, scale, dh, dw = _down_sizes(col, d, h0, w0)
    down_on = col["down_gate"] <= d.prob
    if np.any(down_on & ((dh < 1) | (dw < 1))):
        raise ValueError(f"degradation.down.resize_scale {d.resize_scale} gives an empty image from {in_size}")
    n = len(nos)
    ksizes = np.asarray([int(k) for k in b.kernel_size], dtype=np.int64)
    pb = ParamBatch(
        in_size=(h0, w0),
        blur_on=col["blur_gate"] <= b.prob,
        blur_iso=np.asarray([k == "iso" for k in kinds])[_choice(col["kernel"], b.kernel_prob)],
        blur_ksize=ksizes[np.minimum((col["ksize"] * len(ksizes)).astype(np.int64), len(ksizes) - 1)],
        sigma_x=_lerp(col["sigma_x"], b.sigma_x),
        sigma_y=_lerp(col["sigma_y"], b.sigma_y),
        theta=_lerp(col["theta"], b.rotate_angle),
        down_on=down_on,
        down_interp=_interp_codes(col["down_interp"], d.resize_opt, d.resize_prob),
        down_mode=mode,
        down_scale=scale,
        down_h=dh,
        down_w=dw,
        noise_on=col["noise_gate"] <= nz.prob,
        noise_sigma=_lerp(col["sigma"], nz.gaussian_sigma),
        noise_gray=col["gray"] < nz.gaussian_gray_noise_prob,
        noise_key=(hashes[:, _SLOT["noise_key"]] >> _U64(1)).astype(np.int64),
        jpeg_on=col["jpeg_gate"] <= j.prob,
        jpeg_quality=np.round(_lerp(col["quality"], j.quality)).astype(np.int64),
        jpeg_rgb=np.full(n, j.color_order == "rgb"),
        up_on=col["up_gate"] <= cfg.up.prob,
        up_interp=_interp_codes(col["up_interp"], cfg.up.resize_opt, cfg.up.resize_prob),
        up_h=np.full(n, cfg.up.size, dtype=np.int64),
        up_w=np.full(n, cfg.up.size, dtype=np.int64),
        final_on=col["final_gate"] <= cfg.final.prob,
        final_interp=_interp_codes(col["final_interp"], cfg.final.resize_opt, cfg.final.resize_prob),
        final_h=np.full(n, cfg.final.size, dtype=np.int64),
        final_w=np.full(n, cfg.final.size, dtype=np.int64),
        run_seed=int(seed),
        sample_nos=nos,
    )
    if crop_size:
        _draw_crop(pb, col, int(crop_size))
    return pb


def _draw_crop(pb: ParamBatch, col: dict, c: int) -> None:
    """LQ crop origins of size ``c``: ``int(u * (lq - c + 1))`` per axis, as the dataset draws them."""
    lh, lw = pb.sizes_after("final")
    if np.any((lh < c) | (lw < c)):
        raise ValueError(f"crop_size {c} is larger than the LQ ({int(lh.min())}x{int(lw.min())})")
    pb.crop_top = np.floor(col["crop_top"] * (lh - c + 1)).astype(np.int64)
    pb.crop_left = np.floor(col["crop_left"] * (lw - c + 1)).astype(np.int64)
