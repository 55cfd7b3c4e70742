"""A small synthetic 4D series on an oblique, anisotropic grid (for the demo and self-tests)."""

from __future__ import annotations

import numpy as np

from .geometry import VolumeGeometry
from .series import Series


def oblique_geometry(shape_kji: tuple[int, int, int], spacing_ijk=(0.9, 1.1, 2.5), angle_deg: float = 15.0,
                     origin_ras=(-12.5, 20.0, 7.25)) -> VolumeGeometry:
    """A grid rotated by ``angle_deg`` about the superior axis then tilted, with anisotropic voxels (mm)."""
    a = np.deg2rad(angle_deg)
    about_s = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_r = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    affine = np.eye(4)
    affine[:3, :3] = about_r @ about_s @ np.diag(spacing_ijk)
    affine[:3, 3] = origin_ras
    return VolumeGeometry(affine, shape_kji)


def synthetic_series(n_frames: int = 12, shape_kji: tuple[int, int, int] = (6, 14, 16), tr_s: float = 2.0,
                     seed: int = 0) -> Series:
    """A Gaussian blob whose brightness rises and falls over time, plus mild noise.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape_kji : tuple of int
        Frame shape ``(k, j, i)``.
    tr_s : float
        Time between frames (s).
    seed : int
        Seed of the noise.
    """
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape_kji), indexing="ij")
    blob = np.exp(-(i**2 + j**2 + k**2) / 0.3)
    times = np.arange(n_frames) * tr_s
    uptake = (times / times[-1]) * np.exp(1.0 - 2.0 * times / times[-1])
    frames = 100.0 + 50.0 * uptake[:, None, None, None] * blob + rng.normal(0.0, 1.0, (n_frames, *shape_kji))
    return Series(frames.astype(np.float32), times, oblique_geometry(shape_kji), "synthetic (TR 2 s)", "synthetic")
