"""Soak test of ``facesr serve`` (issue 21.6; not run in CI): many requests over many minutes, then the numbers.

``python benchmarks/soak_serve.py [--min-requests 1000] [--min-minutes 10] [--out soak.json]``

* starts ``facesr serve`` in a subprocess on 127.0.0.1 and a free port (``--port 0``), fp32 on the CPU with
  one torch thread (``OMP_NUM_THREADS=1``), the shipped model (or ``--checkpoint``);
* runs ``--clients`` client threads (httpx, raw sockets for hang-ups) until at least ``--min-requests``
  requests were sent *and* ``--min-minutes`` have passed, and never more than ``--max-requests`` or
  ``--max-minutes`` (the bounds of the run);
* the mix (weights in :data:`MIX`): good faces through ``POST /restore`` and through the page's way
  (``POST /jobs`` stream, then ``result.png``, ``bicubic.png``, ``input.png``), whole photos (the dlib
  detector, when the ``faces`` extra is installed), bad files (random bytes, truncated PNG, text, a
  picture over the pixel cap, a wrong content type, an empty body), cancels (``DELETE /jobs/{id}``
  while the job waits or runs), disconnects (the client hangs up mid-upload or while its job waits),
  and ``/healthz`` / ``/api/info``;
* every good answer is compared pixel for pixel with ``Restorer``'s own output for the same input
  (computed here, same checkpoint, fp32, one thread);
* the server's resident memory (RSS, from psutil or /proc) is sampled every few seconds;
* at the end: a result fetched long ago must answer 410, and the server must stop within a few
  seconds of SIGTERM while a job runs.

Prints one JSON object (also written to ``--out``): requests by kind and status, 5xx count (target 0),
mismatches (target 0), RSS at start / middle / end / max, SIGTERM exit time.  docs/robustness.md
has the numbers of a run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

#: Relative weights of the request kinds.
MIX = {"face": 30, "page": 10, "photo": 2, "bad": 25, "cancel": 10, "disconnect": 10, "info": 13}
RSS_EVERY_S = 5.0


# ----------------------------------------------------------------------------- inputs and references


def png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB or RGBA array."""
    from facesr.io.images import encode_png

    return encode_png(img)


def decode(data: bytes) -> np.ndarray:
    """A PNG answer as uint8 RGB(A)."""
    from facesr.io.images import read_image

    rgb, alpha = read_image(data, 0)
    return rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)


def face_inputs(seed: int = 0) -> list[np.ndarray]:
    """Small face crops of the bundled face (16 to 40 pixels), one with alpha."""
    from facesr.assets import sample_face_path
    from facesr.io.images import read_rgb

    face = read_rgb(sample_face_path())
    rng = np.random.default_rng(seed)
    out = []
    for i, size in enumerate((16, 20, 24, 28, 32, 36, 40, 24, 32, 20)):
        y, x = rng.integers(0, 128, 2)
        img = cv2.resize(face[y : y + 384, x : x + 384], (size, size), interpolation=cv2.INTER_AREA)
        if i == 7:
            img = np.concatenate([img, rng.integers(0, 256, (size, size, 1), dtype=np.uint8)], axis=2)
        out.append(np.ascontiguousarray(img))
    return out


