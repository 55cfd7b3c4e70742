"""Voxel-wise lag maps and region-wise time-delay structure."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.latency import (
    delay_matrix,
    lag_map,
    lag_projection,
    latency_eigenvectors,
    parabolic_peak,
)
from SpatioTemporalCommonLib.errors import InputError

TR = 1.5


def _band_limited_signal(rng: np.random.Generator, n_components: int = 60):
    """A sum of sinusoids in 0.012-0.14 Hz, evaluable at any time (exact sub-TR shifts)."""
    frequencies = np.linspace(0.012, 0.14, n_components)
    amplitudes = rng.standard_normal(n_components)
    phases = rng.uniform(0, 2 * np.pi, n_components)

    def evaluate(times: np.ndarray) -> np.ndarray:
        return np.cos(2 * np.pi * frequencies * times[..., None] + phases) @ amplitudes

    return evaluate


def test_parabolic_peak_is_exact_for_a_parabola():
    vertex, height = 0.37, 2.0
    samples = height - 0.8 * (np.array([-1.0, 0.0, 1.0]) - vertex) ** 2
    offset, value = parabolic_peak(*samples)
    assert offset == pytest.approx(vertex) and value == pytest.approx(height)


def test_sub_tr_lags_recovered_against_a_given_reference():
    rng = np.random.default_rng(0)
    signal = _band_limited_signal(rng)
    times = np.arange(300) * TR
    shifts = np.array([0.0, 0.3, 0.7, 1.3, -0.9, 2.6])
    data = np.stack([signal(times - shift) for shift in shifts]) + 0.01 * rng.standard_normal(
        (shifts.size, 300)
    )
    maps = lag_map(data.reshape(2, 3, 300), TR, reference=signal(times), max_lag=6.0)
    np.testing.assert_allclose(maps.lag.ravel(), shifts, atol=0.1)
    assert np.all(maps.peak_correlation > 0.95) and maps.n_failed == 0


def test_global_mean_reference_and_lag_limit():
    rng = np.random.default_rng(1)
    signal = _band_limited_signal(rng)
    times = np.arange(260) * TR
    shifts = np.concatenate([np.zeros(40), [0.3, 0.7, 1.3, 9.0]])
    data = np.stack([signal(times - shift) for shift in shifts]) + 0.01 * rng.standard_normal(
        (shifts.size, 260)
    )
    data[0] = 3.0
    maps = lag_map(data, TR, max_lag=4.0)
    np.testing.assert_allclose(maps.lag[40:43], shifts[40:43], atol=0.1)
    assert np.isnan(maps.lag[0]) and np.isnan(maps.lag[43]) and maps.n_failed == 2


def test_delay_matrix_projection_and_eigenvectors():
    rng = np.random.default_rng(2)
    signal = _band_limited_signal(rng)
    times = np.arange(400) * TR
    shifts = np.array([1.1, -0.4, 0.0, 2.2, 0.6, -1.5, 6.5])
    series = np.stack([signal(times - shift) for shift in shifts]) + 0.05 * rng.standard_normal(
        (shifts.size, 400)
    )
    result = delay_matrix(series, TR, max_lag=4.0)
    delays = result.delays
    finite = np.isfinite(delays)
    np.testing.assert_array_equal(finite, finite.T)
    np.testing.assert_allclose(delays[finite], -delays.T[finite])
    np.testing.assert_array_equal(np.diag(delays), 0.0)
    expected = shifts[:, None] - shifts[None, :]
    within = np.abs(expected) <= 3.5
    np.testing.assert_allclose(delays[within], expected[within], atol=0.2)
    assert np.all(np.isnan(delays[np.abs(expected) > 4.5]))
    core = slice(0, 6)
    core_delays = delays[core, core]
    unweighted = lag_projection(core_delays)
    weighted = lag_projection(core_delays, np.abs(result.peak_correlation[core, core]))
    np.testing.assert_array_equal(np.argsort(unweighted), np.argsort(shifts[core]))
    np.testing.assert_array_equal(np.argsort(weighted), np.argsort(shifts[core]))
    components, explained = latency_eigenvectors(core_delays, n_components=2)
    assert abs(np.corrcoef(components[0], shifts[core])[0, 1]) > 0.99
    assert explained[0] > 0.95


def test_band_above_nyquist_is_refused():
    with pytest.raises(InputError, match="Nyquist"):
        lag_map(np.random.default_rng(3).standard_normal((4, 100)), 4.0, band=(0.01, 0.15))
