"""Videos: ``facesr restore clip.mp4`` and ``facesr.restore_video`` on tiny clips the tests make themselves.

Skipped without PyAV (the 'video' extra).  Faces come from a scripted detector (the faces the test
pasted, with or without a per-frame wobble of its landmarks), so no dlib is needed; the tracking
and smoothing tests are in tests/test_video_track.py.
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np
import pytest

import faces_synth as S

# ----------------------------------------------------------------------------- with PyAV

av = pytest.importorskip("av")

from facesr.cli import main
from facesr.video import VideoError, probe, restore_video


@pytest.fixture(scope="module")
def tiny():
    import torch

    from facesr.inference import Restorer
    from facesr.models import MSRResNet

    torch.manual_seed(0)
    return Restorer(MSRResNet(mid_channels=8, num_blocks=1), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def shipped():
    import facesr

    return facesr.load(device="cpu", precision="fp32")


@pytest.fixture()
def clip(tmp_path):
    lq, gt, faces = S.face_clip(10)
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    S.write_clip(path, lq, fps=25)
    return path, lq, gt, faces


def _no_leftovers(folder):
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_keeps_frame_count_rate_size_and_audio(tmp_path, clip, tiny):
    path, lq, _, faces = clip
    out = tmp_path / "out.mp4"
    res = restore_video(path, out, restorer=tiny, detector=S.FrameDetector(faces), upscale=2)
    frames, info = S.read_clip(out)
    _, src = S.read_clip(path)
    assert len(frames) == res.frames == 10 and info["fps"] == 25
    assert (info["width"], info["height"]) == (320, 240) and info["codec"] == "h264"
    assert info["audio"] == ["aac"] and abs(info["audio_seconds"] - src["audio_seconds"]) < 1e-3
    assert res.tracks == 1 and res.face_frames == 10 and res.audio_streams == 1
    assert _no_leftovers(tmp_path)


def test_part_of_a_video(tmp_path, tiny):
    lq, _, faces = S.face_clip(12, h=60, w=80)
    path = tmp_path / "part.mkv"
    S.write_clip(path, lq, fps=25)
    res = restore_video(path, tmp_path / "a.mkv", restorer=tiny, detector=S.FrameDetector(faces), max_frames=4)
    assert res.frames == 4 and len(S.read_clip(tmp_path / "a.mkv")[0]) == 4
    res = restore_video(
        path, tmp_path / "b.mp4", restorer=tiny, detector=S.FrameDetector(faces), start=0.2, duration=0.12, upscale=1
    )
    frames, info = S.read_clip(tmp_path / "b.mp4")
    assert res.frames == len(frames) == 3 and (info["width"], info["height"]) == (80, 60)
    assert info["audio"] == ["aac"] and info["audio_seconds"] < 0.3


def test_odd_frame_size_at_upscale_1(tmp_path, tiny):
    lq, _, faces = S.face_clip(4, h=61, w=81)
    S.write_clip(tmp_path / "odd.mkv", lq, codec="ffv1", audio=False)  # a lossless codec that takes odd sizes
    res = restore_video(
        tmp_path / "odd.mkv", tmp_path / "out.mkv", restorer=tiny, detector=S.FrameDetector(faces), upscale=1
    )  # H.264 in yuv444p: yuv420p needs even sides
    frames, info = S.read_clip(tmp_path / "out.mkv")
    assert res.frames == len(frames) == 4 and (info["width"], info["height"]) == (81, 61)


def _region(faces, upscale, shape):
    """Pixels of the output well inside the pasted face of frame 0 (mask > 0.99)."""
    from facesr.faces.align import estimate_alignment
    from facesr.faces.paste import paste_face

    m = np.zeros(shape, np.uint8)
    paste_face(m, np.full((512, 512, 3), 255, np.uint8), estimate_alignment(faces[0][0].landmarks), upscale)
    return m[..., 0] > 252


def _bicubic(frames, upscale):
    return [cv2.resize(f, (f.shape[1] * upscale, f.shape[0] * upscale), interpolation=cv2.INTER_CUBIC) for f in frames]


@pytest.mark.slow
def test_face_improves_over_bicubic_and_does_not_flicker(tmp_path, shipped):
    """A still face with fresh noise and JPEG in every frame (kept by a crf 0 encode), found with a wobble
    of 0.7 px: the restored face is closer to the clean face than bicubic and changes less from frame to
    frame."""
    lq, gt, faces = S.face_clip(8, noise=4.0, quality=70)
    path = tmp_path / "still.mp4"
    S.write_clip(path, lq, fps=25, audio=False, crf=0)
    out = tmp_path / "still_out.mp4"
    restore_video(path, out, restorer=shipped, detector=S.FrameDetector(faces, jitter=0.7), upscale=2, crf=10)
    frames, info = S.read_clip(out)
    region = _region(faces, 2, frames[0].shape)
    bic = _bicubic(S.read_clip(path)[0], 2)
    gain = np.mean([S.psnr(f, g, region) - S.psnr(b, g, region) for f, b, g in zip(frames, bic, gt)])
    assert gain > 0.5, gain
    assert S.temporal_difference(frames, region) <= S.temporal_difference(bic, region)
    assert info["audio"] == []


@pytest.mark.slow
def test_slow_pan_does_not_flicker_and_smoothing_helps(tmp_path, shipped):
    """A face panning 0.5 px a frame, found with a wobble of 1 px: temporal differences (of the frames
    moved back by the pan) are at most bicubic's, and lower than without the temporal smoothing."""
    lq, _gt, faces = S.face_clip(10, pan_px=0.5, noise=2.0, quality=80)
    path = tmp_path / "pan.mp4"
    S.write_clip(path, lq, fps=25, audio=False)
    diffs = {}
    for smooth in (2.0, 0.0):
        out = tmp_path / f"pan_{smooth}.mp4"
        restore_video(
            path,
            out,
            restorer=shipped,
            detector=S.FrameDetector(faces, jitter=1.0, seed=1),
            upscale=2,
            smooth=smooth,
            crf=10,
        )
        diffs[smooth] = _pan_flicker(S.read_clip(out)[0], faces)
    diffs["bicubic"] = _pan_flicker(_bicubic(S.read_clip(path)[0], 2), faces)
    assert diffs[2.0] <= diffs["bicubic"], diffs
    assert diffs[2.0] < diffs[0.0], diffs


