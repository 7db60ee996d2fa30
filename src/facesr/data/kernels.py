"""Gaussian blur kernels with MMagic's exact arithmetic.

Offsets run from ``-(K//2)`` to ``K//2``; ``x`` is the column offset and
``y`` the row offset.  The covariance is built in float32 (as MMagic's
``get_rotated_sigma_matrix`` does), the density in float64, and the kernel is
normalised twice (``bivariate_gaussian`` and its random wrapper both divide by
the sum), which matters for bit-exact output after uint8 filtering.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def mesh_grid(kernel_size: int) -> np.ndarray:
    """(K, K, 2) float64 grid of ``(x, y)`` offsets, read-only and cached."""
    r = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(r, r)
    grid = np.stack([xx, yy], axis=-1)
    grid.setflags(write=False)
    return grid


def sigma_matrix(sigma_x: float, sigma_y: float, theta: float, isotropic: bool) -> np.ndarray:
    """2x2 float32 covariance: ``sigma_x^2 I`` (iso) or ``R diag(sx^2, sy^2) R^T`` (aniso)."""
    if isotropic:
        return np.array([[sigma_x**2, 0], [0, sigma_x**2]]).astype(np.float32)
    diag = np.array([[sigma_x**2, 0], [0, sigma_y**2]]).astype(np.float32)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]).astype(np.float32)
    return np.matmul(rot, np.matmul(diag, rot.T))


def gaussian_kernel(
    kernel_size: int, sigma_x: float, sigma_y: float = 0.0, theta: float = 0.0, isotropic: bool = True
) -> np.ndarray:
    """Normalised (sums to 1) float64 ``K x K`` Gaussian kernel, ``exp(-0.5 v^T S^-1 v)``."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    grid = mesh_grid(kernel_size)
    inv = np.linalg.inv(sigma_matrix(sigma_x, sigma_y, theta, isotropic))
    k = np.exp(-0.5 * np.sum(np.matmul(grid, inv) * grid, 2))
    k = k / np.sum(k)
    return k / np.sum(k)
