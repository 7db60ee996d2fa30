"""Every registered architecture: parameter cap, FLOP counting, ONNX export and exact tiling.

The tests loop over :func:`facesr.models.available`, so a new architecture (one file
plus one ``register(...)`` line in :mod:`facesr.models.registry`) is covered without
touching this file.  Small instances come from the class's ``TINY`` Cfg fields.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facesr.inference import Restorer
from facesr.models import available, build_model, count_flops, count_params
from facesr.models.registry import arch_class, register

CAP = 2_276_356  # the course's parameter cap (1.5 x MSRResNet-16)
ARCHS = available()


def _tiny(name: str, seed: int = 0):
    """A small instance whose convolutions matter (full-scale init, random biases), so seams would show."""
    torch.manual_seed(seed)
    m = build_model(name, **getattr(arch_class(name), "TINY", {}))
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight)
            torch.nn.init.uniform_(mod.bias, -0.1, 0.1)
    return m.eval()


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_both_architectures_are_registered():
    assert {"msrresnet", "lqresnet"} <= set(ARCHS)


@pytest.mark.parametrize("name", ARCHS)
def test_class_contract(name):
    cls = arch_class(name)
    cfg = cls.Cfg()
    assert dataclasses.is_dataclass(cfg) and cfg.check() == []
    m = _tiny(name)
    assert isinstance(m.receptive_field(), int) and m.receptive_field() > 0
    rebuilt = build_model(name, **m.arch_config())
    assert rebuilt.arch_config() == m.arch_config()
    assert int(m.upscale_factor) >= 1


@pytest.mark.parametrize("name", ARCHS)
def test_documented_presets_fit_the_cap(name):
    presets = getattr(arch_class(name), "PRESETS", {"default": {}})
    assert presets, f"{name}: no presets"
    for preset, kw in presets.items():
        n = count_params(build_model(name, **kw))
        assert n <= CAP, f"{name} {preset}: {n:,} parameters > {CAP:,}"


@pytest.mark.parametrize("name", ARCHS)
def test_count_flops_returns_count_and_output_shape(name):
    m = _tiny(name)
    s = m.upscale_factor
    n = count_flops(m, (3, 16, 12))
    assert int(n) > 0 and n.output_shape == (3, 16 * s, 12 * s)
    assert count_flops(m, (3, 32, 24)) == 4 * int(n)  # every counted op scales with the area


@pytest.mark.parametrize("name", ARCHS)
def test_tiled_equals_untiled_with_default_overlap(name):
    m = _tiny(name, seed=1)
    img = _img(37, 29, seed=2)
    full = Restorer(m, device="cpu", channels_last=False).restore(img)
    r = Restorer(m, device="cpu", channels_last=False, tile=9)
    assert r.tile_overlap == m.receptive_field()
    tiled = r.restore(img)
    assert tiled.shape == full.shape
    assert np.abs(tiled.astype(int) - full).max() <= 1  # float rounding only: no seams


@pytest.mark.parametrize("name", ARCHS)
def test_onnx_matches_torch_and_carries_receptive_field(name):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facesr.inference import OnnxModel, export_onnx

    m = _tiny(name, seed=3)
    data = export_onnx(m, check=False)
    om = OnnxModel(data)
    assert om.scale == m.upscale_factor and om.receptive_field() == m.receptive_field()
    img = _img(20, 28, seed=4)
    ref = Restorer(m, device="cpu", channels_last=False).restore(img)
    r = Restorer.from_onnx(data)
    assert r.tile_overlap == m.receptive_field()
    got = r.restore(img)
    assert got.shape == ref.shape and np.abs(got.astype(int) - ref).max() <= 1


def test_onnx_overlap_of_a_deep_model_is_its_receptive_field():
    """LQResNet-29 needs 62 LQ pixels of context, more than the old fixed ONNX guess of 40."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from facesr.inference import export_onnx

    m = build_model("lqresnet", mid_channels=4, num_blocks=29)
    assert m.receptive_field() == 62
    assert Restorer.from_onnx(export_onnx(m, check=False)).tile_overlap == 62


def test_register_refuses_an_incomplete_architecture():
    class NotAnArch(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match="Cfg"):
        register("broken", NotAnArch)
    assert "broken" not in available()
