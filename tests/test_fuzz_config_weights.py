"""Property-based fuzzing (Hypothesis) of the config loader, the ``--set`` parser, checkpoint files and the
restricted unpickler: every input gives a valid result or one FacesrError line, never another exception.

CI runs a bounded number of examples; ``FACESR_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_*.py`` runs a longer
search (docs/robustness.md records what such runs found).
"""

from __future__ import annotations

import io
import struct

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import fuzz_settings
from facesr.config import apply_overrides, config_from_dict, load_config
from facesr.errors import FacesrError
from facesr.models.msrresnet import MSRResNet
from facesr.models.weights import read_weights, save_weights

FUZZ = fuzz_settings()


KEYS = [
    "seed",
    "model",
    "data",
    "train",
    "optim",
    "sched",
    "degradation",
    "arch",
    "num_blocks",
    "mid_channels",
    "batch_size",
    "max_iters",
    "crop_size",
    "lr",
    "periods",
    "prob",
    "kernel_size",
    "amp",
    "precision",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["msrresnet", "bf16", "l1", "1e-4", ".inf", "~"]),
)
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(KEYS), kids, max_size=4)),
    max_leaves=20,
)


def _only_facesr_errors(fn, *args):
    try:
        return fn(*args)
    except FacesrError as exc:
        assert "\n" not in str(exc).strip(), f"error is not one line: {exc!r}"
        return None


@FUZZ
@given(tree=trees)
def test_config_from_any_yaml_tree_is_valid_or_one_line(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    _only_facesr_errors(load_config, path)


@FUZZ
@given(text=st.text(max_size=300))
def test_config_from_any_text_is_valid_or_one_line(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    _only_facesr_errors(load_config, path)


@FUZZ
@given(
    items=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(
                    [
                        "seed",
                        "train.max_iters",
                        "model.num_blocks",
                        "data.crop_size",
                        "sched.periods",
                        "train",
                        "a.b.c",
                        "",
                        "degradation.blur.prob",
                        "model",
                        "train.batch_size.x",
                    ]
                ),
                st.sampled_from(
                    [
                        "1",
                        "-1",
                        "[1, 2]",
                        "{a: 1}",
                        "null",
                        ".nan",
                        "1e400",
                        "&a [*a]",
                        "'x'",
                        "",
                        "[[[[",
                        "99999999999999999999999",
                        "true",
                    ]
                ),
            ),
        ),
        max_size=4,
    )
)
def test_set_overrides_are_valid_or_one_line(items):
    def build():
        return config_from_dict(apply_overrides({}, items))

    _only_facesr_errors(build)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    model = MSRResNet(mid_channels=4, num_blocks=1)
    save_weights(d / "m.safetensors", model)
    buf = io.BytesIO()
    torch.save({"state_dict": {f"generator.{k}": v for k, v in model.state_dict().items()}, "meta": {"x": 1}}, buf)
    (d / "m.pth").write_bytes(buf.getvalue())
    return {"safetensors": (d / "m.safetensors").read_bytes(), "pth": (d / "m.pth").read_bytes()}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


@FUZZ
@given(
    kind=st.sampled_from(["safetensors", "pth"]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 4096)),
    header_len=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_mutated_checkpoints_load_or_give_one_line(tiny_checkpoints, tmp_path_factory, kind, edits, cut, header_len):
    data = _mutate(tiny_checkpoints[kind], edits, cut)
    if header_len is not None and kind == "safetensors" and len(data) >= 8:
        data = struct.pack("<Q", header_len) + data[8:]  # a lying header length
    path = tmp_path_factory.mktemp("m") / f"x.{kind}"
    path.write_bytes(data)
    _only_facesr_errors(read_weights, path)


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_as_checkpoint_give_one_line(data, tmp_path_factory):
    for suffix in (".pth", ".safetensors", ".pt"):
        path = tmp_path_factory.mktemp("r") / f"x{suffix}"
        path.write_bytes(data)
        _only_facesr_errors(read_weights, path)