def photo_inputs() -> list[np.ndarray]:
    """Two 360 x 240 photos of the bundled face: one face, and two (HOG finds faces of ~37 and ~44 pixels)."""
    from facesr.assets import sample_face_path
    from facesr.io.images import read_rgb

    face = read_rgb(sample_face_path())
    out = []
    for sizes in ((140,), (140, 105)):
        ph = np.full((240, 360, 3), 120, np.uint8)
        for (x, y), s in zip(((20, 20), (200, 30)), sizes):
            ph[y : y + s, x : x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        out.append(ph)
    return out


def references(checkpoint: str | None, faces, photos) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``Restorer``'s output for every input (fp32, one thread): what the server must answer, to the pixel."""
    import torch

    from facesr.inference import Restorer

    torch.set_num_threads(1)
    r = Restorer.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    face_refs = [np.asarray(r.restore(f)) for f in faces]
    photo_refs = []
    if photos:
        from facesr.faces import load_detector

        det = load_detector("hog")
        photo_refs = [np.asarray(r.restore_photo(p, detector=det, upscale=2).image) for p in photos]
    return face_refs, photo_refs


def bad_files(max_side: int) -> list[tuple[str, bytes, str]]:
    """(what, body, content type) of uploads that must get one 4xx line."""
    rng = np.random.default_rng(1)
    good = png(np.full((24, 24, 3), 90, np.uint8))
    ok, jpg = cv2.imencode(".jpg", np.full((24, 24, 3), 90, np.uint8))
    mutated = bytearray(jpg.tobytes())
    for i in rng.integers(2, len(mutated), 40):
        mutated[int(i)] = int(rng.integers(0, 256))
    big = max_side + 1
    return [
        ("random", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "image/png"),
        ("truncated", good[: len(good) // 2], "image/png"),
        ("text", b"hello, this is not a picture", "image/png"),
        ("over-cap", png(np.zeros((big, big, 3), np.uint8)), "image/png"),
        ("mutated-jpeg", bytes(mutated), "image/jpeg"),
        ("wrong-type", good, "text/plain"),
        ("empty", b"", "image/png"),
    ]


# ----------------------------------------------------------------------------- the server


def start_server(args) -> tuple[subprocess.Popen, str]:
    """``facesr serve`` on 127.0.0.1:0 with one thread; returns (process, base URL) once it listens."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "facesr.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--max-pixels",
        str(args.max_mpx),
        "--quiet",
    ]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    with open(args.server_log, "w") as log:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"facesr serve did not start (see {args.server_log})")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (psutil, else /proc/PID/status)."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """Samples the server's RSS every :data:`RSS_EVERY_S` seconds: ``samples`` = [(seconds from start, bytes)]."""

    def __init__(self, pid: int, t0: float):
        super().__init__(daemon=True)
        self.pid, self.t0, self.samples, self.stop = pid, t0, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic() - self.t0, rss_bytes(self.pid)))
            except Exception:  # the process is gone
                return
            self.stop.wait(RSS_EVERY_S)


# ----------------------------------------------------------------------------- the clients


class Soak:
    """The shared state of the client threads: counts, failures, the inputs and their references."""

    def __init__(self, url: str, faces, face_refs, photos, photo_refs, bad, seed: int):
        import httpx

        self.url, self.faces, self.face_refs, self.photos, self.photo_refs, self.bad = (
            url,
            faces,
            face_refs,
            photos,
            photo_refs,
            bad,
        )
        self.httpx = httpx
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.statuses: collections.Counter = collections.Counter()
        self.problems: list[str] = []
        self.requests = 0
        self.fetched_ids: list[tuple[float, str]] = []
        self.seed = seed
        self.think_s = 0.0

    def count(self, kind: str, status: int | str, n_requests: int = 1) -> None:
        with self.lock:
            self.counts[kind] += 1
            self.statuses[f"{kind}:{status}"] += 1
            self.requests += n_requests
            if isinstance(status, int) and status >= 500:
                self.statuses["5xx"] += 1

    def problem(self, what: str) -> None:
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(ascii(what)[:200])
            self.statuses["problems"] += 1

    def check_pixels(self, kind: str, got: bytes, want: np.ndarray) -> None:
        out = decode(got)
        if out.shape != want.shape or not np.array_equal(out, want):
            self.problem(f"{kind}: answer differs from Restorer's output ({out.shape} vs {want.shape})")
            with self.lock:
                self.statuses["mismatch"] += 1
        else:
            with self.lock:
                self.statuses["pixel_equal"] += 1

    # ------------------------------------------------------------- one request of each kind

    def face(self, client, rng: random.Random) -> None:
        i = rng.randrange(len(self.faces))
        r = client.post(f"{self.url}/restore", files={"image": (f"f{i}.png", png(self.faces[i]), "image/png")})
        self.count("face", r.status_code)
        if r.status_code == 200:
            self.check_pixels("face", r.content, self.face_refs[i])
        else:
            self.problem(f"face: {r.status_code} {r.text[:120]}")

    def page(self, client, rng: random.Random) -> None:
        i = rng.randrange(len(self.faces))
        with client.stream(
            "POST", f"{self.url}/jobs", files={"image": (f"p{i}.png", png(self.faces[i]), "image/png")}
        ) as r:
            last = None
            for line in r.iter_lines():
                if line.strip():
                    last = json.loads(line)
        self.count("page", r.status_code, 4)
        if not last or last["state"] != "done":
            self.problem(f"page: job ended {last and last['state']}")
            return
        got = client.get(self.url + last["result"])
        self.check_pixels("page", got.content, self.face_refs[i])
        for key in ("bicubic", "input"):
            other = client.get(self.url + last[key])
            if other.status_code != 200:
                self.problem(f"page: {key}.png answered {other.status_code}")
            if other.status_code >= 500:
                with self.lock:
                    self.statuses["5xx"] += 1
        with self.lock:
            self.fetched_ids.append((time.monotonic(), last["id"]))

    def photo(self, client, rng: random.Random) -> None:
        if not self.photos:
            return self.face(client, rng)
        i = rng.randrange(len(self.photos))
        r = client.post(
            f"{self.url}/restore",
            data={"mode": "photo"},
            files={"image": (f"photo{i}.png", png(self.photos[i]), "image/png")},
        )
        self.count("photo", r.status_code)
        if r.status_code == 200:
            self.check_pixels("photo", r.content, self.photo_refs[i])
        else:
            self.problem(f"photo: {r.status_code} {r.text[:120]}")

    def bad_file(self, client, rng: random.Random) -> None:
        what, body, ctype = self.bad[rng.randrange(len(self.bad))]
        if what == "wrong-type" or rng.random() < 0.5:  # (a form part's own type is not checked: raw only)
            r = client.post(f"{self.url}/restore", content=body, headers={"content-type": ctype})
        else:
            r = client.post(f"{self.url}/restore", files={"image": (f"{what}.bin", body, ctype)})
        self.count("bad", r.status_code)
        one_line = r.text.endswith("\n") and "\n" not in r.text.rstrip("\n") and "Traceback" not in r.text
        if not (400 <= r.status_code < 500 and one_line):
            self.problem(f"bad file {what}: {r.status_code} {r.text[:120]!r}")

    def cancel(self, client, rng: random.Random) -> None:
        i = rng.randrange(len(self.faces))
        big = cv2.resize(self.faces[i][..., :3], (96, 96), interpolation=cv2.INTER_CUBIC)
        with client.stream("POST", f"{self.url}/jobs", files={"image": ("c.png", png(big), "image/png")}) as r:
            lines = r.iter_lines()
            first = json.loads(next(lines))
            d = client.delete(f"{self.url}/jobs/{first['id']}")
            last = first
            for line in lines:
                if line.strip():
                    last = json.loads(line)
        self.count("cancel", d.status_code, 2)
        if d.status_code != 200 or last["state"] not in ("cancelled", "done"):
            self.problem(f"cancel: DELETE {d.status_code}, job ended {last['state']}")

    def disconnect(self, client, rng: random.Random) -> None:
        i = rng.randrange(len(self.faces))
        body = png(cv2.resize(self.faces[i][..., :3], (80, 80), interpolation=cv2.INTER_CUBIC))
        head = (
            f"POST /restore HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        host, port = self.url.rsplit("/", 1)[-1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            if rng.random() < 0.5:
                s.sendall(head + body[: len(body) // 2])  # hangs up mid-upload
                kind = "disconnect-upload"
            else:
                s.sendall(head + body)  # hangs up while its job waits or runs
                time.sleep(rng.uniform(0.0, 0.3))
                kind = "disconnect-job"
        self.count(kind, "closed")

    def info(self, client, rng: random.Random) -> None:
        path = rng.choice(["/healthz", "/api/info", "/", "/jobs/no-such-job"])
        r = client.get(self.url + path)
        self.count("info", r.status_code)
        if r.status_code >= 500 or (path != "/jobs/no-such-job" and r.status_code != 200):
            self.problem(f"info {path}: {r.status_code}")

    # ------------------------------------------------------------- the loop

    def client_loop(self, k: int, done: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + k)
        kinds, weights = list(MIX), list(MIX.values())
        actions = {
            "face": self.face,
            "page": self.page,
            "photo": self.photo,
            "bad": self.bad_file,
            "cancel": self.cancel,
            "disconnect": self.disconnect,
            "info": self.info,
        }
        with self.httpx.Client(timeout=120) as client:
            while not done.wait(rng.uniform(0, 2 * self.think_s)):
                kind = rng.choices(kinds, weights)[0]
                try:
                    actions[kind](client, rng)
                except Exception as exc:  # a client-side failure is a finding, not a crash of the soak
                    self.problem(f"{kind}: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- the end


def check_evicted(soak: Soak, client, grace_s: float = 60.0) -> str:
    """A result fetched more than ``grace_s`` seconds ago must answer 410 now."""
    old = [jid for t, jid in soak.fetched_ids if time.monotonic() - t > grace_s + 2]
    if not old:
        return "no result old enough"
    r = client.get(f"{soak.url}/jobs/{old[0]}/result.png")
    return f"{r.status_code} {r.text.strip()[:100]}"


def sigterm_with_job(proc: subprocess.Popen, url: str, photo: np.ndarray | None) -> float | None:
    """Seconds from SIGTERM to exit while a job runs (a 128 x 128 face, or a photo)."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    body = png(photo if photo is not None else np.full((128, 128, 3), 100, np.uint8))
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(
        (
            f"POST /restore?mode={'photo' if photo is not None else 'face'} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None
    finally:
        s.close()
    return time.monotonic() - t0


def per_minute(samples: list[tuple[float, int]]) -> list[float]:
    """The RSS (MiB) sampled closest to each whole minute of the run."""
    if not samples:
        return []
    last = int(samples[-1][0] // 60)
    return [round(min(samples, key=lambda s: abs(s[0] - 60 * m))[1] / 2**20, 1) for m in range(last + 1)]


def summary(soak: Soak, sampler: Sampler, elapsed: float, evicted: str, stop_s: float | None) -> dict:
    samples = sampler.samples
    mb = [round(b / 2**20, 1) for _, b in samples]

    def at(frac: float) -> float:
        t = frac * elapsed
        return min(zip(samples, mb), key=lambda s: abs(s[0][0] - t))[1] if samples else 0.0

    return {
        "requests": soak.requests,
        "minutes": round(elapsed / 60, 2),
        "kinds": dict(soak.counts),
        "statuses": dict(sorted(soak.statuses.items())),
        "5xx": soak.statuses["5xx"],
        "mismatches": soak.statuses["mismatch"],
        "pixel_equal_answers": soak.statuses["pixel_equal"],
        "rss_mb": {
            "start": mb[0] if mb else 0,
            "middle": at(0.5),
            "end": at(1.0),
            "max": max(mb or [0]),
            "samples": len(mb),
            "per_minute": per_minute(samples),
        },
        "evicted_result": evicted,
        "sigterm_exit_s": None if stop_s is None else round(stop_s, 2),
        "problems": soak.problems,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-requests", type=int, default=1000)
    ap.add_argument("--min-minutes", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=10000)
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--think", type=float, default=0.8, help="mean seconds each client waits between requests (uniform 0..2x)"
    )
    ap.add_argument("--max-mpx", type=float, default=0.25, help="the server's --max-pixels (megapixels)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    ap.add_argument("--server-log", default="soak_server.log")
    args = ap.parse_args(argv)

    from facesr.web.photo import default_detector_missing

    faces = face_inputs(args.seed)
    photos = photo_inputs() if default_detector_missing() is None else []
    face_refs, photo_refs = references(args.checkpoint, faces, photos)
    proc, url = start_server(args)
    t0 = time.monotonic()
    sampler = Sampler(proc.pid, t0)
    sampler.start()
    soak = Soak(url, faces, face_refs, photos, photo_refs, bad_files(int((args.max_mpx * 1e6) ** 0.5)), args.seed)
    soak.think_s = args.think
    done = threading.Event()
    threads = [threading.Thread(target=soak.client_loop, args=(k, done), daemon=True) for k in range(args.clients)]
    for t in threads:
        t.start()
    try:
        while True:
            time.sleep(1.0)
            elapsed, n = time.monotonic() - t0, soak.requests
            enough = n >= args.min_requests and elapsed >= 60 * args.min_minutes
            if enough or n >= args.max_requests or elapsed >= 60 * args.max_minutes or proc.poll() is not None:
                break
            if int(elapsed) % 60 == 0:
                print(
                    f"soak: {elapsed / 60:.0f} min, {n} requests, {soak.statuses['5xx']} 5xx, "
                    f"{soak.statuses['mismatch']} mismatches",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        done.set()
        for t in threads:
            t.join(180)
    elapsed = time.monotonic() - t0
    time.sleep(2 * RSS_EVERY_S)  # idle: the last samples are the server at rest
    import httpx

    with httpx.Client(timeout=30) as client:
        evicted = check_evicted(soak, client)
    sampler.stop.set()
    stop_s = sigterm_with_job(proc, url, photos[-1] if photos else None) if proc.poll() is None else None
    result = summary(soak, sampler, elapsed, evicted, stop_s)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if result["5xx"] == 0 and result["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
