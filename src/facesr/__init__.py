"""facesr: blind face super-resolution (x4) that reproduces the MMagic MSRResNet recipe.

Quick use::

    import facesr
    restorer = facesr.load()            # the shipped model; or facesr.load("best.safetensors")
    sr = restorer.restore(image)        # numpy uint8 RGB or PIL image in, same kind out (x4)
"""

__version__ = "0.2.0"


def load(checkpoint=None, device="auto", ema=False, precision="auto", amp=None, **kwargs):
    """Return a :class:`facesr.inference.Restorer` for ``checkpoint`` (default: the shipped model).

    ``precision="auto"`` (default) runs bf16 where the hardware does so natively (CPUs with
    AVX512-BF16/AMX, CUDA devices with bf16), fp16 on older CUDA devices, ``fp32-winograd``
    (NNPACK Winograd convolutions, within float rounding of fp32) on AVX2 CPUs when torch runs one
    thread or ``OMP_WAIT_POLICY=PASSIVE`` was set before torch was imported, and fp32 elsewhere;
    pass ``precision="fp32"`` for bit-reproducible output.  ``tta="flip"`` averages the output
    with that of the mirrored input.  ``backend="onnxruntime"``/``"openvino"`` (with ``threads``)
    runs the model there in fp32.  Other ``kwargs`` go to :meth:`~facesr.inference.Restorer.from_checkpoint`
    and :class:`~facesr.inference.Restorer`; an unknown one is a TypeError.  ``amp`` is the deprecated
    spelling of ``precision`` (DeprecationWarning).
    """
    from .inference import Restorer
    from .inference.precision import precision_from_amp

    if amp is not None:
        precision = precision_from_amp(amp, None if precision == "auto" else precision, stacklevel=2)
    return Restorer.from_checkpoint(checkpoint, device=device, ema=ema, precision=precision, **kwargs)


def restore_video(path_in, path_out, **kwargs):
    """Restore the faces of a video file (the 'video' extra); see :func:`facesr.video.restore_video`."""
    from .video import restore_video as run

    return run(path_in, path_out, **kwargs)


__all__ = ["load", "restore_video", "__version__"]
