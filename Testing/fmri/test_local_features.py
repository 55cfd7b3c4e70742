"""Tests of FMRIDynamicsLib.local_features: ALFF, ReHo, intrinsic timescales, sample entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from FMRIDynamicsLib.cleaning import clean_signals
from FMRIDynamicsLib.local_features import (
    autocorrelation,
    low_frequency_amplitude,
    mean_normalised_alff,
    neighbourhood_offsets,
    regional_homogeneity,
    sample_entropy,
    timescale_acf_half_width,
    timescale_positive_acf_sum,
)
from scipy.stats import rankdata
from SpatioTemporalCommonLib.errors import InputError

TR = 2.0


# --------------------------------------------------------------------------------------------------
# ALFF
# --------------------------------------------------------------------------------------------------
def test_alff_of_pure_sinusoids_in_and_out_of_band():
    n_frames = 200  # bins every 1 / 400 s = 0.0025 Hz; 0.01-0.08 Hz holds bins 4..32 (29 bins)
    frames = np.arange(n_frames)
    amplitude = 3.0
    in_band = 50.0 + amplitude * np.sin(2 * np.pi * 12 * frames / n_frames)  # 0.03 Hz
    out_of_band = 50.0 + amplitude * np.sin(2 * np.pi * 60 * frames / n_frames)  # 0.15 Hz
    result = low_frequency_amplitude(np.stack([in_band, out_of_band]), TR, detrend_order=0)
    assert result.n_band_bins == 29
    np.testing.assert_allclose(result.alff, [amplitude / 29, 0.0], atol=1e-12)
    np.testing.assert_allclose(result.falff, [1.0, 0.0], atol=1e-12)


def test_falff_splits_amplitude_between_band_and_full_range():
    n_frames = 200
    frames = np.arange(n_frames)
    series = 2.0 * np.cos(2 * np.pi * 20 * frames / n_frames) + 1.0 * np.cos(2 * np.pi * 80 * frames / n_frames)
    result = low_frequency_amplitude(series, TR, detrend_order=0)
    np.testing.assert_allclose(result.falff, 2.0 / 3.0, rtol=1e-12)


def test_malff_has_unit_mean_in_mask():
    alff = np.array([[1.0, 3.0], [np.nan, 8.0]])
    mask = np.array([[True, True], [True, False]])
    malff = mean_normalised_alff(alff, mask)
    np.testing.assert_allclose(malff[0], [0.5, 1.5])
    assert np.isnan(malff[1]).all()


def test_alff_refuses_band_without_bins():
    with pytest.raises(InputError, match="no frequency bin"):
        low_frequency_amplitude(np.random.default_rng(0).standard_normal(20), TR, band=(0.01, 0.02))


# --------------------------------------------------------------------------------------------------
# ReHo
# --------------------------------------------------------------------------------------------------
def _reho_brute_force(data: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Kendall's W voxel by voxel, written plainly."""
    shape = mask.shape
    n_frames = data.shape[-1]
    offsets = [(dk, dj, di) for dk in (-1, 0, 1) for dj in (-1, 0, 1) for di in (-1, 0, 1)
               if abs(dk) + abs(dj) + abs(di) <= {7: 1, 19: 2, 27: 3}[size]]

    def usable(k, j, i):
        inside = 0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2]
        return inside and mask[k, j, i] and np.ptp(data[k, j, i]) > 0

    result = np.full(shape, np.nan)
    for k, j, i in np.ndindex(shape):
        if not usable(k, j, i):
            continue
        ranks = [rankdata(data[k + dk, j + dj, i + di]) for dk, dj, di in offsets
                 if usable(k + dk, j + dj, i + di)]
        n_raters = len(ranks)
        if n_raters < 2:
            continue
        rank_sums = np.sum(ranks, axis=0)
        deviation = np.sum((rank_sums - n_raters * (n_frames + 1) / 2) ** 2)
        result[k, j, i] = 12 * deviation / (n_raters**2 * (n_frames**3 - n_frames))
    return result


@pytest.mark.parametrize("size", [7, 19, 27])
def test_reho_matches_brute_force_with_ties_holes_and_constant_voxels(size):
    rng = np.random.default_rng(11)
    shape = (5, 6, 4)
    common = rng.standard_normal(15)
    data = np.round(2.0 * (0.7 * common + rng.standard_normal((*shape, 15))))  # integers: many ties
    data[2, 3, 1] = 4.0  # constant voxel inside the mask
    mask = rng.random(shape) < 0.8
    mask[0, 0, 0] = True
    mask[[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 1]] = False  # voxel (0, 0, 0) keeps fewer neighbours
    reho = regional_homogeneity(data, mask, size)
    expected = _reho_brute_force(data, mask, size)
    np.testing.assert_array_equal(np.isnan(reho), np.isnan(expected))
    np.testing.assert_allclose(reho, expected, rtol=1e-12, atol=1e-14)
    assert np.isnan(reho[2, 3, 1]) and np.isnan(reho[~mask]).all()