def _pan_flicker(frames, faces, upscale=2):
    """Temporal difference inside the face after moving each frame back by the face's own motion."""
    from facesr.faces.align import estimate_alignment, warp_affine
    from facesr.faces.paste import output_affine

    aligned = [
        warp_affine(f, output_affine(estimate_alignment(fs[0].landmarks), upscale), (512, 512))
        for f, fs in zip(frames, faces)
    ]
    yy, xx = np.mgrid[0:512, 0:512]
    region = (np.abs(xx - 255.5) < 150) & (np.abs(yy - 280) < 170)
    return S.temporal_difference(aligned, region)


def test_video_without_faces_is_a_plain_upscale(tmp_path, tiny, capsys):
    frames = [S.background(48, 64) for _ in range(5)]
    path = tmp_path / "in" / "empty.mp4"
    path.parent.mkdir()
    S.write_clip(path, frames)
    out = tmp_path / "out"
    rc = _cli(path, out, tiny, lambda rgb: [])
    cap = capsys.readouterr()
    assert rc == 0 and "no face restored" in cap.err and "5 frames" in cap.out
    got, info = S.read_clip(out / "empty.mp4")
    assert len(got) == 5 and info["audio"] == ["aac"]
    bic = _bicubic(S.read_clip(path)[0], 2)
    assert np.abs(got[2].astype(float) - bic[2]).mean() < 3  # only the encoder's rounding


def _cli(inputs, out, restorer, detector, *extra):
    """Run ``facesr restore`` with the given restorer and detector (patched in)."""
    from facesr.commands import restore as cmd
    from facesr.faces import detect

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(detect, "load_detector", lambda name="hog", **kw: detector)
        mp.setattr(cmd, "load_restorer", lambda a, **kw: restorer)
        args = [str(p) for p in (inputs if isinstance(inputs, list) else [inputs])]
        return main(["restore", *args, "--out", str(out), *extra])
    finally:
        mp.undo()


