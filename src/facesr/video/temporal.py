"""Temporal blending of restored faces in the aligned frame: where the input does not change, neither
does the output.

The x4 model sharpens, so it also magnifies the small frame-to-frame changes that a video codec
leaves in a still face; restored independently, a still face shimmers a little more than its bicubic
upscale.  Each track's restored 512x512 face is therefore blended with the previous frame's, pixel by
pixel, by a weight that falls to 0 where the aligned input changed: ``out_t = w * out_{t-1} +
(1 - w) * restored_t`` with ``w = strength * clip(1 - d / CHANGE_LEVELS, 0, 1)``, ``d`` the absolute
change of the aligned model input (grey levels, blurred over a pixel).  Motion, blinks and speech
change the input and pass at once; a static face averages over about ``(1 + w) / (1 - w)`` frames.
The aligned frame follows the face (tracking), so a panning face is static there.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Input change (grey levels, 0-255, aligned model-input grid) at which the blend weight reaches 0.
CHANGE_LEVELS = 8.0
#: Default weight of the previous output where the input did not change at all (0 turns blending off).
DEFAULT_STRENGTH = 0.6


class TemporalBlend:
    """Per-track state: the previous frame's aligned input (float32 HxW gray) and blended output
    (float32 512x512x3)."""

    def __init__(self, strength: float = DEFAULT_STRENGTH):
        if not 0 <= strength < 1:
            raise ValueError(f"temporal strength must be in [0, 1), got {strength}")
        self.strength = float(strength)
        self.state: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

    def __call__(self, track: int, frame: int, lq: np.ndarray, restored: np.ndarray) -> np.ndarray:
        """The restored face of ``track`` at ``frame`` blended with its previous one.

        Args:
            lq: the aligned model input, uint8 RGB (0-255), any square size.
            restored: the restored aligned face, uint8 RGB 512x512 (0-255).
        Returns uint8 RGB like ``restored`` (unchanged at a track's first frame or after a gap).
        """
        if self.strength == 0:
            return restored
        gray = cv2.GaussianBlur(cv2.cvtColor(lq, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
        cur = restored.astype(np.float32)
        prev = self.state.get(track)
        if prev is not None and prev[0] == frame - 1 and prev[1].shape == gray.shape:
            d = np.abs(gray - prev[1])
            w = self.strength * np.clip(1.0 - d / CHANGE_LEVELS, 0.0, 1.0)
            w = cv2.resize(w, (cur.shape[1], cur.shape[0]), interpolation=cv2.INTER_LINEAR)[..., None]
            cur = w * prev[2] + (1.0 - w) * cur
        self.state[track] = (frame, gray, cur)
        return np.clip(np.rint(cur), 0, 255).astype(np.uint8)
