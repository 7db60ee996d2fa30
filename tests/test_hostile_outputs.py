"""Hostile-input cases of issue 21 for the commands that draw pictures and for config seeds: one line, exit 2,
nothing written; and every picture is written in the format its name says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesr.cli import main
from facesr.config import load_config
from facesr.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _run(capsys, *argv):
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--rows", "100000"], "--rows must be in 1..32"),
        (["--rows", "0"], "--rows must be in 1..32"),
        (["--seed", "-1"], "--seed must be in 0.."),
        (["--out", "x.bmp"], "cannot write .bmp"),
        (["--out", "noending"], "cannot write a file without an ending"),
    ],
)
def test_demo_refuses_in_one_line_before_work(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "demo", *argv)
    assert rc == 2 and needle in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("name,fmt", [("d.jpg", "JPEG"), ("d.jpeg", "JPEG"), ("d.webp", "WEBP"), ("d.png", "PNG")])
def test_demo_writes_the_format_its_name_says(tmp_path, monkeypatch, capsys, name, fmt):
    monkeypatch.chdir(tmp_path)
    rc, _ = _run(capsys, "demo", "--rows", "1", "--out", name)
    assert rc == 0
    with Image.open(tmp_path / name) as im:
        assert im.format == fmt and im.mode == "RGB"


def _folders(tmp_path, n=2):
    for d, size in (("lq", 8), ("sr", 32)):
        (tmp_path / d).mkdir()
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(tmp_path / d / f"f{i}.png")


def test_compare_writes_jpeg_for_jpg_and_refuses_unknown_endings(tmp_path, capsys):
    _folders(tmp_path)
    rc, _ = _run(capsys, "compare", str(tmp_path / "lq"), str(tmp_path / "sr"), "--out", str(tmp_path / "s.jpg"))
    assert rc == 0
    with Image.open(tmp_path / "s.jpg") as im:
        assert im.format == "JPEG"
    rc, err = _run(capsys, "compare", str(tmp_path / "lq"), str(tmp_path / "sr"), "--out", str(tmp_path / "s.gif"))
    assert rc == 2 and "cannot write .gif" in err and not (tmp_path / "s.gif").exists()
    rc, err = _run(
        capsys,
        "compare",
        str(tmp_path / "lq"),
        str(tmp_path / "sr"),
        "--out",
        str(tmp_path / "t.png"),
        "--max",
        "100000",
    )
    assert rc == 2 and "--max must be in 1..64" in err


@pytest.mark.parametrize("key,value", [("seed", -1), ("seed", 2**32), ("data.val_seed", -5)])
def test_config_seed_out_of_range_is_one_line(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}: must be in 0\.\."):
        load_config(CONFIGS / "quickstart.yaml", [f"{key}={value}"])


@pytest.mark.parametrize("spec", ["meta", "xla", "cpu:bogus"])
def test_unsupported_device_is_one_line(spec):
    from facesr.devices import resolve_device
    from facesr.errors import DeviceError

    with pytest.raises(DeviceError, match="--device"):
        resolve_device(spec, "--device")


def test_eval_json_is_strict_json_even_for_a_perfect_prediction(tmp_path, capsys):
    import json

    (tmp_path / "p").mkdir()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(tmp_path / "p" / "a.png")
    rc = main(["eval", str(tmp_path / "p"), str(tmp_path / "p"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert data["mean"]["psnr"] is None  # PSNR of identical images is infinite: written as null


def test_black_and_white_input_comes_out_gray_not_tinted(tmp_path, capsys):
    bw = (np.indices((24, 24)).sum(0) // 3 % 2 * 255).astype(np.uint8)
    Image.fromarray(bw).convert("1").save(tmp_path / "bw.png")
    rc = main(["predict", str(tmp_path / "bw.png"), "--out", str(tmp_path / "out"), "--precision", "fp32"])
    assert rc == 0
    out = np.asarray(Image.open(tmp_path / "out" / "bw.png").convert("RGB")).astype(int)
    assert out.shape == (96, 96, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out.std() > 20  # still the restored pattern, not a flat image


def test_gray_handling_keeps_tiling_exact_and_rounding_consistent():
    import facesr

    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    r = facesr.load(precision="fp32")
    whole = r.restore(g)
    assert np.array_equal(facesr.load(precision="fp32", tile=16).restore(g), whole)
    rgb = np.repeat(g[..., None], 3, axis=2)
    assert np.array_equal(np.rint(r.predict_float(rgb[None])[0]).astype(np.uint8), whole)
    color = rgb.copy()
    color[0, 0, 0] ^= 1  # one pixel off gray: a color image, channels left as the model gives them
    assert not (r.restore(color)[..., 0] == r.restore(color)[..., 2]).all()


def test_save_weights_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import facesr.models.weights as W
    from facesr.errors import OutputError
    from facesr.models.msrresnet import MSRResNet

    def full(*a, **k):
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr(W, "save_file", full)
    with pytest.raises(OutputError, match="cannot write .*w.safetensors: .*No space left"):
        W.save_weights(tmp_path / "w.safetensors", MSRResNet(mid_channels=4, num_blocks=1))
    assert list(tmp_path.iterdir()) == []


def test_restore_caps_faces_per_photo(tmp_path, capsys, monkeypatch):
    import faces_synth as S
    import facesr.faces.detect as detect

    lq, faces = S.crowd_photo()
    Image.fromarray(lq).save(tmp_path / "crowd.png")
    monkeypatch.setattr(detect, "load_detector", lambda *a, **k: S.FakeDetector(faces))
    rc = main(
        [
            "restore",
            str(tmp_path / "crowd.png"),
            "--out",
            str(tmp_path / "out"),
            "--max-faces",
            "2",
            "--precision",
            "fp32",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "restored the 2 largest faces; 3 more left as background (--max-faces 2)" in err
    assert main(["restore", str(tmp_path / "crowd.png"), "--out", str(tmp_path / "o2"), "--max-faces", "0"]) == 2


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_restore_of_a_one_pixel_photo_is_a_plain_upscale_not_a_traceback(tmp_path, capsys, mode):
    pytest.importorskip("dlib")
    Image.new(mode, (1, 1)).save(tmp_path / "tiny.png")
    rc = main(["restore", str(tmp_path / "tiny.png"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err and "no face restored" in err
    assert (tmp_path / "out" / "tiny.png").exists()


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK"),
        ({"WORLD_SIZE": "2", "RANK": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "RANK=3 does not fit"),
        ({"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "not integers"),
    ],
)
def test_partial_torchrun_environments_are_one_line(monkeypatch, env, needle):
    from facesr.distributed import init_distributed
    from facesr.errors import FacesrError

    for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(FacesrError, match=needle):
        init_distributed("cpu")


def test_save_faces_never_writes_over_an_input_inside_a_faces_folder(tmp_path, capsys):
    pytest.importorskip("dlib")
    from facesr.assets import sample_face_path

    out, faces = tmp_path / "OUT", tmp_path / "OUT" / "photo_faces"
    faces.mkdir(parents=True)
    img = Image.open(sample_face_path())
    img.save(faces / "photo.png")
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(faces / "face00_input.png")
    before = {p.name: p.read_bytes() for p in faces.iterdir()}
    rc = main(["restore", str(faces), "--out", str(out), "--save-faces", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to write --save-faces crops into" in err and "holds input" in err
    assert {p.name: p.read_bytes() for p in faces.iterdir()} == before
