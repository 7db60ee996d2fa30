"""facesr: blind face super-resolution (x4) that reproduces the MMagic MSRResNet recipe.

Quick use::

    import facesr
    restorer = facesr.load()            # the shipped model; or facesr.load("best.safetensors")
    sr = restorer.restore(image)        # numpy uint8 RGB or PIL image in, same kind out (x4)
"""
__version__ = "0.1.0"


def load(checkpoint=None, device="auto", ema=False, **kwargs):
    """Return a :class:`facesr.inference.Restorer` for ``checkpoint`` (default: the shipped model)."""
    from .inference import Restorer
    return Restorer.from_checkpoint(checkpoint, device=device, ema=ema, **kwargs)


__all__ = ["load", "__version__"]
