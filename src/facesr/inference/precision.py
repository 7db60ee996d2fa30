"""The inference precision policy: ``auto`` | ``fp32`` | ``fp32-winograd`` | ``bf16`` | ``fp16``.

``auto`` picks, at run time, the fastest precision the hardware runs natively:

* CUDA: bf16 where the device supports it natively (Ampere and newer,
  ``torch.cuda.is_bf16_supported``), else fp16;
* CPU: bf16 when the CPU has AVX512-BF16 or AMX-BF16 (read from ``/proc/cpuinfo``);
  else, on x86 CPUs whose best PyTorch kernels are AVX2 (no AVX-512), ``fp32-winograd``
  when the PyTorch build has NNPACK and torch runs one thread or OpenMP waits passively
  (:func:`omp_waits_passively`; the facesr CLI arranges it for its inference commands);
  else fp32 (torch's bf16 on other CPUs runs through conversions, several times *slower*
  than fp32);
* anything else (MPS, ...) and the onnxruntime/openvino backends: fp32.

bf16/fp16 mean autocast around the forward pass (:class:`~facesr.inference.TorchRunner`);
the Restorer always clamps and rounds the output in fp32.
``fp32-winograd`` is fp32 arithmetic with the model's 3x3 convolutions of 64+
channels computed by NNPACK's Winograd algorithm (:mod:`.winograd`; speed and accuracy
in ``docs/performance.md``).  Plain fp32 is reproducible for a given thread count and is what
a challenge submission should use when it must be regenerated exactly.  The choice ``auto`` makes is logged once per process
and device on stderr, e.g. ``facesr: precision auto -> bf16 (CPU has AVX512-BF16)``.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import lru_cache

import torch

from ..errors import BadValueError
from . import winograd

PRECISIONS = ("auto", "fp32", "fp32-winograd", "bf16", "fp16")

#: autocast dtype of each explicit precision (None = plain fp32)
DTYPES = {"fp32": None, "fp32-winograd": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: the precision each value of the deprecated ``amp=`` keyword means
AMP_VALUES = {True: "bf16", False: "fp32", "none": "fp32", "fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}

# x86 flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic in oneDNN's kernels;
# aarch64 lists "bf16" (Armv8.6 BF16) under "Features".
_BF16_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16", "bf16": "Arm BF16"}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Feature flags of the first CPU in ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on Arm); empty if unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def bf16_feature_from_flags(flags: set[str]) -> str | None:
    """The native bf16 feature named by a set of CPU flags (see :func:`cpu_flags`), or None."""
    for flag in ("amx_bf16", "avx512_bf16", "bf16"):
        if flag in flags:
            return _BF16_FLAGS[flag]
    return None


@lru_cache(maxsize=1)
def cpu_bf16_feature() -> str | None:
    """The name of the CPU's native bf16 feature ("AVX512-BF16", "AMX-BF16", "Arm BF16"), or None.

    Reads ``/proc/cpuinfo`` (Linux); cross-checked with ``torch.backends.cpu.get_cpu_capability()``
    where that reports AVX512/AMX.  Cached: the CPU does not change while the process runs.
    """
    feature = bf16_feature_from_flags(cpu_flags())
    if feature is not None:
        return feature
    # no /proc/cpuinfo (macOS, Windows): torch's own dispatch level says at least AMX
    return "AMX-BF16" if "AMX" in torch_cpu_capability() else None


def torch_cpu_capability() -> str:
    """torch's CPU kernel level, upper case ("AVX2", "AVX512", "AVX512_AMX", "DEFAULT", ...); "" if unknown."""
    try:
        return str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # pragma: no cover - very old torch
        return ""


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16, AMX-BF16 or Arm BF16)."""
    return cpu_bf16_feature() is not None


def cpu_prefers_winograd() -> bool:
    """True on an x86 CPU whose best PyTorch kernels are AVX2 (no AVX-512, no AMX) when NNPACK works.

    That is where NNPACK's Winograd convolutions were measured faster than oneDNN's direct ones
    (``docs/performance.md``); on AVX-512 CPUs oneDNN has twice the vector width, so ``auto``
    does not assume the same there (``--precision fp32-winograd`` still runs it).
    """
    return torch_cpu_capability() == "AVX2" and winograd.nnpack_available()


def omp_waits_passively(environ=None) -> bool:
    """True when the environment tells OpenMP's idle threads to sleep rather than spin.

    libgomp's rules: ``GOMP_SPINCOUNT``, when set, decides (here: at most 10,000 spins counts as
    passive); otherwise ``OMP_WAIT_POLICY=passive``.  OpenMP reads them when torch is first
    imported, which this function cannot check: setting them later has no effect on OpenMP but
    would still make ``auto`` pick Winograd.  The ``facesr`` inference commands set
    ``OMP_WAIT_POLICY=PASSIVE`` before that unless it is already set.  With spinning threads
    (libgomp's default spins for milliseconds after every parallel region) the Winograd path's
    band threads share cores with the spinners and it ran slower than oneDNN (``docs/performance.md``).
    """
    env = os.environ if environ is None else environ
    if env.get("GOMP_SPINCOUNT", "").strip():
        try:
            return int(env["GOMP_SPINCOUNT"]) <= 10_000
        except ValueError:  # "infinity" or a typo: libgomp spins (or ignores it): not passive
            return False
    return env.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"


def cuda_supports_bf16(device: torch.device) -> bool:
    """True when the CUDA ``device`` runs bf16 natively (compute capability 8.0+)."""
    try:
        with torch.cuda.device(device):
            try:
                return bool(torch.cuda.is_bf16_supported(including_emulation=False))
            except TypeError:  # older torch: no including_emulation argument
                return bool(torch.cuda.is_bf16_supported())
    except Exception:  # pragma: no cover - a broken driver: be conservative
        return False


def auto_precision(device: torch.device, backend: str = "torch") -> tuple[str, str]:
    """(precision, reason) that ``auto`` resolves to for ``device`` and ``backend``."""
    if backend != "torch":
        return "fp32", f"the {backend} backend runs fp32, or the int8 of a quantized model file"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if cuda_supports_bf16(device):
            return "bf16", f"{name} supports bf16"
        return "fp16", f"{name} has no native bf16"
    if device.type == "cpu":
        feature = cpu_bf16_feature()
        if feature:
            return "bf16", f"CPU has {feature}"
        if cpu_prefers_winograd():
            threads = torch.get_num_threads()
            if threads == 1 or omp_waits_passively():
                return "fp32-winograd", (
                    f"AVX2 CPU without AVX512-BF16 or AMX-BF16, {threads} thread(s): fp32 "
                    "with NNPACK Winograd convolutions; --precision fp32 for "
                    "bit-reproducible output"
                )
            return "fp32", (
                "CPU has no AVX512-BF16 or AMX-BF16; Winograd convolutions would need one thread or "
                "OMP_WAIT_POLICY=PASSIVE set before torch is imported"
            )
        return "fp32", "CPU has no AVX512-BF16 or AMX-BF16"
    return "fp32", f"no reduced-precision policy for {device.type}"


_logged: set[tuple[str, str]] = set()


def log_choice(choice: str, reason: str, device: torch.device) -> None:
    """Print ``facesr: precision auto -> CHOICE (REASON)`` on stderr once per process and device.

    Under ``torchrun`` only rank 0 prints.
    """
    key = (str(device), choice)
    if key in _logged or os.environ.get("RANK", "0") != "0":
        return
    _logged.add(key)
    print(f"facesr: precision auto -> {choice} ({reason})", file=sys.stderr, flush=True)


def resolve_precision(
    precision: str | None, device: torch.device, backend: str = "torch", log: bool = True
) -> tuple[str, str]:
    """(fp32|fp32-winograd|bf16|fp16, reason) for a requested ``precision`` (None = fp32); ``auto`` is
    logged once.

    Raises :class:`~facesr.errors.BadValueError` for an unknown name, for anything but fp32 on a
    backend that only runs fp32, and for fp32-winograd off the CPU or without NNPACK.
    """
    precision = "fp32" if precision is None else str(precision).lower()
    if precision not in PRECISIONS:
        raise BadValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        choice, reason = auto_precision(device, backend)
        if log:
            log_choice(choice, reason, device)
        return choice, f"auto: {reason}"
    if backend != "torch" and precision != "fp32":
        raise BadValueError(f"precision {precision} applies to the torch backend only; {backend} runs fp32")
    if precision == "fp32-winograd":
        if device.type != "cpu":
            raise BadValueError(f"precision fp32-winograd runs on the CPU only (NNPACK), not on {device.type}")
        if not winograd.nnpack_available():
            raise BadValueError("precision fp32-winograd needs NNPACK, which this PyTorch build or CPU lacks; use fp32")
    return precision, "requested"


def precision_from_amp(amp, precision: str | None, stacklevel: int = 2) -> str | None:
    """The precision asked for by ``precision`` and the deprecated ``amp`` keyword (None = neither: fp32).

    ``amp``: None (not given), ``True``/``"bf16"``, ``"fp16"``, ``False``/``"none"`` (fp32).  Giving it
    warns (DeprecationWarning, ``stacklevel`` as :func:`warnings.warn`); ``amp=False`` never overrides
    ``precision`` (it was the old default); any other ``amp`` must agree with ``precision``.
    """
    if amp is None:
        return precision
    name = AMP_VALUES.get(amp) if isinstance(amp, (bool, str)) else None
    if name is None:
        raise BadValueError(f"amp must be one of True, False, 'none', 'bf16', 'fp16', got {amp!r}")
    warnings.warn(f"amp={amp!r} is deprecated; use precision={name!r}", DeprecationWarning, stacklevel=stacklevel + 1)
    if precision is None or name == "fp32":
        return precision if precision is not None else name
    if str(precision).lower() != name:
        raise BadValueError(f"amp={amp!r} (precision {name}) contradicts precision={precision!r}; give precision only")
    return name
