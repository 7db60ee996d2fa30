"""The runner protocol (one runner per backend), the one batching rule, the layering of the modules and
the options that are refused rather than dropped."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import facesr
from conftest import REPO, strong_msrresnet
from facesr.batching import batch_cap, same_size_batches
from facesr.errors import BadValueError
from facesr.inference import Restorer, Runner, TorchRunner, make_runner
from facesr.inference.torch_runner import channels_last_input
from facesr.models import MSRResNet, save_weights


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return strong_msrresnet(mid=8, blocks=1)


def _onnx_runner(model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from facesr.inference import OnnxRuntimeRunner, export_onnx

    return OnnxRuntimeRunner.load(export_onnx(model, check=False))


def _openvino_runner(model):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from facesr.inference import export_onnx
    from facesr.inference.openvino import OpenVinoRunner

    return OpenVinoRunner.load(export_onnx(model, check=False), threads=1)


# ----------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_every_runner_keeps_the_contract(model, backend):
    runner = {
        "torch": lambda m: TorchRunner(m, device="cpu", precision="fp32"),
        "onnxruntime": _onnx_runner,
        "openvino": _openvino_runner,
    }[backend](model)
    assert isinstance(runner, Runner) and runner.backend == backend
    assert runner.scale == 4 and runner.receptive_field == model.receptive_field() and runner.precision == "fp32"
    x = np.random.default_rng(0).random((2, 3, 9, 7), dtype=np.float32)  # 0-1
    y = runner(x)  # numpy in, numpy out
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (2, 3, 36, 28)
    t = runner(torch.from_numpy(x))  # tensor in, tensor out, on the runner's device
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device == runner.device
    np.testing.assert_array_equal(t.numpy(), y)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(y - ref).max() < 1e-4  # unclamped, on the 0-1 scale, as the module gives it


def test_a_restorer_over_a_built_runner(model):
    runner = TorchRunner(model, device="cpu", precision="fp32")
    r = Restorer(runner, tta="flip")
    assert r.runner is runner and r.precision == "fp32" and r.tile_overlap == model.receptive_field()
    img = _img(12, 10, 1)
    np.testing.assert_array_equal(r.restore(img), Restorer(model, device="cpu", tta="flip").restore(img))
    with pytest.raises(BadValueError, match="precision cannot be changed on a TorchRunner"):
        Restorer(runner, precision="bf16")


def test_the_model_sees_the_same_layout_however_the_batch_was_built(model):
    """PyTorch runs NCHW-looking batches of one through other kernels (2e-5 apart on AVX-512): the runner
    always hands the model a fresh channels-last batch, so the caller's strides never show."""
    img = _img(20, 24, 3)
    for cl in (False, True):
        r = Restorer(model, device="cpu", channels_last=cl, precision="fp32")
        ref = r.predict_float(np.stack([img]))
        np.testing.assert_array_equal(r.predict_float(img[None]), ref)  # batch axis of stride 0
        np.testing.assert_array_equal(r.predict_float(np.broadcast_to(img, (1, 20, 24, 3))), ref)
        np.testing.assert_array_equal(r.restore(img), np.rint(ref[0]).astype(np.uint8))
    x = torch.rand(1, 3, 5, 6)
    y = channels_last_input(x)
    assert y.stride() == (90, 1, 18, 3) and torch.equal(x, y)
    assert channels_last_input(y) is y  # already laid out: no copy


# ----------------------------------------------------------------------------- options are refused, not dropped


def test_options_that_do_not_apply_are_errors(model, tmp_path):
    save_weights(tmp_path / "m.safetensors", MSRResNet(mid_channels=8, num_blocks=1))
    ckpt = tmp_path / "m.safetensors"
    with pytest.raises(TypeError):
        Restorer.from_checkpoint(ckpt, device="cpu", tiles=8)  # a typo of tile
    with pytest.raises(TypeError):
        facesr.load(ckpt, device="cpu", batchsize=2)
    with pytest.raises(BadValueError, match="threads apply to the onnxruntime and openvino"):
        Restorer.from_checkpoint(ckpt, device="cpu", threads=2)
    with pytest.raises(TypeError, match="not str"):
        make_runner("model.onnx")
    ort = _onnx_runner(model).model
    with pytest.raises(BadValueError, match="runs on the CPU"):
        Restorer(ort, device="cuda")
    with pytest.raises(BadValueError, match="channels_last applies to the torch backend"):
        Restorer(ort, channels_last=True)
    with pytest.raises(BadValueError, match="torch backend only"):
        Restorer(ort, precision="bf16")
    assert Restorer(ort, device="cpu", precision="auto").precision == "fp32"


