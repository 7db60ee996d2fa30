"""Deprecated location: the OpenVINO runner now lives in :mod:`facesr.inference.openvino`."""

from __future__ import annotations

from ..inference.openvino import *  # noqa: F403
from ..inference.openvino import OpenVinoModel, OpenVinoRunner, quantize_int8, read_model, save_ir  # noqa: F401