def _bad_inputs(folder):
    """A folder of broken videos; returns {file name: words its one-line error must contain}."""
    folder.mkdir()
    lq, _, _ = S.face_clip(8)
    S.write_clip(folder / "good.mp4", lq)
    (folder / "notes.mp4").write_bytes(b"this is not a video\n" * 20)
    (folder / "still.mov").write_bytes(cv2.imencode(".png", lq[0])[1].tobytes())  # a PNG with a video name
    with av.open(str(folder / "sound.m4v"), "w", format="mp4") as c:  # audio only
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        fr.sample_rate = 16000
        for p in [*a.encode(fr), *a.encode()]:
            c.mux(p)
    S.write_clip(folder / "empty.mkv", [], audio=False)
    S.write_clip(folder / "cut.mkv", [f for f in lq for _ in range(3)])
    data = (folder / "cut.mkv").read_bytes()
    (folder / "cut.mkv").write_bytes(data[: len(data) // 2])
    (folder / "cut.mp4").write_bytes((folder / "good.mp4").read_bytes()[:3000])  # its index is at the end
    S.write_clip(folder / "fast.mp4", [f for f in lq for _ in range(3)], options={"movflags": "+faststart"})
    data = (folder / "fast.mp4").read_bytes()
    (folder / "half.mp4").write_bytes(data[: len(data) // 2])  # index first: frames are promised, half are there
    mdat = data.index(b"mdat") + 4
    (folder / "zero.mp4").write_bytes(data[:mdat])  # the index and no frame data
    (folder / "fast.mp4").unlink()
    S.write_clip(folder / "alien.mkv", lq)
    data = (folder / "alien.mkv").read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    (folder / "alien.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_ALIEN/ISO/XYZ"))
    return {
        "notes.mp4": "not a readable video",
        "still.mov": "still image",
        "sound.m4v": "no video stream",
        "empty.mkv": "empty or truncated",
        "cut.mkv": "truncated",
        "cut.mp4": "not a readable video",
        "half.mp4": "truncated",
        "zero.mp4": "no frame",
        "alien.mkv": "unsupported video codec",
    }


def test_bad_videos_get_one_line_each(tmp_path, tiny, capsys):
    expected = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = _cli(tmp_path / "in", out, tiny, lambda rgb: [])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert f"skipped {len(expected)} video(s)" in err
    for name, words in expected.items():
        line = next(ln for ln in err.splitlines() if name in ln)
        assert words in line, line
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]


def test_pixel_and_frame_caps(tmp_path, clip, tiny, capsys):
    path, _, _, faces = clip
    rc = _cli(path, tmp_path / "o1", tiny, S.FrameDetector(faces), "--max-pixels", "10000")
    assert rc == 1 and "160x120" in capsys.readouterr().err
    rc = _cli(path, tmp_path / "o2", tiny, S.FrameDetector(faces), "--frame-cap", "5")
    assert rc == 1 and "frame cap of 5" in capsys.readouterr().err
    rc = _cli(path, tmp_path / "o3", tiny, S.FrameDetector(faces), "--frame-cap", "5", "--max-frames", "5")
    assert rc == 0 and len(S.read_clip(tmp_path / "o3" / "clip.mp4")[0]) == 5
    with pytest.raises(VideoError, match="more than 4 frames"):  # a header that says nothing: counted while read
        from facesr.video.io import Span
        from facesr.video.restore import scan

        info = probe(path)
        info.frames = info.duration = None
        scan(path, info, Span(), lambda rgb: [], frame_cap=4)


def test_interrupt_and_full_disk_leave_nothing(tmp_path, clip, tiny, monkeypatch):
    path, _, _, faces = clip
    from facesr.errors import OutputError
    from facesr.video import io as vio

    class Stop:
        def __init__(self, after):
            self.n = after

        def __call__(self, stage, done, total):
            if stage == "restore" and done >= self.n:
                raise KeyboardInterrupt

    out = tmp_path / "o" / "clip.mp4"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        restore_video(path, out, restorer=tiny, detector=S.FrameDetector(faces), progress=Stop(8))
    assert list(out.parent.iterdir()) == []

    class FullDisk:  # the output container, failing as a full disk does after two packets
        def __init__(self, c):
            self.c, self.n = c, 0

        def mux(self, packet):
            self.n += 1
            if self.n > 2:
                raise OSError(28, "No space left on device")
            self.c.mux(packet)

        def close(self):
            self.c.close()

    real_init = vio.AtomicVideoWriter.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.c = FullDisk(self.c)

    monkeypatch.setattr(vio.AtomicVideoWriter, "__init__", init)
    with pytest.raises(OutputError, match="No space left"):
        restore_video(path, out, restorer=tiny, detector=S.FrameDetector(faces))
    assert list(out.parent.iterdir()) == []


def test_folder_of_photos_and_videos(tmp_path, clip, tiny, capsys):
    path, lq, _, faces = clip
    (path.parent / "photo.png").write_bytes(cv2.imencode(".png", lq[0][..., ::-1])[1].tobytes())
    S.write_clip(path.parent / "other.webm", lq[:3], codec="libvpx-vp9", audio=False)
    out = tmp_path / "out"
    rc = _cli(path.parent, out, tiny, lambda rgb: [])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "other.mkv", "photo.png"]
    assert "wrote 1 photo(s)" in cap.out and "wrote 2 video(s)" in cap.out
    rc = _cli(path.parent, out, tiny, lambda rgb: [])
    assert rc == 2 and "exist" in capsys.readouterr().err  # never overwritten without --overwrite
    assert _cli(path, path.parent, tiny, lambda rgb: []) == 2
    assert "holds input file" in capsys.readouterr().err


def test_missing_video_extra_is_one_line(tmp_path, clip, tiny, monkeypatch, capsys):
    path = clip[0]
    monkeypatch.setitem(sys.modules, "av", None)
    rc = _cli(path, tmp_path / "o", tiny, lambda rgb: [])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'pip install "facesr[video]"' in err
    assert not (tmp_path / "o").exists()


def test_python_api_is_exported(tmp_path, clip, tiny):
    import facesr

    path, _, _, faces = clip
    res = facesr.restore_video(
        path, tmp_path / "api.mp4", restorer=tiny, detector=S.FrameDetector(faces), upscale=1, max_frames=2
    )
    assert res.frames == 2 and os.path.isfile(tmp_path / "api.mp4")
    from facesr.errors import BadValueError

    with pytest.raises(BadValueError, match="upscale"):
        facesr.restore_video(path, tmp_path / "x.mp4", restorer=tiny, detector=S.FrameDetector(faces), upscale=3)
    assert not (tmp_path / "x.mp4").exists()
