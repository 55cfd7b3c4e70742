"""Tests of FMRIDynamicsLib.connectivity: region series, seed maps, matrices, coherence, dynamics."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.connectivity import (
    coherence_matrix,
    correlation_matrix,
    fisher_z,
    ledoit_wolf_shrinkage,
    partial_correlation_matrix,
    region_mean_series,
    seed_correlation_map,
    sliding_window_connectivity,
    window_taper,
)
from SpatioTemporalCommonLib.errors import InputError

TR = 2.0


# --------------------------------------------------------------------------------------------------
# Region series and seed maps
# --------------------------------------------------------------------------------------------------
def test_region_mean_series_averages_each_label_in_the_requested_order():
    rng = np.random.default_rng(21)
    data = rng.standard_normal((3, 4, 5, 12))
    labels = rng.integers(0, 4, size=(3, 4, 5))
    regions = region_mean_series(data, labels, region_ids=[3, 1])
    np.testing.assert_array_equal(regions.region_ids, [3, 1])
    for row, label in enumerate((3, 1)):
        np.testing.assert_allclose(regions.series[row], data[labels == label].mean(axis=0), rtol=1e-12)
        assert regions.n_voxels[row] == np.sum(labels == label)
    np.testing.assert_array_equal(region_mean_series(data, labels).region_ids, [1, 2, 3])


def test_region_without_voxels_is_refused():
    labels = np.zeros((2, 2, 2), dtype=int)
    labels[0] = 1
    with pytest.raises(InputError, match=r"regions \[5\] have no voxel"):
        region_mean_series(np.ones((2, 2, 2, 10)), labels, region_ids=[1, 5])


def test_seed_correlation_map_matches_corrcoef_and_flags_constant_voxels():
    rng = np.random.default_rng(22)
    series = rng.standard_normal((4, 5, 30))
    series[2, 3] = 1.0
    seed = series[0, 0] + 0.5 * rng.standard_normal(30)
    correlation = seed_correlation_map(series, seed)
    for index in np.ndindex(4, 5):
        if index != (2, 3):
            assert correlation[index] == pytest.approx(np.corrcoef(series[index], seed)[0, 1], abs=1e-12)
    assert np.isnan(correlation[2, 3])
    with pytest.raises(InputError, match="seed series is constant"):
        seed_correlation_map(series, np.ones(30))


# --------------------------------------------------------------------------------------------------
# Static matrices
# --------------------------------------------------------------------------------------------------
def test_correlation_matrix_matches_corrcoef():
    rng = np.random.default_rng(23)
    series = rng.standard_normal((6, 40)) + rng.standard_normal(40)
    np.testing.assert_allclose(correlation_matrix(series), np.corrcoef(series), atol=1e-12)
    series[2] = 3.0
    matrix = correlation_matrix(series)
    assert np.isnan(matrix[2]).all() and np.isnan(matrix[:, 2]).all() and matrix[0, 0] == 1.0


def _partial_by_regression(series: np.ndarray, a: int, b: int) -> float:
    """Correlation of the residuals of a and b after regressing out every other region (and a constant)."""
    others = np.delete(series, [a, b], axis=0)
    design = np.column_stack([np.ones(series.shape[1]), others.T])
    residuals = [series[k] - design @ np.linalg.lstsq(design, series[k], rcond=None)[0] for k in (a, b)]
    return float(np.corrcoef(*residuals)[0, 1])


def test_partial_correlation_equals_residual_correlation_and_breaks_a_chain():
    rng = np.random.default_rng(24)
    n_frames = 2000
    x = rng.standard_normal(n_frames)
    y = x + 0.5 * rng.standard_normal(n_frames)
    z = y + 0.5 * rng.standard_normal(n_frames)
    w = rng.standard_normal(n_frames)
    series = np.stack([x, y, z, w])
    partial = partial_correlation_matrix(series)
    for a, b in [(0, 2), (0, 1), (1, 3), (2, 3)]:
        assert partial[a, b] == pytest.approx(_partial_by_regression(series, a, b), abs=1e-10)
    assert abs(partial[0, 2]) < 0.05 < 0.8 < correlation_matrix(series)[0, 2]


def test_ledoit_wolf_shrinkage_matches_its_definition():
    rng = np.random.default_rng(25)
    series = rng.standard_normal((10, 30)) + 0.8 * rng.standard_normal(30)
    z = (series - series.mean(axis=1, keepdims=True)) / series.std(axis=1, keepdims=True)
    n_frames = z.shape[1]
    sample = z @ z.T / n_frames
    delta = np.sum((sample - np.eye(10)) ** 2)
    beta = sum(np.sum((np.outer(z[:, t], z[:, t]) - sample) ** 2) for t in range(n_frames)) / n_frames**2
    assert ledoit_wolf_shrinkage(series) == pytest.approx(min(beta, delta) / delta, rel=1e-10)


def test_partial_correlation_needs_shrinkage_when_regions_outnumber_frames():
    rng = np.random.default_rng(26)
    series = rng.standard_normal((12, 10))
    with pytest.raises(InputError, match="singular"):
        partial_correlation_matrix(series)
    shrunk = partial_correlation_matrix(series, shrinkage="ledoit-wolf")
    assert np.all(np.isfinite(shrunk)) and np.allclose(shrunk, shrunk.T)
    assert np.all(np.abs(shrunk[~np.eye(12, dtype=bool)]) < 1)


def test_fisher_z_inverts_tanh():
    r = np.array([[1.0, 0.3], [-0.95, np.nan]])
    z = fisher_z(r)
    assert z[0, 0] == np.inf and np.isnan(z[1, 1])
    np.testing.assert_allclose(np.tanh(z[[0, 1], [1, 0]]), [0.3, -0.95])
    with pytest.raises(InputError, match="outside"):
        fisher_z(np.array([1.2]))


# --------------------------------------------------------------------------------------------------
# Coherence
# --------------------------------------------------------------------------------------------------
def test_coherence_matrix_matches_nitime(shared_data):
    nitime_timeseries = pytest.importorskip("nitime.timeseries")
    nitime_analysis = pytest.importorskip("nitime.analysis")
    table = np.genfromtxt(shared_data / "fmri" / "nitime" / "fmri_timeseries.csv", delimiter=",", names=True)
    series = np.stack([table[name] for name in table.dtype.names])
    tr, band = 1.89, (0.02, 0.15)
    # nitime's default: Welch via matplotlib.mlab.csd, NFFT=64, 32-frame overlap, symmetric Hann
    # window, no detrending of the segments.
    analyzer = nitime_analysis.CoherenceAnalyzer(nitime_timeseries.TimeSeries(series, sampling_interval=tr))
    frequencies = np.asarray(analyzer.frequencies)
    in_band = (frequencies >= band[0]) & (frequencies <= band[1])
    reference = analyzer.coherence[:, :, in_band].mean(axis=-1)
    ours = coherence_matrix(series, tr, band, nfft=64, n_overlap=32, segment_detrend=None)
    assert np.max(np.abs(ours - reference)) < 1e-10


def test_coherence_of_shared_and_independent_signals():
    rng = np.random.default_rng(27)
    shared = rng.standard_normal(512)
    series = np.stack([shared + 0.1 * rng.standard_normal(512), shared + 0.1 * rng.standard_normal(512),
                       rng.standard_normal(512)])
    coherence = coherence_matrix(series, TR, (0.01, 0.2))
    np.testing.assert_allclose(np.diag(coherence), 1.0)
    assert coherence[0, 1] > 0.95 and coherence[0, 2] < 0.3
    with pytest.raises(InputError, match="fewer than one segment"):
        coherence_matrix(series[:, :50], TR, (0.01, 0.2))


# --------------------------------------------------------------------------------------------------
# Dynamic connectivity
# --------------------------------------------------------------------------------------------------
def test_rectangular_windows_equal_plain_correlations():
    rng = np.random.default_rng(28)
    series = rng.standard_normal((3, 60))
    dynamic = sliding_window_connectivity(series, TR, window_s=40.0, step_s=10.0, taper="rectangular")
    assert dynamic.matrices.shape == (9, 3, 3)
    for window, start in enumerate(range(0, 41, 5)):
        np.testing.assert_allclose(dynamic.matrices[window], np.corrcoef(series[:, start: start + 20]), atol=1e-12)
    np.testing.assert_allclose(dynamic.window_centres_s, (np.arange(9) * 5 + 9.5) * TR)
    np.testing.assert_allclose(dynamic.variability, dynamic.matrices.std(axis=0, ddof=1))


def test_dynamic_connectivity_tracks_a_sign_change():
    rng = np.random.default_rng(29)
    driver = rng.standard_normal(200)
    follower = np.concatenate([driver[:100], -driver[100:]]) + 0.2 * rng.standard_normal(200)
    dynamic = sliding_window_connectivity(np.stack([driver, follower]), TR, window_s=60.0, step_s=2.0)
    pair = dynamic.matrices[:, 0, 1]
    centres = dynamic.window_centres_s / TR
    assert np.all(pair[centres < 80] > 0.9) and np.all(pair[centres > 120] < -0.9)
    assert dynamic.variability[0, 1] > 0.5 and dynamic.variability[0, 0] == 0.0


def test_gaussian_taper_shape():
    weights = window_taper(30, TR, "gaussian")
    np.testing.assert_allclose(weights, weights[::-1])
    assert weights.max() == pytest.approx(1.0) and 0.45 < weights[0] < 0.6
    assert np.all(np.diff(weights[:15]) >= 0)


def test_dynamic_connectivity_refuses_series_shorter_than_the_window():
    with pytest.raises(InputError, match="fewer than the 30-frame window"):
        sliding_window_connectivity(np.random.default_rng(30).standard_normal((2, 25)), TR, 60.0, 2.0)
