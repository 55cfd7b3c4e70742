"""Spatial ICA and selective temporal-ICA clean-up."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.ica import spatial_ica, temporal_ica_cleanup
from SpatioTemporalCommonLib.errors import InputError


def _best_absolute_correlation(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    n = truth.shape[0]
    return np.abs(np.corrcoef(np.vstack([truth, estimate]))[:n, n:]).max(axis=1)


def test_spatial_ica_recovers_mixed_sources_deterministically():
    rng = np.random.default_rng(0)
    n_voxels, n_frames, n_sources = 3000, 120, 4
    maps = rng.laplace(size=(n_sources, n_voxels)) ** 3
    time_courses = rng.standard_normal((n_sources, n_frames)).cumsum(axis=1) * 0.3 + rng.standard_normal(
        (n_sources, n_frames)
    )
    data = maps.T @ time_courses + 0.1 * rng.standard_normal((n_voxels, n_frames)) + 5.0
    result = spatial_ica(data.reshape(30, 100, n_frames), n_sources, seed=1)
    assert result.converged
    assert result.maps.shape == (n_sources, 30, 100)
    assert np.all(_best_absolute_correlation(maps, result.maps.reshape(n_sources, -1)) > 0.95)
    assert np.all(_best_absolute_correlation(time_courses, result.time_courses) > 0.95)
    assert (
        np.all(np.diff(result.explained_variance_ratio) <= 0) and result.explained_variance_ratio.sum() <= 1
    )
    again = spatial_ica(data.reshape(30, 100, n_frames), n_sources, seed=1)
    np.testing.assert_array_equal(again.maps, result.maps)


def _loading(data: np.ndarray, signal: np.ndarray) -> np.ndarray:
    unit = (signal - signal.mean()) / np.linalg.norm(signal - signal.mean())
    return (data - data.mean(axis=-1, keepdims=True)) @ unit


def test_temporal_cleanup_removes_planted_nuisance_and_keeps_signal():
    rng = np.random.default_rng(1)
    n_voxels, n_frames = 2000, 400
    times = np.arange(n_frames) * 2.0
    task = (np.sin(2 * np.pi * times / 40.0) > 0).astype(float)
    nuisance = rng.laplace(size=n_frames)
    sources = np.vstack([task, nuisance, rng.laplace(size=n_frames), rng.uniform(-1, 1, n_frames)])
    mixing = rng.standard_normal((n_voxels, 4))
    mixing[:, 0] = np.arange(n_voxels) < n_voxels // 2
    mixing[:, 1] = np.arange(n_voxels) >= n_voxels // 4
    data = mixing @ sources + 0.2 * rng.standard_normal((n_voxels, n_frames)) + 100.0
    recorded_nuisance = nuisance + 0.3 * rng.standard_normal(n_frames)
    result = temporal_ica_cleanup(data, recorded_nuisance, n_components=6, threshold=0.5, seed=0)
    assert result.converged and result.removed.size == 1
    nuisance_before = np.abs(_loading(data, nuisance)).mean()
    nuisance_after = np.abs(_loading(result.cleaned, nuisance)).mean()
    assert nuisance_after < 0.1 * nuisance_before
    task_before = _loading(data, task)[: n_voxels // 2].mean()
    task_after = _loading(result.cleaned, task)[: n_voxels // 2].mean()
    assert abs(task_after - task_before) < 0.1 * task_before
    np.testing.assert_allclose(result.cleaned.mean(axis=1), data.mean(axis=1), atol=1e-8)


def test_too_many_components_is_refused():
    with pytest.raises(InputError, match="components"):
        spatial_ica(np.random.default_rng(2).standard_normal((50, 20)), 20)
