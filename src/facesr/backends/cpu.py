"""What the CPU can do natively: used to pick bf16 or fp32 on CPU (``--precision auto``)."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache

# x86 flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic in oneDNN's kernels:
# AVX512-BF16 (Cooper Lake, Zen 4+) or AMX-BF16 (Sapphire Rapids+).  aarch64 lists "bf16" (Armv8.6 BF16).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM).

    ``cpuinfo``: the file's text (for tests); empty set when it cannot be read.
    """
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


@lru_cache(maxsize=1)
def _macos_arm_bf16() -> bool:
    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                             timeout=2)
        return out.stdout.strip() == "1"
    except (OSError, subprocess.SubprocessError):
        return False


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm).

    On Linux this reads ``/proc/cpuinfo`` (or the given text); on macOS it asks ``sysctl``;
    elsewhere it returns False.  Without native support torch's bf16 autocast on CPU still
    runs, but through conversions, and is usually no faster than fp32.
    """
    if cpuinfo is not None or platform.system() == "Linux":
        return bool(cpu_flags(cpuinfo) & BF16_FLAGS)
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return _macos_arm_bf16()
    return False
