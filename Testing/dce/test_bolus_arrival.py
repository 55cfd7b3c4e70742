"""Tests of the bolus-arrival estimate (Cheong et al. 2003 linear-quadratic fit) on synthetic curves."""

from __future__ import annotations

import re

import numpy as np
import pytest
from DCEKineticsLib.aif import parker_aif
from DCEKineticsLib.bolus_arrival import baseline_frames_from_arrival, bolus_arrival_time
from SpatioTemporalCommonLib.errors import InputError


def _linear_quadratic(times: np.ndarray, arrival: np.ndarray) -> np.ndarray:
    """Curves that follow the model exactly (drifting baseline, quadratic rise) and then wash out."""
    rise = 0.3 + 0.0005 * times + 0.002 * np.clip(times - arrival[:, np.newaxis], 0.0, None) ** 2
    return np.where(times > arrival[:, np.newaxis] + 40.0, 0.5, rise)


def _tofts_tissue(times: np.ndarray, arrival: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tissue curves: Parker plasma AIF arriving at ``arrival`` convolved with a Tofts kernel."""
    fine = np.arange(0.0, times[-1] + 1.0, 0.1)
    curves = []
    for delay, ktrans, ve in zip(
        arrival, rng.uniform(0.05, 0.5, arrival.size), rng.uniform(0.1, 0.5, arrival.size), strict=True
    ):
        kernel = ktrans / 60.0 * np.exp(-ktrans / ve / 60.0 * fine)
        curves.append(
            np.interp(times, fine, np.convolve(parker_aif(fine, delay_s=delay), kernel)[: fine.size] * 0.1)
        )
    return np.array(curves)


@pytest.mark.parametrize(("refine", "tolerance_fraction"), [(False, 1.0), (True, 0.05)])
def test_exact_model_curves(refine: bool, tolerance_fraction: float) -> None:
    dt = 3.0
    times = np.arange(0.0, 240.0, dt)
    arrival = np.random.default_rng(1).uniform(15.0, 80.0, 200)
    estimate = bolus_arrival_time(_linear_quadratic(times, arrival), times, refine=refine, subdivisions=10)
    assert np.max(np.abs(estimate - arrival)) <= tolerance_fraction * dt + 1e-9


@pytest.mark.parametrize("dt", [1.0, 2.5, 5.0])
def test_arterial_curves_within_one_sample(dt: float) -> None:
    rng = np.random.default_rng(2)
    times = np.arange(0.0, 300.0, dt)
    arrival = rng.uniform(10.0, 60.0, 100)
    curves = np.array([parker_aif(times, delay_s=delay) for delay in arrival])
    noisy = curves + rng.normal(0.0, 0.01 * curves.max(), curves.shape)
    for data in (curves, noisy):
        assert np.max(np.abs(bolus_arrival_time(data, times) - arrival)) <= dt


def test_tissue_curves_within_one_sample() -> None:
    rng = np.random.default_rng(4)
    dt = 3.0
    times = np.arange(0.0, 300.0, dt)
    arrival = rng.uniform(10.0, 60.0, 100)
    curves = _tofts_tissue(times, arrival, rng)
    assert np.max(np.abs(bolus_arrival_time(curves, times) - arrival)) <= dt


def test_curves_without_arrival_are_nan() -> None:
    times = np.arange(0.0, 100.0, 2.0)
    curves = np.vstack([np.full(times.size, 3.0), 5.0 - 0.01 * times, np.where(times > 20, 1.0, 0.0)])
    curves[2, 30] = np.nan
    assert np.isnan(bolus_arrival_time(curves, times)).all()


def test_maps_keep_their_shape() -> None:
    times = np.arange(0.0, 120.0, 2.0)
    arrival = np.random.default_rng(6).uniform(20.0, 40.0, 24)
    curves = _linear_quadratic(times, arrival).reshape(2, 3, 4, times.size)
    estimate = bolus_arrival_time(curves, times)
    assert estimate.shape == (2, 3, 4)
    np.testing.assert_allclose(estimate.reshape(-1), arrival, atol=0.1 + 1e-9)


def test_baseline_frames_from_arrival() -> None:
    times = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    mask = baseline_frames_from_arrival(np.array([5.0, np.nan, 100.0]), times, skip_first_frames=1)
    np.testing.assert_array_equal(
        mask,
        [[False, True, True, False, False], [False] * 5, [False, True, True, True, True]],
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"times_s": np.arange(9.0)}, "give exactly one time (s) per frame"),
        ({"times_s": np.r_[0.0, 2.0, 2.0, np.arange(3.0, 10.0)]}, "sort the frames by acquisition time"),
        ({"times_s": np.r_[np.nan, np.arange(1.0, 10.0)]}, "give finite times in seconds"),
        ({"curves": np.ones((2, 3)), "times_s": np.arange(3.0)}, "give at least 4 frames"),
        ({"subdivisions": 0}, "give a whole number of grid steps >= 1"),
        ({"fit_end_fraction": 0.0}, "outside (0, 1]"),
    ],
)
def test_invalid_input_names_the_fix(arguments: dict, message: str) -> None:
    call = {"curves": np.ones((2, 10)), "times_s": np.arange(10.0)}
    call.update(arguments)
    with pytest.raises(InputError, match=re.escape(message)):
        bolus_arrival_time(**call)
