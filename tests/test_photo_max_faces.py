"""``restore_photo(max_faces=N)``: only the N largest faces are restored, the rest are left and counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import faces_synth as S
from facesr.faces.photo import largest_faces, restore_photo
from facesr.inference import Restorer
from facesr.models import build_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Restorer(build_model("msrresnet", mid_channels=8, num_blocks=1), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def crowd():
    return S.crowd_photo()


def test_largest_faces_keeps_detection_order(crowd):
    _, faces = crowd
    kept, left = largest_faces(faces, 2)
    assert kept == [faces[1], faces[3]] and left == [faces[0], faces[2], faces[4]]
    assert [len(x) for x in largest_faces(faces, None)] == [5, 0] and largest_faces(faces, 5)[0] == faces
    assert largest_faces(faces, 0)[1] == faces


def test_restore_photo_caps_faces_and_notes_it(tiny, crowd):
    lq, faces = crowd
    full = restore_photo(tiny, lq, detector=S.FakeDetector(faces), upscale=1)
    assert len(full.faces) == 5 and full.over_cap == [] and full.notes == []
    capped = restore_photo(tiny, lq, detector=S.FakeDetector(faces), upscale=1, max_faces=2)
    assert [f.size for f in capped.faces] == [faces[1].size, faces[3].size]
    assert len(capped.over_cap) == 3 and capped.skipped == []  # skipped stays "too small" only
    assert capped.notes and "only the 2 largest were restored, 3 left" in capped.notes[0]
    # the faces left out stay as they were (upscale 1: the photo itself); without the cap they are restored
    for f in capped.over_cap:
        x, y = (int(round(v)) for v in f.landmarks[4])  # the nose (dlib's fifth point)
        around = np.s_[y - 2 : y + 3, x - 2 : x + 3]
        np.testing.assert_array_equal(capped.image[around], lq[around])
        assert not np.array_equal(full.image[around], lq[around])
    uncapped = restore_photo(tiny, lq, detector=S.FakeDetector(faces), upscale=1, max_faces=None)
    assert [f.box for f in uncapped.faces] == [f.box for f in full.faces]
    assert restore_photo(tiny, lq, detector=S.FakeDetector(faces), upscale=1).over_cap == []  # default cap
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_faces"):
            restore_photo(tiny, lq, detector=S.FakeDetector(faces), max_faces=bad)
