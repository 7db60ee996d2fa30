"""Run a model on images: :class:`Restorer`, the one forward path of facesr.

Pixel conventions
-----------------
* Inputs and outputs of :meth:`Restorer.restore` are **uint8, 0-255** (numpy
  arrays) or PIL images.  RGB is HxWx3, gray HxW (or HxWx1), RGBA HxWx4.
* The network sees float32 NCHW on the **0-1 scale** (``uint8 / 255``), exactly
  as in training.  :meth:`Restorer.predict_float` returns its output clamped to
  [0, 1] and multiplied by 255, **unrounded** (what evaluation scores);
  :meth:`Restorer.run_batch` rounds that half-to-even to uint8, so ``restore``
  equals ``np.rint(predict_float(...))`` by construction.  Preprocessing,
  channels-last, autocast (the precision policy, :mod:`.precision`), the forward
  pass, flip test-time augmentation and clamping live in one method,
  :meth:`Restorer._forward`; evaluation, the trainer's validation, predict,
  serve, demo and whole-photo restoration all go through it.

Tiling and memory
-----------------
``tile > 0`` splits the LQ image into a grid of *core* tiles of at most
``tile`` x ``tile`` LQ pixels.  Each core is run with ``tile_overlap`` extra LQ
pixels of real image context on every side (where the image has them), and
only the core's part of the output is kept, so every output pixel is computed
by exactly one tile and seams vanish once ``tile_overlap`` covers the model's
receptive field, which is ``2 * num_blocks + 3`` LQ pixels for MSRResNet
(plus one for its bilinear skip).  With ``tile_overlap >= 2 * num_blocks + 4``
tiled output equals untiled output up to float rounding (within one 8-bit
level; tested).  The default overlap (``tile_overlap=None``) is exactly that
receptive field, so tiled output matches untiled output for any block count.
Only the current tile batch is moved to the device.

With ``tile=0`` an image larger than :attr:`Restorer.AUTO_TILE_PIXELS` LQ
pixels (512 x 512) is tiled automatically with :attr:`Restorer.AUTO_TILE`
(256, so each forward pass sees at most (256 + 2 overlap)^2 LQ pixels, 328 x 328
for the 16-block model) and memory stays bounded whatever the image size.  Several images or
tiles share one forward pass only while they total at most
:attr:`Restorer.MAX_BATCH_PIXELS` (256 x 256) LQ pixels.  Peak activation
memory grows with the LQ pixels per pass times ``mid_channels`` (see
``benchmarks/bench_inference.py --memory``).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import assets
from ..devices import resolve_device
from ..errors import BadValueError, ImageError
from ..io.images import pil_to_rgb, upscale_classical
from ..models.weights import load_model
from .onnx import OnnxModel, export_onnx
from .precision import DTYPES, resolve_precision
from .winograd import winograd_model
from .tiling import tile_boxes


# ----------------------------------------------------------------------------- helpers

def split_alpha(image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Normalise one input (numpy uint8 or PIL) to (uint8 RGB HxWx3, uint8 alpha HxW or None, kind)."""
    if isinstance(image, Image.Image):
        rgb, alpha = pil_to_rgb(image)
        return rgb, alpha, "pil"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"restore() takes a numpy uint8 array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"restore() takes uint8 images (0-255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2), None, "numpy"
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image), None, "numpy"
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(image[..., 3]), "numpy"
    raise ImageError(f"restore() takes HxW, HxWx3 or HxWx4 images, got shape {tuple(image.shape)}")


def join_alpha(rgb: np.ndarray, alpha: np.ndarray | None, kind: str, scale: int):
    """Undo :func:`split_alpha` on an x``scale`` result: alpha upscaled bicubically, PIL back to PIL."""
    if alpha is not None:
        out = np.concatenate([rgb, upscale_classical(alpha, scale)[..., None]], axis=2)
        return Image.fromarray(out, "RGBA") if kind == "pil" else out
    return Image.fromarray(rgb, "RGB") if kind == "pil" else rgb


