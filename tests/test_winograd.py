"""``--precision fp32-winograd``: NNPACK's Winograd 3x3 convolutions (facesr.inference.winograd), what
``auto`` picks, and that the outputs stay within float rounding of fp32."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import facesr
from conftest import REPO, dev_val_pairs, precision_psnr, randomise_, synthetic_pairs
from facesr.cli import main
from facesr.errors import BadValueError
from facesr.inference import Restorer
from facesr.inference import precision as P
from facesr.inference import winograd as W
from facesr.io.images import read_rgb
from facesr.models import build_model, save_weights

needs_nnpack = pytest.mark.skipif(not W.nnpack_available(), reason="this PyTorch build or CPU has no NNPACK")


@pytest.fixture(autouse=True)
def _fresh_log(monkeypatch):
    monkeypatch.setattr(P, "_logged", set())


@pytest.fixture()
def threads():
    """Set torch's thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _wide_lqresnet(seed=0):
    """A small LQResNet whose body convs are wide enough for Winograd (96 channels), random weights."""
    torch.manual_seed(seed)
    return randomise_(build_model("lqresnet", mid_channels=96, num_blocks=1).eval(), seed, std=0.03)


def test_eligible_convolutions():
    assert W.eligible(nn.Conv2d(96, 96, 3, 1, 1))
    assert W.eligible(nn.Conv2d(64, 256, 3, 1, 1))
    assert W.eligible(nn.Conv2d(64, 64, 3, 1, 1))
    assert not W.eligible(nn.Conv2d(32, 96, 3, 1, 1))  # under 64 x 64
    assert not W.eligible(nn.Conv2d(3, 96, 3, 1, 1))
    assert not W.eligible(nn.Conv2d(96, 96, 3, 2, 1))
    assert not W.eligible(nn.Conv2d(96, 96, 3, 1, 2, dilation=2))
    assert not W.eligible(nn.Conv2d(96, 96, 3, 1, 1, groups=2))
    assert not W.eligible(nn.Conv2d(96, 96, 3, 1, 1, padding_mode="reflect"))
    assert not W.eligible(nn.Conv2d(96, 96, 1))
    # computed weights and hooks would be lost by the replacement
    assert not W.eligible(nn.utils.spectral_norm(nn.Conv2d(96, 96, 3, 1, 1)))
    assert not W.eligible(nn.utils.parametrizations.weight_norm(nn.Conv2d(96, 96, 3, 1, 1)))
    hooked = nn.Conv2d(96, 96, 3, 1, 1)
    hooked.register_forward_hook(lambda *a: None)
    assert not W.eligible(hooked)


def test_omp_wait_policy_parsing():
    assert P.omp_waits_passively({"OMP_WAIT_POLICY": "PASSIVE"})
    assert P.omp_waits_passively({"OMP_WAIT_POLICY": " passive "})
    assert not P.omp_waits_passively({"OMP_WAIT_POLICY": "active"})
    assert P.omp_waits_passively({"GOMP_SPINCOUNT": "1000"})
    assert P.omp_waits_passively({"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": "active"})  # libgomp: it decides
    assert not P.omp_waits_passively({"GOMP_SPINCOUNT": "300000"})
    assert not P.omp_waits_passively({"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": "passive"})
    assert not P.omp_waits_passively({"GOMP_SPINCOUNT": "infinity"})
    assert not P.omp_waits_passively({})


@pytest.mark.parametrize(
    "n_threads, env, expected",
    [(1, {}, "fp32-winograd"), (2, {}, "fp32"), (2, {"OMP_WAIT_POLICY": "PASSIVE"}, "fp32-winograd")],
)
def test_auto_picks_winograd_on_avx2_cpus(monkeypatch, threads, n_threads, env, expected):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: None)
    monkeypatch.setattr(P, "cpu_prefers_winograd", lambda: True)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    threads(n_threads)
    choice, why = P.auto_precision(torch.device("cpu"))
    assert choice == expected
    assert ("bit-reproducible" in why) if expected == "fp32-winograd" else ("OMP_WAIT_POLICY" in why)
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: "AMX-BF16")  # native bf16 still wins
    assert P.auto_precision(torch.device("cpu"))[0] == "bf16"
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: None)
    monkeypatch.setattr(P, "cpu_prefers_winograd", lambda: False)  # AVX-512 or no NNPACK: plain fp32
    assert P.auto_precision(torch.device("cpu"))[0] == "fp32"


