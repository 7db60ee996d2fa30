"""Winograd 3x3 convolutions on the CPU, through the NNPACK library inside PyTorch's CPU builds.

Why: on x86 CPUs without AVX-512, oneDNN's direct 3x3 convolution already runs close to the FMA
peak, so fp32 inference can only get faster with fewer multiplications.  Winograd's minimal
filtering (Lavin & Gray, 2016) computes a 3x3 convolution with about a quarter of them; NNPACK
implements it (F(6x6, 3x3)) with AVX2 kernels and ships inside the PyTorch CPU wheels, where
PyTorch's own dispatch prefers oneDNN.  Speed measurements: ``docs/performance.md``.

Numerics: still fp32, but a different order of operations, so **not bit-identical** to
``--precision fp32`` (which stays the choice for submissions that must be regenerated exactly);
the PSNR change on the dev-val sets is in ``docs/performance.md``.

Which convolutions: :func:`eligible` (3x3, stride 1, zero padding 1, no dilation or groups, and at
least ``MIN_CHANNEL_PRODUCT`` = 64 x 64 input x output channels; the 3-channel first and last layers
stay direct).  The converted model runs NCHW (NNPACK's layout; converting around each conv cost
more than it saved).  NNPACK runs each image of a batch on its own, with its own thread pool fixed
at one thread (:func:`nnpack_available`); :class:`WinogradConv2d` spreads bands of rows over
``torch.get_num_threads()`` threads itself.  Gradients, other devices and other dtypes fall back
to ``nn.Conv2d``.
"""

from __future__ import annotations

import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

#: smallest in_channels * out_channels routed to NNPACK (see the module docstring)
MIN_CHANNEL_PRODUCT = 64 * 64


_nnpack_state: bool | None = None  # None: not probed yet
_nnpack_lock = threading.Lock()


def nnpack_available() -> bool:
    """True when this PyTorch build has NNPACK and it initialised on this CPU (it needs AVX2 on x86).

    Also performs NNPACK's one-time set-up, without which its convolution fails, and makes its
    first convolution with ``torch`` on one thread: that fixes the size of NNPACK's own thread pool
    at one, and :class:`WinogradConv2d` spreads the work over ``torch.get_num_threads()`` threads
    itself (NNPACK's pool, spinning beside torch's OpenMP threads, made the whole model slower
    than oneDNN on two cores).  :func:`winograd_model` and :class:`WinogradConv2d` call it, so it
    always runs before their first NNPACK call.  Probed once per process, under a lock.
    """
    global _nnpack_state
    if _nnpack_state is not None:
        return _nnpack_state
    with _nnpack_lock:
        if _nnpack_state is None:
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                ok = bool(torch._nnpack_available())
                if ok:
                    x = torch.zeros(1, 8, 8, 8)
                    torch._nnpack_spatial_convolution(x, torch.zeros(8, 8, 3, 3), torch.zeros(8), (1, 1), (1, 1))
            except Exception:  # pragma: no cover - a build without the private entry points
                ok = False
            finally:
                torch.set_num_threads(threads)
            _nnpack_state = ok
    return _nnpack_state


def eligible(conv: nn.Module) -> bool:
    """True for a plain ``nn.Conv2d`` that :class:`WinogradConv2d` can stand in for (same shapes and
    semantics: 3x3, stride 1, zero padding 1, no dilation or groups) and that is wide enough to gain.

    Convs whose weight is computed (weight or spectral norm, parametrizations) or that carry hooks
    are left alone: the replacement would lose them.
    """
    return (
        type(conv) is nn.Conv2d
        and isinstance(conv.weight, nn.Parameter)
        and (conv.bias is None or isinstance(conv.bias, nn.Parameter))
        and not parametrize.is_parametrized(conv)
        and not (conv._forward_hooks or conv._forward_pre_hooks)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.in_channels * conv.out_channels >= MIN_CHANNEL_PRODUCT
    )


_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_executor_lock = threading.Lock()


def _workers(n: int) -> ThreadPoolExecutor:
    """A shared pool of at least ``n`` threads (they block while idle: no spinning)."""
    global _executor, _executor_size
    with _executor_lock:
        if _executor is None or _executor_size < n:
            if _executor is not None:
                _executor.shutdown(wait=False)  # its threads finish their jobs and exit
            _executor, _executor_size = ThreadPoolExecutor(n, thread_name_prefix="facesr-winograd"), n
        return _executor


