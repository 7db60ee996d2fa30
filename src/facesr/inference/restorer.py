"""Run a model on images: :class:`Restorer`, the one forward path of facesr.

Pixel conventions
-----------------
* Inputs and outputs of :meth:`Restorer.restore` are **uint8, 0-255** (numpy
  arrays) or PIL images.  RGB is HxWx3, gray HxW (or HxWx1), RGBA HxWx4.
* The network sees float32 NCHW on the **0-1 scale** (``uint8 / 255``), exactly
  as in training.  :meth:`Restorer.predict_float` returns its output clamped to
  [0, 1] and multiplied by 255, **unrounded** (what evaluation scores);
  :meth:`Restorer.run_batch` rounds that half-to-even to uint8, so ``restore``
  equals ``np.rint(predict_float(...))`` for the same batch.

Who does what
-------------
A :mod:`runner <.runner>` runs the model (:class:`~.torch_runner.TorchRunner`: device, precision,
Winograd, memory layout; :class:`~.onnx.OnnxRuntimeRunner`, :class:`~facesr.backends.openvino.OpenVinoRunner`).
The Restorer converts uint8 to float and back, averages flip test-time augmentation, clamps and
rounds (all in :meth:`Restorer._forward`, the one forward path that evaluation, the trainer's
validation, predict, serve, demo and whole-photo restoration go through), batches
(:func:`facesr.batching.same_size_batches`), tiles (:mod:`.tiling`) and keeps the alpha plane
(:mod:`facesr.io.alpha`).

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

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import assets
from ..batching import MAX_BATCH_PIXELS, same_size_batches
from ..errors import BadValueError, ImageError
from ..io.alpha import join_alpha, split_alpha
from .precision import DTYPES, precision_from_amp
from .runner import Runner, make_runner
from .tiling import tile_boxes

Progress = Callable[[int, int], None]


class _DeprecatedAMP:
    """``Restorer.AMP``: the old amp-name -> autocast-dtype map, now :data:`facesr.inference.precision.DTYPES`."""

    def __get__(self, obj, owner=None) -> dict:
        warnings.warn(
            "Restorer.AMP is deprecated; use facesr.inference.precision.DTYPES (keys: precision names)",
            DeprecationWarning,
            stacklevel=2,
        )
        return {"none": DTYPES["fp32"], "bf16": DTYPES["bf16"], "fp16": DTYPES["fp16"]}


def is_gray(batch: np.ndarray) -> np.ndarray:
    """Per item of a uint8 (N, h, w, 3) batch: True when its three channels are equal (a gray image)."""
    return np.all((batch[..., 0] == batch[..., 1]) & (batch[..., 1] == batch[..., 2]), axis=(1, 2))


class Restorer:
    """Run a x4 super-resolution model on images of any size.

    Args:
        model: an ``nn.Module`` mapping float (N, 3, h, w) 0-1 to (N, 3, s*h, s*w) (run by a
            :class:`~facesr.inference.TorchRunner`), an :class:`~facesr.inference.OnnxModel` or
            :class:`~facesr.backends.openvino.OpenVinoModel` (float32 NCHW 0-1 numpy in and out, on the
            CPU), or an already built :class:`~facesr.inference.Runner`.  A module is put in eval mode
            and moved to ``device`` (in place).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ... (torch backend;
            the others run on the CPU and refuse any other device).
        precision: ``"auto"``, ``"fp32"``, ``"fp32-winograd"``, ``"bf16"`` or ``"fp16"`` (see
            :mod:`facesr.inference.precision`): ``auto`` picks bf16 on CPUs with native bf16 and on CUDA
            devices that support it, fp16 on older CUDA devices, fp32-winograd on AVX2 CPUs (x86 without
            AVX-512) whose PyTorch has NNPACK when torch runs one thread or OpenMP waits passively, fp32
            elsewhere and always for onnxruntime/openvino (the choice is logged once).  bf16/fp16
            autocast the forward pass; clamping and rounding stay fp32.  fp32-winograd runs a copy of
            the model whose 3x3 convs of 64+ channels use NNPACK (:mod:`facesr.inference.winograd`),
            within about 3e-6 of fp32 but not bit-identical; a model with no such conv runs plain fp32
            (``precision`` then reads ``"fp32"``).  None (the default here) = fp32;
            :func:`facesr.load` defaults to ``"auto"``.
        amp: deprecated (DeprecationWarning) spelling of ``precision``: ``True``/``"bf16"`` = bf16,
            ``"fp16"``, ``False``/``"none"`` = fp32.
        channels_last: keep the model's weights channels-last (torch backend; default True there).
        tta: test-time augmentation: None/``"none"``, or ``"flip"``: the model's float output on
            the input and on its horizontal flip (flipped back) are averaged before clamping and
            rounding (twice the compute).  Applies inside every forward pass, so tiling is unchanged.
        tile: LQ core tile size in pixels; 0 = no tiling, except automatic tiling of
            images above :attr:`AUTO_TILE_PIXELS` LQ pixels (see the module docstring).
        tile_overlap: LQ pixels of context around each tile (cropped from the output); None = the
            model's receptive field (``2 * num_blocks + 4`` for MSRResNet; read from the metadata
            of a facesr ONNX file), which makes tiled output equal untiled output up to float rounding.
        batch_size: most images (or tiles) per forward pass; several images (or tiles) share
            a pass only while their LQ pixels total at most :attr:`MAX_BATCH_PIXELS` (256 x 256,
            i.e. four 128 x 128 faces).
    """

    AUTO_TILE_PIXELS = 512 * 512
    AUTO_TILE = 256
    MIN_TILE = 8
    MAX_BATCH_PIXELS = MAX_BATCH_PIXELS
    AMP = _DeprecatedAMP()
    TTA = ("none", "flip")
    BACKENDS = ("torch", "onnxruntime", "openvino")

    def __init__(
        self,
        model,
        device: str | torch.device = "auto",
        amp: bool | str | None = None,
        channels_last: bool | None = None,
        tile: int = 0,
        tile_overlap: int | None = None,
        batch_size: int = 4,
        precision: str | None = None,
        tta: str | None = None,
    ):
        if tile < 0:
            raise BadValueError(f"tile size must be >= 0, got {tile}")
        if batch_size < 1:
            raise BadValueError(f"batch size must be >= 1, got {batch_size}")
        tta = "none" if tta is None else str(tta).lower()
        if tta not in self.TTA:
            raise BadValueError(f"tta must be one of {', '.join(self.TTA)}, got {tta!r}")
        precision = precision_from_amp(amp, precision, stacklevel=2)
        self.runner: Runner = make_runner(model, device=device, precision=precision, channels_last=channels_last)
        if tile_overlap is None:  # auto: the receptive field, so tiles match an untiled run
            if self.runner.receptive_field is None:
                raise BadValueError(f"{type(model).__name__} has no receptive_field(); give the tile overlap")
            tile_overlap = self.runner.receptive_field
        if tile_overlap < 0:
            raise BadValueError(f"tile overlap must be >= 0, got {tile_overlap}")
        self._check_tile_floor(int(tile), int(tile_overlap))
        self.tta = tta
        self.tile, self.tile_overlap, self.batch_size = int(tile), int(tile_overlap), int(batch_size)
        self._pass_bytes: int | None = None  # bytes per LQ pixel of a forward pass, estimated when first needed

    def _check_tile_floor(self, tile: int, overlap: int) -> None:
        """BadValueError below :meth:`min_tile`: each tile pays ``2 * overlap`` pixels of context, so tiny
        tiles multiply the work (a 1-pixel tile with the shipped model's 28-pixel context runs 3,249x)."""
        floor = self.min_tile(overlap)
        if 0 < tile < floor:
            rf = self.runner.receptive_field
            why = f"half the model's {rf}-pixel receptive field" if rf is not None else "the smallest tile"
            raise BadValueError(
                f"tile size {tile} is below the floor of {floor} LQ pixels ({why}: smaller tiles spend most of "
                f"each pass on overlap); use {floor} or more, or 0 for automatic tiling"
            )

    def min_tile(self, overlap: int | None = None) -> int:
        """The smallest tile size allowed: half the receptive field (at least :attr:`MIN_TILE`), which keeps
        a tile's work within 25x its core's."""
        rf = self.runner.receptive_field
        rf = rf if rf is not None else (self.tile_overlap if overlap is None else overlap)
        return max(self.MIN_TILE, -(-rf // 2))

    # --------------------------------------------------------------- what the runner decided

    @property
    def scale(self) -> int:
        """Output pixels per input pixel along each side."""
        return self.runner.scale

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def model(self):
        """What runs: the module (a Winograd copy for fp32-winograd), or the OnnxModel/OpenVinoModel."""
        return self.runner.model

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def precision_reason(self) -> str:
        return getattr(self.runner, "precision_reason", "")

    @property
    def channels_last(self) -> bool:
        return bool(getattr(self.runner, "channels_last", False))

    @property
    def winograd_convs(self) -> int:
        """Convolutions running NNPACK's Winograd (precision fp32-winograd)."""
        return int(getattr(self.runner, "winograd_convs", 0))

    # --------------------------------------------------------------- construction

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        ema: bool = False,
        backend: str = "torch",
        opset: int | None = None,
        threads: int | None = None,
        **kw,
    ) -> Restorer:
        """Load a checkpoint (any format :func:`facesr.models.load_model` reads; None = shipped model).

        ``backend="onnxruntime"`` or ``"openvino"`` exports the loaded model to ONNX in memory (``opset``,
        default 17) and runs it there in fp32 on the CPU with ``threads`` threads; ``precision`` auto
        means fp32 there, and bf16/fp16, ``channels_last`` or a device other than the CPU are errors.
        ``kw`` go to :class:`Restorer` (an unknown one is a TypeError).
        """
        from ..models.weights import load_model

        if backend not in cls.BACKENDS:
            raise BadValueError(f"backend must be one of {', '.join(cls.BACKENDS)}, got {backend!r}")
        if backend == "torch" and (opset is not None or threads is not None):
            raise BadValueError("opset and threads apply to the onnxruntime and openvino backends, not to torch")
        path = assets.shipped_checkpoint() if checkpoint is None else Path(checkpoint)
        model, _ = load_model(path, ema=ema)
        if backend == "torch":
            return cls(model, device=device, **kw)
        from .onnx import OnnxModel, export_onnx

        onnx_bytes = export_onnx(model, opset=17 if opset is None else opset, check=False)
        if backend == "onnxruntime":
            return cls(OnnxModel(onnx_bytes, threads=threads), device=device, **kw)
        from .openvino import OpenVinoModel

        return cls(OpenVinoModel(onnx_bytes, threads=threads), device=device, **kw)

    @classmethod
    def from_onnx(
        cls, path: str | os.PathLike | bytes, threads: int | None = None, providers: Sequence[str] | None = None, **kw
    ) -> Restorer:
        """Run an exported ONNX model (float32 NCHW 0-1 in, as :func:`export_onnx` writes) with onnxruntime;
        ``kw`` go to :class:`Restorer`."""
        from .onnx import OnnxModel

        return cls(OnnxModel(path, threads=threads, providers=providers), **kw)

    @classmethod
    def from_openvino(cls, path: str | os.PathLike, threads: int | None = None, **kw) -> Restorer:
        """Run an OpenVINO IR (``.xml`` + ``.bin``, as ``facesr export --openvino`` writes, fp32 or int8)
        or an ``.onnx`` file with OpenVINO's CPU plugin (needs the ``openvino`` extra); ``kw`` go to
        :class:`Restorer`."""
        from .openvino import OpenVinoModel

        return cls(OpenVinoModel(path, threads=threads), **kw)

    # --------------------------------------------------------------- core: the one forward path

    def _forward(self, batch: np.ndarray, gray: np.ndarray | None = None) -> torch.Tensor:
        """uint8 (N, h, w, 3) 0-255 -> float32 (N, s*h, s*w, 3) 0-255 tensor on the runner's device,
        clamped, unrounded.  Call it under ``torch.inference_mode()``.

        Gray in, gray out: an item whose input is gray (``gray[i]``; default: its three channels are
        equal) gets the mean of the output's channels in all three, so a black-and-white photo does
        not come back tinted.  Pixel-wise, so tiles of a gray image (``gray`` given for the whole
        image) give what the untiled image gives."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ImageError(f"the model takes uint8 (N, h, w, 3) batches, got {batch.dtype} {tuple(batch.shape)}")
        batch = np.require(batch, requirements=("C_CONTIGUOUS", "WRITEABLE"))  # torch wants writable memory
        x = torch.from_numpy(batch).to(self.runner.device).permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        y = self.runner(x)
        if self.tta == "flip":  # average with the prediction of the mirrored input, mirrored back
            y = y.add_(self.runner(x.flip(3)).flip(3)).mul_(0.5)
        y = y.clamp_(0, 1).mul_(255.0).permute(0, 2, 3, 1)
        mask = is_gray(batch) if gray is None else np.asarray(gray, bool)
        if mask.any():
            idx = torch.from_numpy(np.flatnonzero(mask)).to(y.device)
            y[idx] = y[idx].mean(dim=3, keepdim=True).expand(-1, -1, -1, 3)
        return y

    def predict_float(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass, no tiling: uint8 (N, h, w, 3) 0-255 -> float32 (N, s*h, s*w, 3) 0-255,
        clamped, **not rounded** (the reference evaluation convention)."""
        with torch.inference_mode():
            y = self._forward(batch).cpu().numpy()
        return np.ascontiguousarray(y, dtype=np.float32)

    def run_batch(self, batch: np.ndarray, gray: np.ndarray | None = None) -> np.ndarray:
        """One forward pass, no tiling: uint8 (N, h, w, 3) 0-255 -> uint8 (N, s*h, s*w, 3) 0-255.

        Equals ``np.rint(predict_float(batch))`` (half to even); rounded on the device, so only
        uint8 crosses back to the host.
        """
        with torch.inference_mode():
            y = self._forward(batch, gray).round_().to(torch.uint8).cpu().numpy()
        return np.ascontiguousarray(y)

    # --------------------------------------------------------------- tiling and batching

    def _tile_size(self, h: int, w: int) -> int:
        """The core tile size for an ``h`` x ``w`` LQ image (0 = untiled)."""
        if self.tile > 0:
            return self.tile if (h > self.tile or w > self.tile) else 0
        return self.AUTO_TILE if h * w > self.AUTO_TILE_PIXELS else 0

    def _batches(self, items: list, size: Callable) -> list[list]:
        """``items`` regrouped into forward passes (:func:`facesr.batching.same_size_batches`)."""
        return list(same_size_batches(items, size, self.batch_size, self.MAX_BATCH_PIXELS, regroup=True))

    def _restore_tiled(self, img: np.ndarray, tile: int, step: Callable[[int], None] | None = None) -> np.ndarray:
        """One uint8 RGB image (0-255) restored tile by tile; ``step(n)`` after each pass of n tiles."""
        h, w = img.shape[:2]
        s = self.scale
        out = np.empty((h * s, w * s, 3), np.uint8)
        boxes = tile_boxes(h, w, tile, self.tile_overlap)
        gray = bool(is_gray(img[None])[0])  # decided for the whole image, not per tile
        for chunk in self._batches(boxes, lambda b: (b[1][1] - b[1][0], b[1][3] - b[1][2])):
            res = self.run_batch(np.stack([img[c[0] : c[1], c[2] : c[3]] for _, c in chunk]), np.full(len(chunk), gray))
            for (core, ctx), r in zip(chunk, res):
                oy, ox = (core[0] - ctx[0]) * s, (core[2] - ctx[2]) * s
                ch, cw = (core[1] - core[0]) * s, (core[3] - core[2]) * s
                out[core[0] * s : core[1] * s, core[2] * s : core[3] * s] = r[oy : oy + ch, ox : ox + cw]
            if step:
                step(len(chunk))
        return out

    def _largest_pass(self, images: Sequence[np.ndarray]) -> tuple[int, tuple[int, int]]:
        """``(LQ pixels, (h, w) of the largest piece)`` of the biggest forward pass restoring ``images`` takes:
        one untiled image or tile with its overlap, or a batch of smaller ones (at most MAX_BATCH_PIXELS)."""
        shape = (0, 0)
        for img in images:
            h, w = img.shape[:2]
            tile = self._tile_size(h, w)
            if tile:
                h, w = min(h, tile + 2 * self.tile_overlap), min(w, tile + 2 * self.tile_overlap)
            if h * w > shape[0] * shape[1]:
                shape = (h, w)
        pixels = shape[0] * shape[1]
        if self.batch_size > 1 and len(images) > 1:
            pixels = max(pixels, self.MAX_BATCH_PIXELS)
        return pixels, shape

    def _check_memory(self, images: Sequence[np.ndarray]) -> None:
        """BadValueError (one line) before any pass when the largest pass cannot fit in memory
        (:mod:`facesr.inference.memory`)."""
        if not images:
            return
        from .memory import bytes_per_lq_pixel, check_pass_fits

        if self._pass_bytes is None:
            self._pass_bytes = bytes_per_lq_pixel(self.runner, tta=self.tta == "flip")
        pixels, shape = self._largest_pass(images)
        hint = "give a smaller tile size (predict --tile N; 0 = automatic 256-pixel tiles)"
        check_pass_fits(self.runner, pixels * self._pass_bytes, shape, hint)

    def _progress_step(self, images: Sequence[np.ndarray], progress: Progress | None) -> Callable[[int], None] | None:
        """A ``step(n)`` that counts passes (tiles of tiled images, whole untiled images) into ``progress``."""
        if progress is None:
            return None
        total = 0
        for img in images:
            tile = self._tile_size(*img.shape[:2])
            total += len(tile_boxes(img.shape[0], img.shape[1], tile, 0)) if tile else 1
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        return step

    def restore_rgb(self, images: Sequence[np.ndarray], progress: Progress | None = None) -> list[np.ndarray]:
        """uint8 RGB HxWx3 arrays (0-255) -> uint8 RGB x``scale`` arrays, same order.

        Same-size images are batched (``batch_size``); big ones are tiled.  ``progress``, if
        given, is called as ``progress(done, total)`` before the first forward pass and after
        each one, counting tiles of tiled images and whole untiled images; an exception it
        raises (e.g. to cancel) stops the work before the next pass and propagates.
        """
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ImageError(f"restore_rgb() takes uint8 HxWx3 arrays, got {img.dtype} {tuple(img.shape)}")
            if min(img.shape[:2]) < 1:
                raise ImageError(f"restore() got an empty image of shape {tuple(img.shape)}")
        self._check_memory(images)
        results: list[np.ndarray | None] = [None] * len(images)
        step = self._progress_step(images, progress)
        if step:
            step(0)
        untiled = [i for i, img in enumerate(images) if not self._tile_size(*img.shape[:2])]
        for chunk in self._batches(untiled, lambda i: images[i].shape[:2]):
            for i, r in zip(chunk, self.run_batch(np.stack([images[i] for i in chunk]))):
                results[i] = r
            if step:
                step(len(chunk))
        for i, img in enumerate(images):
            if results[i] is None:
                results[i] = self._restore_tiled(img, self._tile_size(*img.shape[:2]), step)
        return results  # type: ignore[return-value]

    # --------------------------------------------------------------- public

    def restore(self, image, progress: Progress | None = None):
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

    def restore_batch(self, images: Sequence, progress: Progress | None = None) -> list:
        """Restore a list of images (any kinds :meth:`restore` accepts); same-size ones share batches."""
        prepared = [split_alpha(im) for im in images]
        outs = self.restore_rgb([p[0] for p in prepared], progress=progress)
        return [join_alpha(o, alpha, kind, self.scale) for o, (_, alpha, kind) in zip(outs, prepared)]

    def restore_photo(self, image, **kwargs):
        """Restore every face of a whole photo; returns a :class:`facesr.faces.PhotoResult`
        (``.image`` upscaled x``upscale``, ``.faces`` the detections).  See :func:`facesr.faces.restore_photo`.

        A convenience only: :mod:`facesr.faces` builds on this module, never the reverse, so the
        pipeline is imported when called.
        """
        from ..faces.photo import restore_photo

        return restore_photo(self, image, **kwargs)

    __call__ = restore

    def __repr__(self) -> str:
        extra = f", device={self.device}, channels_last={self.channels_last}" if self.backend == "torch" else ""
        extra = f", precision={self.precision}{extra}, tta={self.tta}"
        return (
            f"Restorer(backend={self.backend}{extra}, scale={self.scale}, tile={self.tile}, "
            f"tile_overlap={self.tile_overlap}, batch_size={self.batch_size})"
        )