def test_reho_is_one_for_monotone_copies():
    rng = np.random.default_rng(12)
    base = rng.standard_normal(30)
    scale = rng.uniform(0.5, 2.0, size=(3, 3, 3, 1))
    data = np.exp(scale * base) + scale  # monotone transforms share the ranks
    reho = regional_homogeneity(data, np.ones((3, 3, 3), dtype=bool), 27)
    np.testing.assert_allclose(reho, 1.0, rtol=1e-12)


def test_reho_offsets_and_bad_neighbourhood():
    assert [len(neighbourhood_offsets(size)) for size in (7, 19, 27)] == [7, 19, 27]
    with pytest.raises(InputError, match="7, 19 or 27"):
        neighbourhood_offsets(26)


# --------------------------------------------------------------------------------------------------
# Intrinsic timescales
# --------------------------------------------------------------------------------------------------
def _ar1(coefficients: np.ndarray, n_series: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal((coefficients.size, n_series, n_frames))
    series = np.empty_like(noise)
    series[..., 0] = noise[..., 0] / np.sqrt(1 - coefficients[:, None] ** 2)
    for t in range(1, n_frames):
        series[..., t] = coefficients[:, None] * series[..., t - 1] + noise[..., t]
    return series


def test_intrinsic_timescales_recover_ar1_ordering_and_values():
    coefficients = np.array([0.2, 0.5, 0.8])
    series = _ar1(coefficients, n_series=60, n_frames=1500, rng=np.random.default_rng(13))
    positive_sum = np.median(timescale_positive_acf_sum(series, TR), axis=-1)
    half_width = np.median(timescale_acf_half_width(series, TR), axis=-1)
    assert np.all(np.diff(positive_sum) > 0) and np.all(np.diff(half_width) > 0)
    np.testing.assert_allclose(positive_sum, TR * coefficients / (1 - coefficients), rtol=0.2)
    exact_lag = np.log(0.5) / np.log(coefficients)  # r(k) = phi^k crosses 0.5 here
    np.testing.assert_allclose(half_width[1:], TR * exact_lag[1:], rtol=0.1)
    np.testing.assert_allclose(half_width[0], TR * 0.5 / (1 - 0.2), rtol=0.1)  # interpolated in lag 0..1


def test_autocorrelation_matches_direct_sums():
    rng = np.random.default_rng(14)
    series = rng.standard_normal((3, 25))
    acf = autocorrelation(series, max_lag=6)
    centred = series - series.mean(axis=-1, keepdims=True)
    for lag in range(7):
        direct = np.sum(centred[:, : 25 - lag] * centred[:, lag:], axis=-1) / np.sum(centred**2, axis=-1)
        np.testing.assert_allclose(acf[:, lag], direct, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Sample entropy
# --------------------------------------------------------------------------------------------------
def _sample_entropy_brute_force(x: np.ndarray, m: int, r_fraction: float) -> float:
    """Sample entropy written from Richman & Moorman's definition."""
    tolerance = r_fraction * float(np.std(x))
    n_templates = len(x) - m

    def count(length: int) -> int:
        matches = 0
        for i in range(n_templates):
            for j in range(i + 1, n_templates):
                if max(abs(x[i + k] - x[j + k]) for k in range(length)) <= tolerance:
                    matches += 1
        return matches

    b, a = count(m), count(m + 1)
    return -math.log(a / b) if a > 0 and b > 0 else math.nan


@pytest.mark.parametrize("m", [1, 2, 3])
def test_sample_entropy_matches_brute_force(m):
    rng = np.random.default_rng(15)
    series = np.concatenate([rng.standard_normal((3, 50)), np.sin(np.arange(50) / 3.0)[None]])
    series[1] = np.round(series[1])  # ties at the tolerance boundary
    expected = [_sample_entropy_brute_force(row, m, 0.2) for row in series]
    np.testing.assert_allclose(sample_entropy(series, m=m, chunk_size=3), expected, rtol=1e-12)


def test_sample_entropy_undefined_without_matches():
    series = np.array([0.0, 10.0, 1.0, 20.0, 3.0, 40.0, 7.0, 80.0])
    assert np.isnan(sample_entropy(series, m=2, r_fraction=0.01))


# --------------------------------------------------------------------------------------------------
# Constant voxels, downstream of cleaning
# --------------------------------------------------------------------------------------------------
def test_constant_voxels_give_nan_features_after_cleaning():
    rng = np.random.default_rng(16)
    data = 100.0 + rng.standard_normal((3, 3, 3, 120))
    data[1, 1, 1] = 250.0
    mask = np.ones((3, 3, 3), dtype=bool)
    cleaned = clean_signals(data, TR, band=(0.01, 0.1))
    amplitude = low_frequency_amplitude(clean_signals(data, TR), TR)
    features = {
        "alff": amplitude.alff, "falff": amplitude.falff,
        "reho": regional_homogeneity(cleaned, mask, 27),
        "int_sum": timescale_positive_acf_sum(cleaned, TR),
        "int_hwhm": timescale_acf_half_width(cleaned, TR),
        "sampen": sample_entropy(cleaned),
    }
    for name, feature in features.items():
        assert np.isnan(feature[1, 1, 1]), name
        assert np.isfinite(feature[0, 0, 0]), name
