"""Progress on long work: tqdm on a terminal, plain throttled lines in a log, nothing with quiet."""

from __future__ import annotations

import io

from facesr.io.progress import LogProgress, progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_log_progress_prints_first_then_every_interval_then_the_end():
    out, clock = io.StringIO(), Clock()
    p = LogProgress(100, "facesr predict", "img", out, interval=30, clock=clock)
    for _ in range(100):
        clock.t += 1.0
        p.update(1)
    p.close()
    lines = out.getvalue().splitlines()
    # short work stays quiet: the first line after 30 s (t=30), then t=60, 90, then the final state at close
    assert len(lines) == 4, lines
    assert lines[0].startswith("facesr predict: 30/100 img (30%), 1 img/s, ETA 1 min 10 s")
    assert lines[1].startswith("facesr predict: 60/100 img (60%)")
    assert lines[-1].startswith("facesr predict: 100/100 img (100%)") and "ETA" not in lines[-1]


def test_log_progress_slow_units_and_unknown_total():
    out, clock = io.StringIO(), Clock()
    p = LogProgress(None, "train", "it", out, interval=30, clock=clock)
    clock.t = 45.0
    p.update(1)
    p.close()
    assert out.getvalue().splitlines() == ["train: 1 it, 45 s/it, elapsed 45 s"]
    quick = io.StringIO()
    q = LogProgress(10, "x", "img", quick, interval=30, clock=Clock())
    q.update(10)
    q.close()
    assert quick.getvalue() == ""  # work shorter than the interval prints nothing


def test_progress_chooses_by_terminal_and_quiet():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    bar = progress(3, "x", file=Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress(3, "x", file=io.StringIO()), LogProgress)
    quiet = progress(3, "x", file=io.StringIO(), quiet=True)
    quiet.update(3)
    quiet.close()
    assert not isinstance(quiet, (tqdm, LogProgress))


def test_heartbeat_prints_while_a_long_call_runs_off_a_terminal():
    import time

    from facesr.io.progress import heartbeat

    out = io.StringIO()
    with heartbeat("facesr export: quantizing", interval=0.05, file=out):
        time.sleep(0.18)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 4 and all(x.startswith("facesr export: quantizing: still working") for x in lines)
    n = len(lines)
    time.sleep(0.12)
    assert len(out.getvalue().splitlines()) == n  # stopped with the block