def _forget_workers() -> None:  # a forked child has none of the parent's threads, and maybe held locks
    global _executor, _executor_size, _executor_lock, _nnpack_lock
    _executor, _executor_size, _executor_lock, _nnpack_lock = None, 0, threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _nnpack(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, rows_padded: bool = False) -> torch.Tensor:
    """NNPACK's 3x3 conv of one contiguous image (1, C, H, W) with zero padding 1 (only left and right
    when ``rows_padded``: ``x`` then holds its own top and bottom rows); no OpenMP inside.

    Grad mode is per thread: a pool thread would otherwise record autograd for the weights.
    """
    with torch.no_grad():
        return torch._nnpack_spatial_convolution(x, w, b, (0, 1) if rows_padded else (1, 1), (1, 1))


#: output rows of one NNPACK Winograd tile, F(6x6, 3x3)
TILE_ROWS = 6


def band_edges(h: int, parts: int) -> list[int]:
    """Row edges that split ``h`` output rows into at most ``parts`` bands, on multiples of
    :data:`TILE_ROWS`, so every band tiles its rows exactly as the whole image does and the output
    does not depend on the number of threads (bit-identical; tested).  (oneDNN's own convolutions do
    depend on it, by up to about 3e-5 on the 0-255 scale, so a whole model's output still can.)"""
    return sorted({0, h} | {min(h, round(h * k / parts / TILE_ROWS) * TILE_ROWS) for k in range(1, parts)})


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, stride 1, padding 1) whose inference forward runs NNPACK's Winograd.

    Same parameters and state-dict keys as ``nn.Conv2d``.  Input: float32 NCHW on the CPU, any value
    range.  Anything else (autograd, CUDA, bf16, ...) goes through ``nn.Conv2d.forward``.  With
    ``torch.get_num_threads()`` = T > 1 the work is split T ways, by image when the batch has at
    least T, else into up to T bands of output rows per image (:func:`band_edges`; each band reads
    its own two halo rows).  The result does not depend on T.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or w.dtype != torch.float32
            or x.dim() != 4
            or x.numel() == 0
            or not nnpack_available()
            or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)))
        ):
            return super().forward(x)
        x = x.contiguous()
        n, c, h, wd = x.shape
        threads = max(1, torch.get_num_threads())
        edges = band_edges(h, threads) if n < threads else [0, h]
        if n == 1 and len(edges) == 2:
            return _nnpack(x, w, b)
        out = torch.empty((n, self.out_channels, h, wd), dtype=x.dtype)
        src, dst = x.detach().numpy(), out.numpy()

        def run(job):  # numpy copies: no OpenMP threads spinning beside NNPACK's single-threaded calls
            i, r0, r1 = job
            if (r0, r1) == (0, h):
                dst[i] = _nnpack(x[i : i + 1], w, b).numpy()[0]
                return
            band = np.zeros((1, c, r1 - r0 + 2, wd), np.float32)  # output rows r0:r1, a halo row each side
            lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
            band[0, :, lo - r0 + 1 : hi - r0 + 1] = src[i, :, lo:hi]
            dst[i, :, r0:r1] = _nnpack(torch.from_numpy(band), w, b, rows_padded=True).numpy()[0]

        jobs = [(i, r0, r1) for i in range(n) for r0, r1 in zip(edges, edges[1:])]

        def run_all(share):
            for job in share:
                run(job)

        shares = [jobs[k::threads] for k in range(min(threads, len(jobs)))]  # one share per thread
        pool = _workers(threads - 1) if len(shares) > 1 else None
        futures = [pool.submit(run_all, share) for share in shares[1:]] if pool is not None else []
        run_all(shares[0])  # this thread's share
        for f in futures:
            f.result()
        return out


def _convert(module: nn.Module) -> int:
    n = 0
    for name, child in module.named_children():
        if eligible(child) and isinstance(child, nn.Conv2d):
            wc = WinogradConv2d(child.in_channels, child.out_channels, 3, 1, 1, bias=child.bias is not None)
            wc.weight, wc.bias = child.weight, child.bias  # share the (already copied) parameters
            wc.train(child.training)
            setattr(module, name, wc)
            n += 1
        else:
            n += _convert(child)
    return n


def winograd_model(model: nn.Module) -> tuple[nn.Module, int]:
    """(a copy of ``model`` with every :func:`eligible` conv as :class:`WinogradConv2d`, how many).

    The copy is NCHW-contiguous (NNPACK reads NCHW); ``model`` itself is not changed, so it still
    trains and exports as before.  ``(model, 0)`` when NNPACK is missing, when nothing is eligible,
    or when the model cannot be deep-copied (e.g. old-style ``weight_norm``).
    """
    if not nnpack_available() or not any(eligible(m) for m in model.modules()):
        return model, 0
    try:
        twin = copy.deepcopy(model)
    except Exception:  # tensors that refuse deepcopy: run the model as it is
        return model, 0
    twin = twin.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return twin, _convert(twin)
