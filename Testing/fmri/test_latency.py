"""Voxel-wise lag maps and region-wise time-delay structure."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.latency import (
    PHAT_MIN_RELATIVE_MAGNITUDE,
    delay_matrix,
    lag_map,
    lag_projection,
    latency_eigenvectors,
    parabola_value,
    parabolic_peak,
    phase_transform,
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


def test_parabola_value_interpolates_the_three_samples():
    left, centre, right = 0.2, 1.0, 0.6
    for offset, expected in ((-1.0, left), (0.0, centre), (1.0, right)):
        assert parabola_value(left, centre, right, offset) == pytest.approx(expected)
    vertex, height = parabolic_peak(left, centre, right)
    assert parabola_value(left, centre, right, vertex) == pytest.approx(height)


ESTIMATORS = {
    "plain": {},
    "tapered": {"taper": "hamming"},
    "rapidtide (tapered, PHAT)": {"taper": "hamming", "weighting": "phat"},
}


@pytest.mark.parametrize("options", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_sub_tr_lags_recovered_against_a_given_reference(options):
    rng = np.random.default_rng(0)
    signal = _band_limited_signal(rng)
    times = np.arange(300) * TR
    shifts = np.array([0.0, 0.3, 0.7, 1.3, -0.9, 2.6])
    data = np.stack([signal(times - shift) for shift in shifts]) + 0.01 * rng.standard_normal(
        (shifts.size, 300)
    )
    maps = lag_map(data.reshape(2, 3, 300), TR, reference=signal(times), max_lag=6.0, **options)
    np.testing.assert_allclose(maps.lag.ravel(), shifts, atol=0.1)
    assert np.all(maps.peak_correlation > 0.95) and maps.n_failed == 0


def test_phat_reports_the_tapered_correlation_at_its_lag():
    rng = np.random.default_rng(6)
    signal = _band_limited_signal(rng)
    times = np.arange(260) * TR
    shifts = rng.uniform(-3.0, 3.0, 40)
    noise_sd = np.linspace(0.1, 1.5, 40) * np.std(signal(times))
    data = np.stack([signal(times - shift) for shift in shifts])
    data += noise_sd[:, None] * rng.standard_normal(data.shape)
    tapered = lag_map(data, TR, reference=signal(times), max_lag=8.0, taper="hamming")
    phat = lag_map(data, TR, reference=signal(times), max_lag=8.0, taper="hamming", weighting="phat")
    close = np.abs(phat.lag - tapered.lag) < 0.3
    assert close.sum() >= 30
    np.testing.assert_allclose(phat.peak_correlation[close], tapered.peak_correlation[close], atol=0.02)


def test_phase_transform_keeps_the_phase_of_the_strong_bins_only():
    magnitude = np.array([0.0, 1.0, 0.05, 0.5, 2.0, 0.1])
    phase = np.linspace(-3.0, 3.0, magnitude.size)
    weighted = phase_transform(magnitude * np.exp(1j * phase))
    strong = magnitude > PHAT_MIN_RELATIVE_MAGNITUDE * magnitude.max()
    np.testing.assert_allclose(np.abs(weighted), strong.astype(float))
    np.testing.assert_allclose(np.angle(weighted[strong]), phase[strong])
    np.testing.assert_array_equal(phase_transform(np.zeros((2, 4), dtype=complex)), 0.0)


def test_cubic_drifts_do_not_change_the_lags():
    rng = np.random.default_rng(4)
    signal = _band_limited_signal(rng)
    times = np.arange(260) * TR
    shifts = rng.uniform(-3.0, 3.0, 50)
    data = np.stack([signal(times - shift) for shift in shifts]) + 2.0 * rng.standard_normal((50, 260))
    abscissa = np.linspace(-1.0, 1.0, 260)
    drifts = rng.normal(0.0, 20.0, (50, 4)) @ np.stack([abscissa**power for power in range(4)])
    clean = lag_map(data, TR, max_lag=8.0)
    drifting = lag_map(data + drifts, TR, max_lag=8.0)
    np.testing.assert_allclose(drifting.lag, clean.lag, atol=1e-9)
    np.testing.assert_allclose(drifting.peak_correlation, clean.peak_correlation, atol=1e-9)
    undetrended = lag_map(data + drifts, TR, max_lag=8.0, detrend_order=0)
    assert np.nanmax(np.abs(undetrended.lag - clean.lag)) > 1e-6


def test_default_estimator_is_more_accurate_than_rapidtides_at_low_snr():
    """At the signal-to-noise ratio of single voxels, the taper and PHAT cost precision."""
    rng = np.random.default_rng(0)
    signal = _band_limited_signal(rng)
    times = np.arange(260) * TR
    shifts = rng.uniform(-4.0, 4.0, 1000)
    noise_sd = np.std(signal(times)) / 0.4
    data = np.stack([signal(times - shift) for shift in shifts])
    data += noise_sd * rng.standard_normal(data.shape)
    errors = {
        name: np.abs(lag_map(data, TR, reference=signal(times), max_lag=8.0, **options).lag - shifts)
        for name, options in ESTIMATORS.items()
    }
    median = {name: np.nanmedian(error) for name, error in errors.items()}
    assert median["plain"] < 0.25
    assert median["plain"] < 0.8 * median["rapidtide (tapered, PHAT)"]
    assert median["plain"] < 0.9 * median["tapered"]


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


@pytest.mark.parametrize(
    ("options", "message"),
    [({"taper": "hann"}, "taper 'hann' is unknown"), ({"weighting": "scot"}, "weighting 'scot' is unknown")],
)
def test_unknown_estimator_options_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        lag_map(np.random.default_rng(3).standard_normal((4, 100)), 1.5, **options)


def test_band_above_nyquist_is_refused():
    with pytest.raises(InputError, match="Nyquist"):
        lag_map(np.random.default_rng(3).standard_normal((4, 100)), 4.0, band=(0.01, 0.15))
