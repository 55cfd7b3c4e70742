"""Tests of FMRIDynamicsLib.quality: framewise displacement, DVARS, tSNR, carpet matrix."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.quality import carpet_matrix, dvars, framewise_displacement, temporal_snr
from SpatioTemporalCommonLib.errors import InputError


@pytest.fixture(scope="module")
def ds003(shared_data):
    nibabel = pytest.importorskip("nibabel")
    folder = shared_data / "fmri" / "nipype_ds003"
    data = nibabel.load(folder / "ds003_sub-01_mc.nii.gz").get_fdata(dtype=np.float32)
    mask = np.asanyarray(nibabel.load(folder / "ds003_sub-01_mc_brainmask.nii.gz").dataobj) > 0
    return data, mask, np.loadtxt(folder / "ds003_sub-01_mc.DVARS")


def test_framewise_displacement_matches_fsl_motion_outliers(shared_data):
    folder = shared_data / "fmri" / "nipype_ds003"
    motion = np.loadtxt(folder / "fsl_mcflirt_movpar.txt").T
    reference = np.loadtxt(folder / "fsl_motion_outliers_fd.txt")
    fd = framewise_displacement(motion, head_radius_mm=50.0)
    assert fd.shape == reference.shape
    assert np.max(np.abs(fd - reference)) < 1e-6


def test_framewise_displacement_analytic_rotation_and_translation():
    motion = np.zeros((6, 3))
    motion[2, 1] = 0.01  # 0.01 rad about z between frames 0 and 1
    motion[3:, 2] = [0.3, -0.4, 0.0]  # translation between frames 1 and 2 (rotation goes back to 0)
    motion[2, 2] = 0.01
    fd = framewise_displacement(motion, head_radius_mm=80.0)
    np.testing.assert_allclose(fd, [0.8, 0.7], rtol=0, atol=1e-12)


def test_framewise_displacement_refuses_time_first_array():
    with pytest.raises(InputError, match=r"\(6, T\)"):
        framewise_displacement(np.zeros((20, 6)))


def test_dvars_matches_nipype_reference(ds003):
    data, mask, reference = ds003
    result = dvars(data, mask)
    assert result.n_voxels == mask.sum()
    assert np.max(np.abs(result.non_standardised - reference[:, 1])) < 1e-4
    assert np.mean(np.abs(result.standardised - reference[:, 0])) < 0.05
    assert np.mean(np.abs(result.voxelwise_standardised - reference[:, 2])) < 0.05


def test_dvars_of_white_noise_standardises_to_one():
    rng = np.random.default_rng(3)
    series = 500.0 + 4.0 * rng.standard_normal((4000, 300))
    result = dvars(series)
    np.testing.assert_allclose(np.median(result.non_standardised), 4.0 * np.sqrt(2.0), rtol=0.02)
    np.testing.assert_allclose(np.median(result.standardised), 1.0, rtol=0.03)
    np.testing.assert_allclose(np.median(result.voxelwise_standardised), 1.0, rtol=0.03)


def test_dvars_leaves_out_constant_voxels():
    rng = np.random.default_rng(4)
    series = 100.0 + rng.standard_normal((50, 40))
    with_constant = np.concatenate([series, np.full((3, 40), 7.0)])
    assert dvars(with_constant).n_voxels == 50
    np.testing.assert_allclose(dvars(with_constant).standardised, dvars(series).standardised)


def test_temporal_snr_analytic_and_constant_voxels():
    frames = np.arange(200)
    sd = 2.5
    oscillation = np.sqrt(2.0) * sd * np.sin(2 * np.pi * 10 * frames / 200)  # SD exactly 2.5
    series = np.stack([300.0 + oscillation, np.full(200, 42.0), 300.0 + oscillation + 0.15 * frames])
    tsnr = temporal_snr(series)
    np.testing.assert_allclose(tsnr[0], 300.0 / sd, rtol=1e-12)
    assert np.isnan(tsnr[1])
    detrended = temporal_snr(series, detrend_order=1)
    np.testing.assert_allclose(detrended[2], np.mean(series[2]) / sd, rtol=0.01)
    assert tsnr[2] < 0.5 * detrended[2]


def test_carpet_matrix_groups_labels_and_orders_by_correlation():
    rng = np.random.default_rng(5)
    n_frames = 400
    common = rng.standard_normal(n_frames)
    weights = np.array([0.2, 0.9, 0.5, 0.7])
    grey = weights[:, None] * common + np.sqrt(1 - weights[:, None] ** 2) * rng.standard_normal((4, n_frames))
    white = rng.standard_normal((2, n_frames))
    drifting = np.concatenate([white[:1], grey, white[1:]]) + 0.3 * np.arange(n_frames)  # removed by detrending
    series = np.concatenate([drifting, np.full((1, n_frames), 9.0)]).reshape(1, 1, 7, n_frames)
    labels = np.array([2, 1, 1, 1, 1, 2, 1]).reshape(1, 1, 7)
    carpet = carpet_matrix(series, labels=labels)
    np.testing.assert_array_equal(carpet.labels, [1, 1, 1, 1, 1, 2, 2])
    grey_rows = carpet.voxel_index[:5]
    assert grey_rows[-1] == 6  # the constant voxel sorts last in its label
    assert np.all(np.isnan(carpet.values[4]))
    group_mean = carpet.values[:4].mean(axis=0)
    correlations = [np.corrcoef(carpet.values[row], group_mean)[0, 1] for row in range(4)]
    assert np.all(np.diff(correlations) < 0)
    assert carpet.voxel_index[0] == 2  # the voxel with the largest share of the common signal
    np.testing.assert_array_equal(sorted(grey_rows[:4]), [1, 2, 3, 4])
    finite = carpet.values[np.isfinite(carpet.values[:, 0])]
    np.testing.assert_allclose(finite.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(finite.std(axis=1), 1.0, rtol=1e-12)
    by_index = carpet_matrix(series, labels=labels, row_order="index")
    np.testing.assert_array_equal(by_index.voxel_index, [1, 2, 3, 4, 6, 0, 5])
