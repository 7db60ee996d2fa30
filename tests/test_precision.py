"""The precision policy (``--precision auto|fp32|fp32-winograd|bf16|fp16``): what ``auto`` picks, that it equals
the explicit choice, that it is logged once, and that bf16 costs no measurable PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facesr
from conftest import dev_val_pairs, precision_psnr, synthetic_pairs
from facesr.cli import main
from facesr.inference import Restorer
from facesr.inference import precision as P
from facesr.models import MSRResNet, save_weights


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return MSRResNet(mid_channels=8, num_blocks=1).eval()


@pytest.fixture(autouse=True)
def _fresh_log(monkeypatch):
    monkeypatch.setattr(P, "_logged", set())


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_cpu_flags_parsing():
    text = "processor : 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nprocessor : 1\nflags : fpu\n"
    assert {"avx512_bf16", "avx512f"} <= P.cpu_flags(text)
    assert P.cpu_flags("Features\t: fp asimd bf16 sve\n") == {"fp", "asimd", "bf16", "sve"}
    assert P.cpu_flags("nothing here") == set()


@pytest.mark.parametrize("feature, expected", [("AVX512-BF16", "bf16"), ("AMX-BF16", "bf16"), (None, "fp32")])
def test_auto_equals_the_explicit_choice_on_cpu(tiny, monkeypatch, capsys, feature, expected):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: feature)
    monkeypatch.setattr(P, "cpu_prefers_winograd", lambda: False)  # auto's Winograd choice: test_winograd.py
    auto = Restorer(tiny, device="cpu", precision="auto")
    assert auto.precision == expected and auto.channels_last
    explicit = Restorer(tiny, device="cpu", precision=expected)
    img = _img(12, 10)
    np.testing.assert_array_equal(auto.restore(img), explicit.restore(img))
    Restorer(tiny, device="cpu", precision="auto")  # a second auto Restorer does not log again
    err = capsys.readouterr().err.strip().splitlines()
    why = f"CPU has {feature}" if feature else "CPU has no AVX512-BF16 or AMX-BF16"
    assert err == [f"facesr: precision auto -> {expected} ({why})"]


@pytest.mark.parametrize(
    "capability, bf16, nnpack, expected",
    [
        ("AVX2", None, True, "fp32-winograd"),  # an AVX2 CPU (e.g. CI), one torch thread
        ("AVX2", None, False, "fp32"),  # ... whose PyTorch has no NNPACK
        ("AVX512", None, True, "fp32"),  # AVX-512 without native bf16
        ("AVX512", "AVX512-BF16", True, "bf16"),  # e.g. this project's development machine
        ("AVX512_AMX", "AMX-BF16", True, "bf16"),
    ],
)
def test_auto_on_simulated_cpus(monkeypatch, capability, bf16, nnpack, expected):
    """Both branches of the CPU policy through the real capability checks, whatever CPU runs the test."""
    monkeypatch.setattr(P, "torch_cpu_capability", lambda: capability)
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: bf16)
    monkeypatch.setattr(P.winograd, "nnpack_available", lambda: nnpack)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert P.auto_precision(torch.device("cpu"))[0] == expected
    finally:
        torch.set_num_threads(before)


def test_cli_choices_are_the_policy_names():
    from facesr.commands import PRECISION_CHOICES  # spelled out there so --help does not import torch

    assert list(P.PRECISIONS) == PRECISION_CHOICES


def test_auto_on_cuda_and_onnxruntime(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    cuda = torch.device("cuda:0")
    monkeypatch.setattr(P, "cuda_supports_bf16", lambda d: True)
    assert P.auto_precision(cuda) == ("bf16", "Fake GPU supports bf16")
    monkeypatch.setattr(P, "cuda_supports_bf16", lambda d: False)
    assert P.auto_precision(cuda) == ("fp16", "Fake GPU has no native bf16")
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: "AMX-BF16")
    assert P.auto_precision(torch.device("cpu"), backend="onnxruntime")[0] == "fp32"
    assert P.auto_precision(torch.device("mps"))[0] == "fp32"


def test_defaults_and_the_deprecated_amp(tiny, monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: "AVX512-BF16")
    assert Restorer(tiny, device="cpu").precision == "fp32"  # the low-level class stays explicit
    with pytest.warns(DeprecationWarning, match="amp=True is deprecated; use precision='bf16'"):
        assert Restorer(tiny, device="cpu", amp=True).precision == "bf16"
    with pytest.warns(DeprecationWarning):
        assert Restorer(tiny, device="cpu", amp="none").precision == "fp32"
    with pytest.warns(DeprecationWarning):
        assert Restorer(tiny, device="cpu", amp=False, precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="contradicts"), pytest.warns(DeprecationWarning):
        Restorer(tiny, device="cpu", amp=True, precision="fp16")
    with pytest.raises(ValueError, match="amp must be one of"):
        Restorer(tiny, device="cpu", amp="int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        Restorer(tiny, device="cpu", precision="int8")
    assert facesr.load(device="cpu").precision == "bf16"  # facesr.load defaults to auto
    with pytest.warns(DeprecationWarning, match="amp=False"):
        assert facesr.load(device="cpu", amp=False).precision == "fp32"
    with pytest.warns(DeprecationWarning, match="amp=True"):
        assert facesr.load(device="cpu", amp=True).precision == "bf16"
    assert facesr.load(device="cpu", precision="fp32").precision == "fp32"
    with pytest.warns(DeprecationWarning, match="Restorer.AMP is deprecated"):
        assert {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16} == Restorer.AMP


def test_cli_precision_and_amp_alias(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: None)
    monkeypatch.setattr(P, "cpu_prefers_winograd", lambda: False)
    save_weights(tmp_path / "m.safetensors", tiny)
    d = tmp_path / "in"
    d.mkdir()
    from PIL import Image

    Image.fromarray(_img(12, 10)).save(d / "a.png")
    base = ["predict", str(d), "--checkpoint", str(tmp_path / "m.safetensors"), "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "auto")]) == 0
    assert "precision auto -> fp32" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "bf16"), "--precision", "bf16"]) == 0
    assert main(base + ["--out", str(tmp_path / "amp"), "--amp"]) == 0
    assert "facesr predict: warning: --amp is deprecated; use --precision bf16" in capsys.readouterr().err
    assert (tmp_path / "amp" / "a.png").read_bytes() == (tmp_path / "bf16" / "a.png").read_bytes()
    assert main(base + ["--out", str(tmp_path / "x"), "--amp", "--precision", "fp32"]) == 2
    assert "contradicts --precision fp32" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "x"), "--backend", "onnxruntime", "--precision", "bf16"]) == 2
    assert "torch only" in capsys.readouterr().err


def test_bf16_matches_fp32_psnr_on_synthetic_faces():
    p32, p16 = precision_psnr(synthetic_pairs(2, crop=40), "bf16")  # crops: bf16 is slow without native bf16
    assert abs(p16 - p32) < 0.01, (p32, p16)


@pytest.mark.slow
def test_bf16_within_001_db_of_fp32_on_dev_val(shared_dir):
    p32, p16 = precision_psnr(dev_val_pairs(shared_dir, 4, crop=48), "bf16")
    assert abs(p16 - p32) < 0.01, (p32, p16)
