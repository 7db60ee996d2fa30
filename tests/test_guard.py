"""The write guard: inputs, data folders and run artefacts are never written over, moved or deleted."""

from __future__ import annotations

import pytest

from facesr.errors import FacesrError
from facesr.io.guard import WriteGuard, is_run_artefact


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "data" / "hq").mkdir(parents=True)
    (tmp_path / "data" / "hq" / "a.png").write_bytes(b"x")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "p.jpg").write_bytes(b"x")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "best.safetensors").write_bytes(b"w")
    (tmp_path / "run" / "checkpoints" / "iter_10.pt").write_bytes(b"c")
    return tmp_path


def test_files_over_or_inside_inputs_are_refused(tree):
    g = WriteGuard().protect([tree / "photos" / "p.jpg"], "input").protect([tree / "data" / "hq"], "data.train_hq_dir")
    with pytest.raises(FacesrError, match="input .*p.jpg"):
        g.check_file(tree / "photos" / "p.jpg")
    with pytest.raises(FacesrError, match="data.train_hq_dir"):
        g.check_file(tree / "data" / "hq" / "new.png")
    assert g.check_file(tree / "out.png") == tree / "out.png"


def test_run_artefacts_are_never_replaced_by_other_outputs(tree):
    g = WriteGuard()
    for f in ("run/best.safetensors", "run/checkpoints/iter_10.pt"):
        with pytest.raises(FacesrError, match="training run's file"):
            g.check_file(tree / f)
    assert g.check_file(tree / "run" / "best.safetensors", own_artefacts=True)
    assert g.check_file(tree / "run" / "curves.png")
    assert is_run_artefact("x/config.yaml") and is_run_artefact("m.onnx") and not is_run_artefact("a.png")


@pytest.mark.parametrize("folder,relation", [("data", "holds"), ("data/hq", "is"), ("data/hq/sub", "lies inside")])
def test_folders_that_are_hold_or_lie_inside_data_are_not_moved(tree, folder, relation):
    g = WriteGuard().protect([tree / "data" / "hq"], "data.train_hq_dir")
    with pytest.raises(FacesrError, match=f"refusing to move .* it {relation} data.train_hq_dir"):
        g.check_tree(tree / folder)
    assert g.check_tree(tree / "run") == tree / "run"


def test_root_home_and_cwd_are_never_moved(tree, monkeypatch):
    monkeypatch.chdir(tree)
    g = WriteGuard()
    for f in (".", "/", str(tree)):
        with pytest.raises(FacesrError, match="root, home or current folder"):
            g.check_tree(f)