def test_winograd_refused_where_it_cannot_run(monkeypatch):
    with pytest.raises(BadValueError, match="CPU only"):
        P.resolve_precision("fp32-winograd", torch.device("cuda"))
    with pytest.raises(BadValueError, match="torch backend only"):
        P.resolve_precision("fp32-winograd", torch.device("cpu"), backend="onnxruntime")
    monkeypatch.setattr(W, "nnpack_available", lambda: False)
    with pytest.raises(BadValueError, match="needs NNPACK"):
        P.resolve_precision("fp32-winograd", torch.device("cpu"))


@needs_nnpack
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 96, 37, 23), (3, 96, 20, 31), (2, 64, 3, 9), (1, 96, 1, 5)])
def test_winograd_conv_matches_direct_conv(threads, n_threads, shape):
    threads(n_threads)  # 2 threads: bands of rows (or whole images) on the pool
    g = torch.Generator().manual_seed(1)
    cin, cout = shape[1], 6144 // shape[1]  # 96 -> 64, 64 -> 96
    ref = nn.Conv2d(cin, cout, 3, 1, 1)
    wc = W.WinogradConv2d(cin, cout, 3, 1, 1)
    wc.load_state_dict(ref.state_dict())
    x = torch.rand(*shape, generator=g) * 2 - 0.5
    with torch.inference_mode():
        y, y_ref = wc(x), F.conv2d(x.double(), ref.weight.double(), ref.bias.double(), padding=1)
    assert y.shape == y_ref.shape and y.dtype == torch.float32
    err = (y.double() - y_ref).abs().max().item()
    assert err < 2e-4 * max(1.0, y_ref.abs().max().item()), err
    with torch.no_grad():  # also outside inference mode (the pool threads must not record autograd)
        np.testing.assert_allclose(wc(x).numpy(), y.numpy(), rtol=0, atol=1e-6)


def test_band_edges_sit_on_nnpack_tiles():
    assert W.band_edges(128, 2) == [0, 66, 128]
    assert W.band_edges(128, 3) == [0, 42, 84, 128]
    assert W.band_edges(5, 2) == [0, 5]  # too short to split
    for h in range(1, 60):
        for parts in (1, 2, 3, 4):
            e = W.band_edges(h, parts)
            assert e[0] == 0 and e[-1] == h and len(e) <= parts + 1
            assert all(a < b for a, b in zip(e, e[1:])) and all(x % W.TILE_ROWS == 0 for x in e[:-1])


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 96, 128, 40), (1, 64, 37, 23), (2, 96, 50, 31), (3, 64, 13, 20)])
def test_winograd_output_does_not_depend_on_the_thread_count(threads, shape):
    torch.manual_seed(0)
    wc = W.WinogradConv2d(shape[1], 64, 3, 1, 1)
    x = torch.rand(*shape)
    outs = []
    with torch.inference_mode():
        for t in (1, 2, 3, 4):
            threads(t)
            outs.append(wc(x))
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@needs_nnpack
def test_autograd_and_other_dtypes_fall_back_to_the_direct_conv():
    ref = nn.Conv2d(96, 96, 3, 1, 1)
    wc = W.WinogradConv2d(96, 96, 3, 1, 1)
    wc.load_state_dict(ref.state_dict())
    x = torch.rand(1, 96, 8, 8, requires_grad=True)
    y = wc(x)  # grad mode: nn.Conv2d.forward, bit-identical, and differentiable
    assert torch.equal(y, ref(x))
    y.sum().backward()
    assert x.grad is not None and wc.weight.grad is not None
    wc.weight.requires_grad_(False)  # only the bias trains: still autograd's path
    yb = wc(x.detach())
    assert yb.requires_grad
    yb.sum().backward()
    assert wc.bias.grad is not None
    with torch.inference_mode():  # an empty batch, as nn.Conv2d gives it
        assert wc(torch.rand(0, 96, 8, 8)).shape == (0, 96, 8, 8)
    with torch.no_grad():  # a leaf that requires grad, in a no-grad forward: Winograd, batch of 2 included
        np.testing.assert_allclose(wc(x).numpy(), ref(x).numpy(), atol=1e-4)
        x2 = torch.rand(2, 96, 8, 8, requires_grad=True)
        np.testing.assert_allclose(wc(x2).numpy(), ref(x2).numpy(), atol=1e-4)
        xd = x.detach().double()
        assert torch.equal(wc.double()(xd), ref.double()(xd))


