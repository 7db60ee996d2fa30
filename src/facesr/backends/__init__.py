"""Deprecated package: the OpenVINO runner moved to :mod:`facesr.inference.openvino`."""
