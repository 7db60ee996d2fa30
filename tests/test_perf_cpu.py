"""facesr.inference.precision: native-bf16 detection from /proc/cpuinfo (the --precision auto policy)."""

from __future__ import annotations

import platform

import pytest

from facesr.inference.precision import bf16_feature_from_flags, cpu_flags, cpu_supports_bf16

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 avx avx2 fma bmi2 vaes vpclmulqdq
"""
SPR = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm\n"
ARM_OLD = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull\n"


@pytest.mark.parametrize(
    "text,expected", [(ZEN3, False), (SPR, True), (ZEN4, True), (ARM, True), (ARM_OLD, False), ("", False)]
)
def test_cpu_supports_bf16_from_text(text, expected):
    assert (bf16_feature_from_flags(cpu_flags(text)) is not None) is expected


def test_cpu_flags_parses_first_cpu():
    assert {"avx2", "fma"} <= cpu_flags(ZEN3)
    assert cpu_flags("garbage without colon") == set()


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/cpuinfo")
def test_cpu_supports_bf16_matches_this_machine():
    flags = cpu_flags()
    assert cpu_supports_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert isinstance(cpu_supports_bf16(), bool)