@needs_nnpack
def test_winograd_model_is_a_converted_copy():
    model = _wide_lqresnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin, n = W.winograd_model(model)
    assert n == 4  # the block's two convs, conv_body and conv_up (96 -> 48); conv_first (3 -> 96) stays
    assert type(twin.trunk_net[0].conv1) is W.WinogradConv2d and type(model.trunk_net[0].conv1) is nn.Conv2d
    assert type(twin.conv_first) is nn.Conv2d and type(twin.conv_up) is W.WinogradConv2d
    assert list(twin.state_dict()) == list(before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert twin.receptive_field() == model.receptive_field()


@needs_nnpack
@pytest.mark.parametrize("n_threads", [1, 2])
def test_restorer_fp32_winograd_within_rounding_of_fp32(threads, n_threads):
    threads(n_threads)
    model = _wide_lqresnet()
    fast = Restorer(model, device="cpu", precision="fp32-winograd", batch_size=4)
    exact = Restorer(model, device="cpu", precision="fp32")
    assert fast.winograd_convs == 4 and not fast.channels_last and exact.winograd_convs == 0
    imgs = [np.random.default_rng(s).integers(0, 256, (21, 17, 3), dtype=np.uint8) for s in range(3)]
    a, b = fast.restore_batch(imgs), exact.restore_batch(imgs)  # one batch of three through the same path
    for x, y in zip(a, b):
        d = np.abs(x.astype(int) - y)
        assert d.max() <= 1 and (d > 0).mean() < 0.01
    fa = fast.predict_float(np.stack(imgs))
    fb = exact.predict_float(np.stack(imgs))
    assert np.abs(fa - fb).max() < 0.01  # 0-255 scale
    assert "precision=fp32-winograd" in repr(fast)


@needs_nnpack
def test_a_model_without_eligible_convs_runs_plain_fp32():
    torch.manual_seed(0)
    narrow = build_model("msrresnet", mid_channels=8, num_blocks=1).eval()
    r = Restorer(narrow, device="cpu", precision="fp32-winograd")
    assert r.winograd_convs == 0 and r.channels_last and r.model is narrow
    assert r.precision == "fp32" and "plain fp32" in r.precision_reason
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(r.restore(img), Restorer(narrow, device="cpu", precision="fp32").restore(img))


@needs_nnpack
def test_cli_predict_with_fp32_winograd(tmp_path, capsys):
    save_weights(tmp_path / "m.safetensors", _wide_lqresnet())
    d = tmp_path / "in"
    d.mkdir()
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(d / "a.png")
    base = ["predict", str(d), "--checkpoint", str(tmp_path / "m.safetensors"), "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "w"), "--precision", "fp32-winograd"]) == 0
    assert main(base + ["--out", str(tmp_path / "f"), "--precision", "fp32"]) == 0
    a, b = read_rgb(tmp_path / "w" / "a.png"), read_rgb(tmp_path / "f" / "a.png")
    assert a.shape == (48, 40, 3) and np.abs(a.astype(int) - b).max() <= 1
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "x"), "--backend", "onnxruntime", "--precision", "fp32-winograd"]) == 2
    assert "torch only" in capsys.readouterr().err