def test_cli_refuses_a_device_for_the_cpu_backends(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from facesr.cli import main

    d = tmp_path / "in"
    d.mkdir()
    from PIL import Image

    Image.fromarray(_img(8, 8)).save(d / "a.png")
    assert main(["predict", str(d), "--out", str(tmp_path / "o"), "--backend", "onnxruntime", "--device", "cuda"]) == 2
    assert "--device cuda applies to --backend torch" in capsys.readouterr().err


# ----------------------------------------------------------------------------- batching


def test_batch_cap_and_same_size_batches():
    assert batch_cap(128, 128, 4, 256 * 256) == 4 and batch_cap(160, 160, 4, 256 * 256) == 2
    assert batch_cap(600, 600, 4, 256 * 256) == 1 and batch_cap(8, 8, 3, None) == 3
    sizes = [(2, 2), (2, 2), (3, 3), (2, 2), (2, 2), (2, 2)]
    items = list(enumerate(sizes))
    consecutive = same_size_batches(items, lambda it: it[1], batch_size=2, max_pixels=None)
    assert [[i for i, _ in b] for b in consecutive] == [[0, 1], [2], [3, 4], [5]]
    regrouped = same_size_batches(items, lambda it: it[1], batch_size=3, max_pixels=None, regroup=True)
    assert [[i for i, _ in b] for b in regrouped] == [[0, 1, 3], [4, 5], [2]]
    budget = same_size_batches(items, lambda it: it[1], batch_size=4, max_pixels=9, regroup=True)
    assert [[i for i, _ in b] for b in budget] == [[0, 1], [3, 4], [5], [2]]  # 9 // 4 = 2 per pass


def test_same_size_batches_reads_a_stream_only_as_needed():
    taken = []

    def stream():
        for i in range(5):
            taken.append(i)
            yield i

    it = same_size_batches(stream(), lambda i: (1, 1), batch_size=2, max_pixels=None)
    assert next(it) == [0, 1] and taken == [0, 1]  # a full batch goes at once, without reading ahead
    assert list(it) == [[2, 3], [4]]


def test_every_caller_packs_the_same_way(model, monkeypatch):
    """evaluate_pairs, Restorer.restore_rgb and restore_photo run the same passes for the same images."""
    from facesr.evaluation import evaluate_pairs

    r = Restorer(model, device="cpu", batch_size=3, precision="fp32")
    monkeypatch.setattr(Restorer, "MAX_BATCH_PIXELS", 2 * 16 * 16)
    passes = []
    real = r._forward
    monkeypatch.setattr(r, "_forward", lambda b, *gray: passes.append(b.shape[0]) or real(b, *gray))
    imgs = [_img(16, 16, s) for s in range(5)] + [_img(8, 8, 9)]
    r.restore_rgb(imgs)
    assert passes == [1, 2, 2, 1]  # 8x8: one pass of 1 (the 3 allowed); 16x16: 2 + 2 + 1
    passes.clear()
    evaluate_pairs(
        r, [(f"s{i}", im, np.zeros((im.shape[0] * 4, im.shape[1] * 4, 3), np.uint8)) for i, im in enumerate(imgs)]
    )
    assert sorted(passes) == [1, 1, 2, 2]


def test_restore_photo_reports_progress_per_forward_pass(model, monkeypatch):
    import faces_synth as S
    from facesr.faces import restore_photo

    lq, _, faces = S.make_photo([(0.5, 0.0, (60.0, 60.0)), (0.5, 0.0, (160.0, 60.0)), (0.5, 0.0, (260.0, 60.0))])
    r = Restorer(model, device="cpu", batch_size=3, precision="fp32")
    passes, seen = [], []
    real = r._forward
    monkeypatch.setattr(r, "_forward", lambda b, *gray: passes.append(b.shape[0]) or real(b, *gray))
    res = restore_photo(r, lq, detector=S.FakeDetector(faces), upscale=1, progress=lambda d, t: seen.append((d, t)))
    assert len(res.faces) == 3
    assert passes == [2, 1] and seen == [(2, 3), (3, 3)]  # 160x160 crops: two per 256x256-pixel pass


# ----------------------------------------------------------------------------- layering


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


def test_faces_build_on_inference_never_the_reverse():
    assert not any(m.startswith("facesr.faces") for m in _modules_after("import facesr.inference"))
    after_faces = _modules_after("import facesr.faces, facesr.evaluation, facesr.batching, facesr.io.alpha")
    assert "facesr.inference" not in after_faces and "torch" not in after_faces


def test_moved_helpers_are_the_same_objects():
    from facesr import distributed
    from facesr.inference import join_alpha, split_alpha
    from facesr.io import alpha
    from facesr.training import distributed as training_distributed

    assert split_alpha is alpha.split_alpha and join_alpha is alpha.join_alpha
    for name in ("DistInfo", "init_distributed", "barrier", "cleanup", "all_reduce_max_flag", "all_reduce_max_int"):
        assert getattr(training_distributed, name) is getattr(distributed, name)
    info = distributed.init_distributed("cpu")  # no torchrun: one process, nothing to join
    assert not info.enabled and distributed.gather_objects(info, 7) == [7]