def _merge_amp(amp, precision: str | None) -> str | None:
    """The precision asked for by ``precision`` and the deprecated ``amp`` (None = neither: fp32)."""
    if amp is None:
        return precision
    name = {True: "bf16", False: "fp32"}[amp] if isinstance(amp, bool) else {"none": "fp32"}.get(amp, amp)
    if name not in ("fp32", "bf16", "fp16"):
        raise BadValueError(f"amp must be one of {', '.join(Restorer.AMP)}, got {amp!r}")
    if precision is None or name == "fp32":  # amp=False is the old default: it never overrides precision
        return precision if precision is not None else name
    if str(precision).lower() != name:
        raise BadValueError(f"amp={amp!r} (precision {name}) contradicts precision={precision!r}; give precision only")
    return name


# ----------------------------------------------------------------------------- Restorer

class Restorer:
    """Run a x4 super-resolution model on images of any size.

    Args:
        model: an ``nn.Module`` mapping float (N, 3, h, w) 0-1 to (N, 3, s*h, s*w), or an
            :class:`OnnxModel` (backend ``onnxruntime``) or :class:`facesr.backends.openvino.OpenVinoModel`
            (backend ``openvino``): float32 NCHW 0-1 numpy in and out.  A module is put in eval mode and
            moved to ``device`` (in place); ``fp32-winograd`` then runs a converted copy of it.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ...
            (torch backend only).
        precision: ``"auto"``, ``"fp32"``, ``"fp32-winograd"``, ``"bf16"`` or ``"fp16"`` (see
            :mod:`facesr.inference.precision`): ``auto`` picks bf16 on CPUs with native bf16 and on CUDA
            devices that support it, fp16 on older CUDA devices, fp32-winograd on AVX2 CPUs (x86 without
            AVX-512) whose PyTorch has NNPACK when torch runs one thread or OpenMP waits passively, fp32
            elsewhere and always for onnxruntime/openvino (the choice is logged once).  bf16/fp16 autocast the forward pass; clamping and rounding stay
            fp32.  fp32-winograd runs a copy of the model whose 3x3 convs of 64+ channels use NNPACK
            (:mod:`facesr.inference.winograd`; NCHW, ``channels_last`` ignored), within about 3e-6 of
            fp32 but not bit-identical; a model with no such conv runs plain fp32 (``precision`` then
            reads ``"fp32"``).  None (the default here) = fp32, unless ``amp`` says otherwise;
            :func:`facesr.load` defaults to ``"auto"``.
        amp: deprecated spelling of ``precision``: ``True``/``"bf16"`` = bf16, ``"fp16"``,
            ``False``/``"none"`` = fp32.
        channels_last: use the channels-last memory format (torch backend).
        tta: test-time augmentation: None/``"none"``, or ``"flip"``: the model's float output on
            the input and on its horizontal flip (flipped back) are averaged before clamping and
            rounding (twice the compute).  Applies inside every forward pass, so tiling is unchanged.
        tile: LQ core tile size in pixels; 0 = no tiling, except automatic tiling of
            images above :attr:`AUTO_TILE_PIXELS` LQ pixels (see the module docstring).
        tile_overlap: LQ pixels of context around each tile (cropped from the output); None = the
            model's ``receptive_field()`` (``2 * num_blocks + 4`` for MSRResNet; read from the metadata
            of a facesr ONNX file), which makes tiled output equal untiled output up to float rounding.
        batch_size: most images (or tiles) per forward pass; several images (or tiles) share
            a pass only while their LQ pixels total at most :attr:`MAX_BATCH_PIXELS` (256 x 256,
            i.e. four 128 x 128 faces).
    """

    AUTO_TILE_PIXELS = 512 * 512
    AUTO_TILE = 256
    MAX_BATCH_PIXELS = 256 * 256
    AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    TTA = ("none", "flip")

    BACKENDS = ("torch", "onnxruntime", "openvino")

    def __init__(self, model: nn.Module | OnnxModel, device: str | torch.device = "auto",
                 amp: bool | str | None = None, channels_last: bool = True, tile: int = 0,
                 tile_overlap: int | None = None, batch_size: int = 4, precision: str | None = None,
                 tta: str | None = None):
        if tile < 0:
            raise BadValueError(f"tile size must be >= 0, got {tile}")
        if tile_overlap is None:  # auto: the receptive field, so tiles match an untiled run
            rf = getattr(model, "receptive_field", None)
            if not callable(rf):
                raise BadValueError(f"{type(model).__name__} has no receptive_field(); give the tile overlap")
            tile_overlap = int(rf())
        if tile_overlap < 0:
            raise BadValueError(f"tile overlap must be >= 0, got {tile_overlap}")
        if batch_size < 1:
            raise BadValueError(f"batch size must be >= 1, got {batch_size}")
        precision = _merge_amp(amp, precision)
        tta = "none" if tta is None else str(tta).lower()
        if tta not in self.TTA:
            raise BadValueError(f"tta must be one of {', '.join(self.TTA)}, got {tta!r}")
        self.tta = tta
        self.winograd_convs = 0  # convolutions running NNPACK's Winograd (precision fp32-winograd)
        self.tile, self.tile_overlap, self.batch_size = int(tile), int(tile_overlap), int(batch_size)
        if not isinstance(model, nn.Module):  # OnnxModel / OpenVinoModel: numpy float32 NCHW in and out
            self.backend = model.backend
            self.model = model
            self.device = torch.device("cpu")
            self.channels_last = False
            self.precision, self.precision_reason = resolve_precision(precision, self.device, self.backend)
            self.scale = model.scale
        else:
            self.backend = "torch"
            self.device = resolve_device(device)
            self.precision, self.precision_reason = resolve_precision(precision, self.device, self.backend)
            self.channels_last = bool(channels_last) and self.precision != "fp32-winograd"  # NNPACK reads NCHW
            model = model.eval().to(self.device)
            if self.precision == "fp32-winograd":  # a copy whose 3x3 convs run NNPACK's Winograd
                twin, self.winograd_convs = winograd_model(model)
                if self.winograd_convs:
                    model = twin
                else:  # nothing to convert: plain fp32, in the faster layout, and say so
                    self.channels_last = bool(channels_last)
                    self.precision = "fp32"
                    self.precision_reason += "; no 3x3 conv of 64+ channels to run as Winograd, so plain fp32"
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.model = model
            self.scale = int(getattr(model, "upscale_factor", 0)) or self._probe_scale()
        self.amp_dtype = DTYPES[self.precision]
        self.amp = self.amp_dtype is not None

    # --------------------------------------------------------------- construction

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | None = None, device: str | torch.device = "auto",
                        ema: bool = False, backend: str = "torch", opset: int = 17, threads: int | None = None,
                        **kw) -> "Restorer":
        """Load a checkpoint (any format :func:`facesr.models.load_model` reads; None = shipped model).

        ``backend="onnxruntime"`` or ``"openvino"`` exports the loaded model to ONNX in memory and runs
        it there in fp32 (``device``/``amp``/``channels_last`` then do not apply; ``precision`` auto
        means fp32 there).
        ``kw`` go to :class:`Restorer`.
        """
        path = assets.shipped_checkpoint() if checkpoint is None else Path(checkpoint)
        model, _ = load_model(path, ema=ema)
        if backend == "torch":
            return cls(model, device=device, **kw)
        if backend in ("onnxruntime", "openvino"):
            for k in ("amp", "channels_last"):  # precision stays: auto -> fp32, bf16/fp16 -> a clear error
                kw.pop(k, None)
            onnx_bytes = export_onnx(model, opset=opset, check=False)
            if backend == "onnxruntime":
                return cls(OnnxModel(onnx_bytes, threads=threads), **kw)
            from ..backends.openvino import OpenVinoModel
            return cls(OpenVinoModel(onnx_bytes, threads=threads), **kw)
        raise BadValueError(f"backend must be one of {', '.join(cls.BACKENDS)}, got {backend!r}")

    @classmethod
    def from_onnx(cls, path: str | os.PathLike | bytes, threads: int | None = None,
                  providers: Sequence[str] | None = None, **kw) -> "Restorer":
        """Run an exported ONNX model (float32 NCHW 0-1 in, as :func:`export_onnx` writes) with onnxruntime."""
        for k in ("amp", "channels_last", "device"):
            kw.pop(k, None)
        return cls(OnnxModel(path, threads=threads, providers=providers), **kw)

    @classmethod
    def from_openvino(cls, path: str | os.PathLike, threads: int | None = None, **kw) -> "Restorer":
        """Run an OpenVINO IR (``.xml`` + ``.bin``, as ``facesr export --openvino`` writes, fp32 or int8)
        or an ``.onnx`` file with OpenVINO's CPU plugin (needs the ``openvino`` extra)."""
        from ..backends.openvino import OpenVinoModel
        for k in ("amp", "channels_last", "device"):
            kw.pop(k, None)
        return cls(OpenVinoModel(path, threads=threads), **kw)

    # --------------------------------------------------------------- core: the one forward path

    def _probe_scale(self) -> int:
        x = torch.zeros(1, 3, 8, 8, device=self.device)
        with torch.inference_mode():
            return int(self.model(x).shape[2] // 8)

    def _forward(self, batch: np.ndarray):
        """uint8 (N, h, w, 3) 0-255 -> (N, s*h, s*w, 3) float32 0-255, clamped, unrounded.

        A torch tensor on the device (torch backend) or a numpy array (onnxruntime, openvino).  Call it
        under ``torch.inference_mode()``.
        """
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ImageError(f"the model takes uint8 (N, h, w, 3) batches, got {batch.dtype} {tuple(batch.shape)}")
        if self.backend != "torch":  # onnxruntime / openvino: numpy float32 NCHW
            x = batch.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
            y = self.model(x)
            if self.tta == "flip":
                y = (y + self.model(np.ascontiguousarray(x[..., ::-1]))[..., ::-1]) * np.float32(0.5)
            y = np.clip(y, 0.0, 1.0) * np.float32(255.0)
            return y.transpose(0, 2, 3, 1)
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._model_float(x)
        if self.tta == "flip":  # average with the prediction of the mirrored input, mirrored back
            xf = x.flip(3)
            if self.channels_last:
                xf = xf.contiguous(memory_format=torch.channels_last)
            y = y.add_(self._model_float(xf).flip(3)).mul_(0.5)
        return y.clamp_(0, 1).mul_(255.0).permute(0, 2, 3, 1)

    def _model_float(self, x: torch.Tensor) -> torch.Tensor:
        """The model on NCHW 0-1 ``x`` under this Restorer's precision; float32 output, unclamped."""
        amp = (torch.autocast(device_type=self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            y = self.model(x)
        return y.float()

    def predict_float(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass, no tiling: uint8 (N, h, w, 3) 0-255 -> float32 (N, s*h, s*w, 3) 0-255,
        clamped, **not rounded** (the reference evaluation convention)."""
        with torch.inference_mode():
            y = self._forward(batch)
            y = y if isinstance(y, np.ndarray) else y.cpu().numpy()
        return np.ascontiguousarray(y, dtype=np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass, no tiling: uint8 (N, h, w, 3) 0-255 -> uint8 (N, s*h, s*w, 3) 0-255.

        Equals ``np.rint(predict_float(batch))`` (half to even); rounded on the device, so only
        uint8 crosses back to the host.
        """
        with torch.inference_mode():
            y = self._forward(batch)
            if isinstance(y, np.ndarray):
                y = np.rint(y).astype(np.uint8)
            else:
                y = y.round_().to(torch.uint8).cpu().numpy()
        return np.ascontiguousarray(y)

    def _batches(self, items: list, pixels_each: int) -> Iterator[list]:
        cap = max(1, min(self.batch_size, self.MAX_BATCH_PIXELS // max(1, pixels_each)))
        for i in range(0, len(items), cap):
            yield items[i:i + cap]

    def _tile_size(self, h: int, w: int) -> int:
        if self.tile > 0:
            return self.tile if (h > self.tile or w > self.tile) else 0
        return self.AUTO_TILE if h * w > self.AUTO_TILE_PIXELS else 0

    def _restore_tiled(self, img: np.ndarray, tile: int, step=None) -> np.ndarray:
        h, w = img.shape[:2]
        s = self.scale
        out = np.empty((h * s, w * s, 3), np.uint8)
        groups: dict[tuple[int, int], list] = {}
        for core, ctx in tile_boxes(h, w, tile, self.tile_overlap):
            groups.setdefault((ctx[1] - ctx[0], ctx[3] - ctx[2]), []).append((core, ctx))
        for (th, tw), boxes in groups.items():
            for chunk in self._batches(boxes, th * tw):
                batch = np.stack([img[c[0]:c[1], c[2]:c[3]] for _, c in chunk])
                res = self.run_batch(batch)
                for (core, ctx), r in zip(chunk, res):
                    oy, ox = (core[0] - ctx[0]) * s, (core[2] - ctx[2]) * s
                    ch, cw = (core[1] - core[0]) * s, (core[3] - core[2]) * s
                    out[core[0] * s:core[1] * s, core[2] * s:core[3] * s] = r[oy:oy + ch, ox:ox + cw]
                if step:
                    step(len(chunk))
        return out

    def restore_rgb(self, images: Sequence[np.ndarray], progress=None) -> list[np.ndarray]:
        """uint8 RGB HxWx3 arrays (0-255) -> uint8 RGB x``scale`` arrays, same order.

        Same-size images are batched (``batch_size``); big ones are tiled.  ``progress``, if
        given, is called as ``progress(done, total)`` before the first forward pass and after
        each one, counting tiles of tiled images and whole untiled images; an exception it
        raises (e.g. to cancel) stops the work before the next pass and propagates.
        """
        results: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ImageError(f"restore_rgb() takes uint8 HxWx3 arrays, got {img.dtype} {tuple(img.shape)}")
            if min(img.shape[:2]) < 1:
                raise ImageError(f"restore() got an empty image of shape {tuple(img.shape)}")
            by_shape.setdefault(img.shape[:2], []).append(i)
        step = None
        if progress is not None:
            counts = [0, 0]  # done, total
            for (h, w), idx in by_shape.items():
                tile = self._tile_size(h, w)
                counts[1] += len(idx) * (len(tile_boxes(h, w, tile, 0)) if tile else 1)

            def step(n: int) -> None:
                counts[0] += n
                progress(counts[0], counts[1])

            step(0)
        for (h, w), idx in by_shape.items():
            tile = self._tile_size(h, w)
            if tile:
                for i in idx:
                    results[i] = self._restore_tiled(images[i], tile, step)
                continue
            for chunk in self._batches(idx, h * w):
                res = self.run_batch(np.stack([images[i] for i in chunk]))
                for i, r in zip(chunk, res):
                    results[i] = r
                if step:
                    step(len(chunk))
        return results  # type: ignore[return-value]

    # --------------------------------------------------------------- public

    def restore(self, image, progress=None):
        """Restore one image; returns the same kind at x``scale`` size.

        ``image``: numpy uint8 (0-255) HxWx3 RGB, HxW gray, or HxWx4 RGBA; or a PIL image
        (any mode).  numpy in -> numpy uint8 out, PIL in -> PIL out.  Gray comes back as
        RGB; RGBA comes back as RGBA with the alpha plane upscaled bicubically
        (cv2.INTER_CUBIC).  In-memory PIL images are used as stored (no EXIF rotation;
        :func:`facesr.io.read_any` applies it when reading files).  ``progress(done, total)``
        is called per tile (or once for an untiled image) and may raise to cancel (see
        :meth:`restore_rgb`).
        """
        return self.restore_batch([image], progress=progress)[0]

    def restore_batch(self, images: Sequence, progress=None) -> list:
        """Restore a list of images (any kinds :meth:`restore` accepts); same-size ones share batches."""
        prepared = [split_alpha(im) for im in images]
        outs = self.restore_rgb([p[0] for p in prepared], progress=progress)
        return [join_alpha(o, alpha, kind, self.scale) for o, (_, alpha, kind) in zip(outs, prepared)]

    def restore_photo(self, image, **kwargs):
        """Restore every face of a whole photo; returns a :class:`facesr.faces.PhotoResult`
        (``.image`` upscaled x``upscale``, ``.faces`` the detections).  See :func:`facesr.faces.restore_photo`."""
        from ..faces import restore_photo
        return restore_photo(self, image, **kwargs)

    __call__ = restore

    def __repr__(self) -> str:
        extra = f", device={self.device}, channels_last={self.channels_last}" if self.backend == "torch" else ""
        extra = f", precision={self.precision}{extra}, tta={self.tta}"
        return (f"Restorer(backend={self.backend}{extra}, scale={self.scale}, tile={self.tile}, "
                f"tile_overlap={self.tile_overlap}, batch_size={self.batch_size})")
