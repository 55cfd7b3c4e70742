"""Rigid motion correction and slice-timing correction."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from FMRIDynamicsLib.motion import motion_correct, slice_timing_correct
from SpatioTemporalCommonLib.errors import InputError

SHAPE = (20, 32, 32)
SPACING = (3.0, 2.5, 2.5)
MOTIONS = [
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.02, -0.03, 0.04, 1.2, -0.8, 0.5),
    (-0.035, 0.01, 0.02, -0.6, 1.5, -1.1),
]


def _moved_phantoms():
    """Frames of a smooth analytic phantom moved by MOTIONS (frame(T(p)) = phantom(p))."""
    rng = np.random.default_rng(0)
    extent = np.array(SHAPE[::-1]) * np.array(SPACING[::-1])
    centres = rng.uniform(0.25, 0.75, (6, 3)) * extent
    widths = rng.uniform(4.0, 9.0, (6, 3))
    amplitudes = rng.uniform(0.5, 1.5, 6)
    k, j, i = np.meshgrid(*[np.arange(size) for size in SHAPE], indexing="ij")
    points = np.stack([i * SPACING[2], j * SPACING[1], k * SPACING[0]], axis=-1)
    centre = (np.array(SHAPE[::-1]) - 1) / 2.0 * np.array(SPACING[::-1])

    def phantom(p):
        return sum(
            a * np.exp(-0.5 * (((p - c) / w) ** 2).sum(-1))
            for a, c, w in zip(amplitudes, centres, widths, strict=True)
        )

    frames = []
    for rx, ry, rz, tx, ty, tz in MOTIONS:
        rotation = np.array(
            sitk.Euler3DTransform(centre.tolist(), rx, ry, rz, (tx, ty, tz)).GetMatrix()
        ).reshape(3, 3)
        frames.append(phantom((points - centre - np.array([tx, ty, tz])) @ rotation + centre))
    return np.stack(frames, axis=-1)


@pytest.mark.parametrize("metric", ["mean_squares", "mattes"])
def test_known_rigid_motion_is_recovered(metric):
    series = _moved_phantoms()
    result = motion_correct(series, SPACING, reference=0, metric=metric)
    error = result.parameters - np.array(MOTIONS)
    assert np.degrees(np.abs(error[:, :3])).max() < 0.2
    assert np.abs(error[:, 3:]).max() < 0.1
    interior = (slice(4, -4), slice(6, -6), slice(6, -6))
    misalignment = np.abs(series[interior][..., 1:] - series[interior][..., :1]).max()
    residual = np.abs(result.corrected[interior][..., 1:] - series[interior][..., :1]).max()
    assert residual < 0.3 * misalignment  # what remains is linear-interpolation blur of sharp blobs


def _sampled_sinusoid(slice_times, tr, n_frames, frequency=0.05, phase=0.3):
    frames = np.arange(n_frames) * tr
    acquired = np.sin(2 * np.pi * frequency * (frames[None, :] + slice_times[:, None]) + phase)
    return acquired[:, None, None, :] * np.ones((1, 2, 3, 1)), frames


@pytest.mark.parametrize("method", ["fourier", "cubic"])
def test_slice_timing_recovers_a_sinusoid_at_the_reference_time(method):
    tr, n_frames, reference_time = 2.0, 120, 0.9
    slice_times = np.array([0.0, 1.0, 0.333, 1.333, 0.667, 1.667])  # interleaved
    series, frames = _sampled_sinusoid(slice_times, tr, n_frames)
    corrected = slice_timing_correct(series, tr, slice_times, reference_time, slice_axis=0, method=method)
    truth = np.sin(2 * np.pi * 0.05 * (frames + reference_time) + 0.3)
    margin = slice(10, -10)
    assert np.abs(corrected - truth)[..., margin].max() < 2e-3
    assert np.abs(series - truth)[..., margin].max() > 0.2


def test_slice_at_reference_time_is_unchanged():
    slice_times = np.array([0.0, 0.5, 1.0, 1.5])
    series = np.random.default_rng(1).standard_normal((4, 3, 3, 40))
    for method in ("fourier", "cubic"):
        corrected = slice_timing_correct(series, 2.0, slice_times, reference_time=1.0, method=method)
        np.testing.assert_allclose(corrected[2], series[2], atol=1e-12)


def test_slice_times_in_milliseconds_are_refused():
    with pytest.raises(InputError, match="milliseconds"):
        slice_timing_correct(np.zeros((4, 3, 3, 10)), 2.0, np.array([0.0, 500.0, 1000.0, 1500.0]))
