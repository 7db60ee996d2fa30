"""The JSON answers of ``facesr serve``, as Pydantic models: they validate what is sent and document it at /docs.

Sizes are ``[width, height]`` in pixels; times are seconds.  Fields a job has only once it is done
(``output_size``, ``scale``, the PNG URLs and, in whole-photo mode, the faces) are left out of the JSON
until then (routes dump with ``exclude_unset``), as they always were.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FaceBox(BaseModel):
    """One face found in whole-photo mode, in pixels of the *output* image measured from its top-left corner."""

    box: list[float] = Field(description="[left, top, right, bottom] edges, output pixels")
    landmarks: list[list[float]] = Field(description="5 points [x, y] (eyes, nose, mouth corners), output pixels")
    score: float = Field(description="the detector's confidence")
    size: float = Field(description="the face's width in input pixels")
    restored: bool
    skipped: Literal["small", "pose", "cap"] | None = Field(
        description="why the face was not restored: narrower than the minimum (small), could not be aligned (pose), "
        "or the photo had more faces than the server restores per photo (cap: the smallest are left)"
    )


class JobState(BaseModel):
    """A job's state: one object for ``GET /jobs/{id}``, one JSON line per change for ``POST /jobs``."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    position: int = Field(description="jobs that will run before this one (0 when running or ended)")
    done: int = Field(description="units (tiles or faces) done")
    total: int = Field(description="units in all; 0 until known")
    unit: Literal["tile", "face"]
    elapsed_s: float | None = Field(description="seconds running (None while queued)")
    waited_s: float = Field(description="seconds in the queue")
    eta_s: float | None = Field(description="estimated seconds left while running, else None")
    input_size: list[int] = Field(description="[width, height] of the decoded input")
    name: str = Field(description="the uploaded file's name")
    mode: Literal["face", "photo"]
    note: str | None = Field(description="a note for inputs much larger than a face crop")
    error: str | None = Field(description="one line saying why the job failed (state failed only)")
    download_name: str = Field(description="suggested file name of the result")
    output_size: list[int] | None = Field(None, description="done only: [width, height] of the result")
    scale: int | None = Field(None, description="done only: output pixels per input pixel")
    faces: list[FaceBox] | None = Field(None, description="done, whole-photo mode: restored faces, then skipped")
    faces_restored: int | None = Field(None, description="done, whole-photo mode: faces restored")
    faces_skipped: int | None = Field(None, description="done, whole-photo mode: faces found but not restored")
    faces_over_cap: int | None = Field(
        None,
        description="done, whole-photo mode: faces left out (among the skipped "
        "ones) because the photo had more than max_faces",
    )
    faces_note: str | None = Field(
        None, description="done, whole-photo mode: a sentence when faces were left out because of the cap"
    )
    result: str | None = Field(None, description="done only: URL of the restored PNG")
    bicubic: str | None = Field(None, description="done only: URL of the bicubic enlargement to the same size")
    input: str | None = Field(None, description="done only: URL of the decoded input as PNG")


class Health(BaseModel):
    """``GET /healthz``: the server is up; which model it runs and how busy it is."""

    status: Literal["ok"] = "ok"
    model: str
    device: str
    scale: int = Field(description="output pixels per input pixel of the model")
    running: int = Field(description="jobs running (0 or 1)")
    queued: int = Field(description="jobs waiting")
    max_queued: int = Field(description="most jobs waiting before new ones get HTTP 503")


class Example(BaseModel):
    """An example input the page offers (a PNG at ``url``)."""

    id: str
    title: str
    url: str
    width: int
    height: int


class Info(BaseModel):
    """``GET /api/info``: the server's limits and examples, for the page."""

    scale: int = Field(description="output pixels per input pixel of the model")
    max_pixels: int = Field(description="most input pixels (width x height)")
    max_side: int = Field(description="the side of the largest square input")
    max_upload_bytes: int = Field(description="most request-body bytes")
    max_queued: int
    face_note_pixels: int = Field(description="inputs with more pixels get a note")
    face_note: str = Field(description="that note; {w} and {h} stand for the input's size")
    photo_mode: bool = Field(description="whether whole-photo mode (mode=photo) is available")
    photo_scale: int = Field(description="output pixels per input pixel in whole-photo mode")
    max_faces: int = Field(description="most faces restored per photo in whole-photo mode (the largest ones)")
    photo_suggest_side: int = Field(description="pictures with a longer side are suggested for whole-photo mode")
    formats: str = Field(description="the accepted image formats, in words")
    examples: list[Example]


def job_line(state: JobState) -> dict:
    """The JSON-ready dict of a job state, without the fields it does not have yet."""
    return state.model_dump(mode="json", exclude_unset=True)
