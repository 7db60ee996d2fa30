"""Inference is bounded before it allocates (issue 21): a floor on the tile size tied to the receptive
field, and a memory estimate of the largest forward pass checked against what the machine has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import strong_msrresnet, write_rgb_png
from facesr.cli import main
from facesr.errors import BadValueError
from facesr.inference import Restorer
from facesr.inference import memory as mem
from facesr.models import LQResNet, MSRResNet, save_weights

pytestmark = pytest.mark.timeout(120)


def _restorer(model=None, **kw) -> Restorer:
    return Restorer(model or strong_msrresnet(mid=8, blocks=6), device="cpu", precision="fp32", **kw)


class _Counting:
    """A runner that forwards to ``inner`` and records each pass's batch size."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x):
        self.calls.append(int(x.shape[0]))
        return self.inner(x)


def _counting(r: Restorer) -> list[int]:
    """Count the Restorer's forward passes."""
    r.runner = _Counting(r.runner)
    return r.runner.calls


# ----------------------------------------------------------------------------- the tile floor


def test_tile_floor_is_half_the_receptive_field():
    r = _restorer()  # 6 blocks: receptive field 2 * 6 + 4 = 16
    assert r.runner.receptive_field == 16 and r.min_tile() == 8
    big = _restorer(strong_msrresnet(mid=8, blocks=14))  # receptive field 32
    assert big.min_tile() == 16
    with pytest.raises(BadValueError, match=r"tile size 15 is below the floor of 16 LQ pixels .*32-pixel"):
        _restorer(strong_msrresnet(mid=8, blocks=14), tile=15)
    for ok in (0, 16, 17, 512):
        assert _restorer(strong_msrresnet(mid=8, blocks=14), tile=ok).tile == ok


def test_tile_floor_has_a_minimum_for_small_models():
    tiny = _restorer(MSRResNet(mid_channels=8, num_blocks=1))  # receptive field 6 -> 3, raised to MIN_TILE
    assert tiny.min_tile() == Restorer.MIN_TILE == 8
    with pytest.raises(BadValueError, match="below the floor of 8"):
        _restorer(MSRResNet(mid_channels=8, num_blocks=1), tile=4)


def test_predict_tile_1_is_one_line(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    write_rgb_png(d / "a.png", np.zeros((40, 40, 3), np.uint8))
    capsys.readouterr()
    code = main(["predict", str(d), "--out", str(tmp_path / "out"), "--tile", "1", "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = next(ln for ln in err.splitlines() if "error:" in ln)
    assert "tile size 1 is below the floor of 14" in line  # the shipped model: 28-pixel receptive field
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- the estimate


def test_widest_layer_is_traced_on_the_meta_device():
    assert mem.widest_values_per_pixel(LQResNet(mid_channels=96, num_blocks=2)) == 96
    assert mem.widest_values_per_pixel(MSRResNet(mid_channels=64, num_blocks=2)) == 64 * 16  # at x4
    assert mem.widest_values_per_pixel(MSRResNet(mid_channels=32, num_blocks=2)) == 32 * 16
    m = LQResNet(mid_channels=96, num_blocks=2)
    before = [p.clone() for p in m.parameters()]
    mem.widest_values_per_pixel(m)
    assert all(torch.equal(a, b) and b.device.type == "cpu" for a, b in zip(before, m.parameters()))


def test_bytes_per_pixel_follow_width_precision_and_tta():
    narrow, wide = (
        _restorer(LQResNet(mid_channels=32, num_blocks=2)),
        _restorer(LQResNet(mid_channels=96, num_blocks=2)),
    )
    assert mem.bytes_per_lq_pixel(wide.runner) > mem.bytes_per_lq_pixel(narrow.runner)
    assert mem.bytes_per_lq_pixel(wide.runner, tta=True) > mem.bytes_per_lq_pixel(wide.runner)
    half = Restorer(LQResNet(mid_channels=96, num_blocks=2), device="cpu", precision="bf16")
    assert mem.bytes_per_lq_pixel(half.runner) < mem.bytes_per_lq_pixel(wide.runner)


def test_largest_pass_counts_tile_overlap_and_batches():
    r = _restorer(tile=64, batch_size=4)  # overlap 16
    px, shape = r._largest_pass([np.zeros((300, 200, 3), np.uint8)])
    assert shape == (96, 96) and px == 96 * 96
    px, shape = r._largest_pass([np.zeros((40, 40, 3), np.uint8)] * 3)  # untiled, several share a pass
    assert shape == (40, 40) and px == Restorer.MAX_BATCH_PIXELS
    untiled = _restorer(tile=2000, batch_size=1)
    assert untiled._largest_pass([np.zeros((900, 700, 3), np.uint8)]) == (900 * 700, (900, 700))


def test_a_pass_that_cannot_fit_is_refused_before_any_forward(monkeypatch):
    r = _restorer(tile=2000, batch_size=1)
    calls = _counting(r)
    img = np.zeros((600, 600, 3), np.uint8)
    need = mem.bytes_per_lq_pixel(r.runner) * 600 * 600
    monkeypatch.setattr(mem, "host_memory", lambda: (need // 2, 8 * need))
    with pytest.raises(BadValueError, match=r"600x600 LQ pixels needs about .* GB of memory, but .* is available"):
        r.restore(img)
    assert calls == []
    monkeypatch.setattr(mem, "host_memory", lambda: (need * 2, 8 * need))
    small = np.zeros((30, 30, 3), np.uint8)
    assert r.restore(small).shape == (120, 120, 3) and calls == [1]


def test_predict_refuses_a_tile_that_cannot_fit_in_one_line(tmp_path, capsys, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    write_rgb_png(d / "big.png", np.full((300, 300, 3), 90, np.uint8))
    ckpt = tmp_path / "m.safetensors"
    save_weights(ckpt, MSRResNet(mid_channels=8, num_blocks=1))
    monkeypatch.setattr(mem, "host_memory", lambda: (10**6, 10**9))  # 1 MB available
    capsys.readouterr()
    argv = ["predict", str(d), "--out", str(tmp_path / "out"), "--checkpoint", str(ckpt), "--tile", "4000"]
    code = main([*argv, "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "300x300 LQ pixels needs about" in err and "--tile" in err
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_onnx_files_are_costed_as_the_architecture_they_name(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from facesr.inference.onnx import export_onnx

    model = MSRResNet(mid_channels=8, num_blocks=1)
    export_onnx(model, tmp_path / "m.onnx")
    onnx_r = Restorer.from_onnx(tmp_path / "m.onnx")
    assert onnx_r.runner.model.metadata["facesr.arch"] == "msrresnet"
    assert mem.bytes_per_lq_pixel(onnx_r.runner) == mem.bytes_per_lq_pixel(_restorer(model).runner)

    class Foreign:  # a model file without facesr's metadata
        metadata: dict = {}

    assert mem.traceable(Foreign()) is None
    assert mem.traceable(type("Lying", (), {"metadata": {"facesr.arch": "nope", "facesr.arch_config": "{}"}})()) is None
    onnx_r.runner.model.metadata = {}
    fallback = mem.bytes_per_lq_pixel(onnx_r.runner)
    assert fallback > mem.bytes_per_lq_pixel(_restorer(model).runner)
    assert fallback >= 4 * mem.LIVE_WIDEST * mem.FALLBACK_WIDEST