def test_cli_sets_a_passive_omp_wait_policy_for_inference_commands_only(tmp_path):
    """Before torch is imported, and never over the user's own setting."""
    import os

    code = (
        "import os, sys\nfrom facesr.cli import main\nmain(sys.argv[1:])\n"
        "print('POLICY', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    missing = str(tmp_path / "missing")

    def policy(*argv, user=None):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if user:
            env["OMP_WAIT_POLICY"] = user
        out = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
        ).stdout
        return [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("POLICY")]

    predict = ("predict", missing, "--out", str(tmp_path / "o"))  # fails fast: the folder is missing
    assert policy(*predict) == ["PASSIVE"]
    assert policy(*predict, user="ACTIVE") == ["ACTIVE"]
    assert policy(*predict, "--precision", "fp32") == ["None"]  # no Winograd: OpenMP's defaults
    assert policy(*predict, "--device", "cuda") == ["None"]
    assert policy("degrade", missing, str(tmp_path / "d")) == ["None"]  # not an inference command


@needs_nnpack
def test_winograd_matches_fp32_psnr_on_synthetic_faces():
    assert facesr.load(device="cpu", precision="fp32-winograd").winograd_convs == 26  # shipped: 24 + body + up
    p32, pw = precision_psnr(synthetic_pairs(2), "fp32-winograd")
    assert abs(pw - p32) < 1e-4, (p32, pw)  # measured: below 1e-6 dB


@needs_nnpack
@pytest.mark.slow
def test_winograd_within_001_db_of_fp32_on_dev_val(shared_dir):
    p32, pw = precision_psnr(dev_val_pairs(shared_dir, 4), "fp32-winograd")
    assert abs(pw - p32) < 1e-4, (p32, pw)  # the bound is 0.01 dB; measured below 1e-6 dB


@needs_nnpack
def test_work_is_shared_evenly_between_threads(threads, monkeypatch):
    """A batch of 4 on 2 threads: 2 images in the calling thread and 2 on the pool, not 1 and 3."""
    import threading

    calls = []
    real = W._nnpack

    def spy(*args, **kw):
        calls.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kw)

    monkeypatch.setattr(W, "_nnpack", spy)
    threads(2)
    wc = W.WinogradConv2d(64, 64, 3, 1, 1)
    with torch.inference_mode():
        wc(torch.rand(4, 64, 10, 10))
    assert sorted(calls) == [False, False, True, True]
    calls.clear()
    with torch.inference_mode():
        wc(torch.rand(1, 64, 30, 10))  # one image: two bands of rows
    assert sorted(calls) == [False, True]


@needs_nnpack
def test_the_converted_model_really_runs_nnpack(monkeypatch):
    calls = []
    real = W._nnpack
    monkeypatch.setattr(W, "_nnpack", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = Restorer(_wide_lqresnet(), device="cpu", precision="fp32-winograd")
    r.restore(np.zeros((12, 9, 3), np.uint8))
    assert len(calls) == 4  # one call per converted conv (one image, one thread)


@needs_nnpack
def test_models_that_cannot_be_converted_still_run(monkeypatch):
    """weight_norm'd, spectral_norm'd or hooked convs are left to oneDNN; the rest still convert."""
    model = _wide_lqresnet()
    block = model.trunk_net[0]
    block.conv1 = nn.utils.spectral_norm(block.conv1)
    block.conv2.register_forward_pre_hook(lambda *a: None)
    twin, n = W.winograd_model(model.eval())
    assert n == 2  # conv_body and conv_up
    img = np.random.default_rng(0).integers(0, 256, (10, 9, 3), dtype=np.uint8)
    out = Restorer(model, device="cpu", precision="fp32-winograd").restore(img)
    assert out.shape == (40, 36, 3)


def test_winograd_works_in_a_fresh_process_without_probing_first():
    """winograd_model alone must set NNPACK up (and pin its pool) before the first convolution."""
    code = (
        "import torch\nfrom facesr.inference import winograd as W\n"
        "m, n = W.winograd_model(torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, 1, 1)).eval())\n"
        "x = torch.rand(2, 64, 9, 7)\n"
        "with torch.inference_mode():\n"
        "    d = (m(x) - torch.nn.functional.conv2d(x, m[0].weight, m[0].bias, padding=1)).abs().max()\n"
        "print('OK', n, float(d) < 1e-4 if n else W.nnpack_available())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    ok = out.stdout.split()
    assert ok[0] == "OK" and ok[2] == ("True" if ok[1] == "1" else "False"), out.stdout
