"""Tests of FMRIDynamicsLib.cleaning: detrending, filtering, nuisance designs, censoring, clean_signals."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.cleaning import (
    FWHM_TO_SIGMA,
    butterworth_filter,
    censor_mask,
    clean_signals,
    detrend_polynomial,
    interpolate_censored,
    mask_mean_signals,
    motion_confounds,
    nuisance_design,
    smooth_spatial,
)
from SpatioTemporalCommonLib.errors import InputError

TR = 2.0


def _sinusoid(frequency_hz: float, n_frames: int, tr: float = TR, phase: float = 0.0) -> np.ndarray:
    return np.sin(2 * np.pi * frequency_hz * tr * np.arange(n_frames) + phase)


def test_detrend_removes_polynomials_up_to_the_order():
    frames = np.linspace(-3, 5, 120)
    oscillation = _sinusoid(0.1, 120)
    cubic = 4.0 - 2.0 * frames + 0.5 * frames**2 - 0.1 * frames**3
    residual = detrend_polynomial(np.stack([cubic, cubic + oscillation]), order=3)
    np.testing.assert_allclose(residual[0], 0.0, atol=1e-10)
    assert np.corrcoef(residual[1], oscillation)[0, 1] > 0.99
    assert abs(detrend_polynomial(cubic, order=1).std()) > 0.1


def test_butterworth_passes_the_band_and_stops_outside_it():
    # 401 frames: every component is zero at both ends, so the odd edge extension continues it exactly
    # and only the filter's own start-up ringing (~50 frames for a 0.01 Hz edge) remains near the ends.
    n_frames = 401
    inside = _sinusoid(0.05, n_frames)
    slow = 2.0 * _sinusoid(0.0025, n_frames)
    fast = 3.0 * _sinusoid(0.2, n_frames)
    centre = slice(80, -80)
    band_passed = butterworth_filter(inside + slow + fast, TR, band=(0.01, 0.1))
    np.testing.assert_allclose(band_passed[centre], inside[centre], atol=0.03)
    high_passed = butterworth_filter(inside + slow, TR, band=(0.01, None))
    np.testing.assert_allclose(high_passed[centre], inside[centre], atol=0.03)
    low_passed = butterworth_filter(inside + fast, TR, band=(None, 0.1))
    np.testing.assert_allclose(low_passed[centre], inside[centre], atol=0.03)


def test_butterworth_refuses_short_series_and_bad_bands():
    with pytest.raises(InputError, match="needs more than 33 frames"):
        butterworth_filter(np.ones(30), TR, band=(0.01, 0.1))
    with pytest.raises(InputError, match="Nyquist"):
        butterworth_filter(np.ones(300), TR, band=(0.01, 0.3))
    with pytest.raises(InputError, match="empty"):
        butterworth_filter(np.ones(300), TR, band=(0.1, 0.01))


def test_motion_confounds_expansions():
    rng = np.random.default_rng(0)
    motion = rng.standard_normal((6, 30))
    assert motion_confounds(motion, 6).shape == (6, 30)
    twelve = motion_confounds(motion, 12)
    np.testing.assert_array_equal(twelve[6:, 0], 0.0)
    np.testing.assert_allclose(twelve[6:, 1:], np.diff(motion, axis=-1))
    twenty_four = motion_confounds(motion, 24)
    np.testing.assert_allclose(twenty_four[12:], twelve**2)
    with pytest.raises(InputError, match="6, 12 or 24"):
        motion_confounds(motion, 18)


def test_nuisance_design_collects_motion_and_tissue_signals():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((3, 4, 5, 25))
    wm = np.zeros((3, 4, 5), dtype=bool)
    wm[0, :2] = True
    csf = np.zeros_like(wm)
    csf[2, 3, 4] = True
    design = nuisance_design(25, motion=rng.standard_normal((6, 25)), n_motion_terms=12, data=data,
                             white_matter_mask=wm, csf_mask=csf)
    assert design.regressors.shape == (14, 25)
    assert design.names[-2:] == ("wm", "csf") and design.names[6] == "motion_0_derivative"
    np.testing.assert_allclose(design.regressors[-2], data[0, :2].reshape(-1, 25).mean(axis=0))
    np.testing.assert_allclose(design.regressors[-1], data[2, 3, 4])
    np.testing.assert_allclose(mask_mean_signals(data, [wm])[0], design.regressors[-2])
    with pytest.raises(InputError, match="no voxel"):
        mask_mean_signals(data, [np.zeros_like(wm)])


def test_censor_mask_extends_flagged_frames():
    fd = np.zeros(19)
    fd[9] = 0.9  # motion between frames 9 and 10 flags frame 10
    dvars = np.zeros(19)
    dvars[0] = 5.0  # flags frame 1
    censor = censor_mask(fd, dvars, fd_threshold_mm=0.5, dvars_threshold=2.0, frames_before=1, frames_after=2)
    np.testing.assert_array_equal(np.flatnonzero(censor), [0, 1, 2, 3, 9, 10, 11, 12])
    assert not censor_mask(fd, fd_threshold_mm=1.0).any()


def test_interpolation_reproduces_cubics_and_holds_the_edges():
    frames = np.arange(30.0)
    cubic = 0.01 * frames**3 - 0.2 * frames**2 + frames
    censor = np.zeros(30, dtype=bool)
    censor[[0, 1, 12, 13, 14, 29]] = True
    filled = interpolate_censored(cubic, censor)
    np.testing.assert_allclose(filled[12:15], cubic[12:15], rtol=1e-10)
    assert filled[0] == filled[1] == cubic[2]
    assert filled[29] == cubic[28]


def test_filter_then_regress_removes_nuisance_that_regress_then_filter_leaves():
    # Hallquist et al. (2013): the data carry only the in-band part of a nuisance regressor.
    n_frames = 401
    band = (0.01, 0.1)
    signal = _sinusoid(0.0325, n_frames) + 0.5 * _sinusoid(0.07, n_frames, phase=1.0)
    nuisance_in_band = _sinusoid(0.05, n_frames, phase=0.4)
    nuisance = nuisance_in_band + 6.0 * _sinusoid(0.2125, n_frames)
    data = signal + 2.0 * nuisance_in_band  # only the in-band part of the nuisance reaches the data

    ours = clean_signals(data, TR, confounds=nuisance, band=band)
    filtered_nuisance = butterworth_filter(detrend_polynomial(nuisance), TR, band)
    detrended = detrend_polynomial(data)
    beta = np.linalg.lstsq(detrend_polynomial(nuisance)[:, None], detrended, rcond=None)[0]
    regress_then_filter = butterworth_filter(detrended - beta * detrend_polynomial(nuisance), TR, band)

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1])

    assert abs(correlation(ours, filtered_nuisance)) < 1e-10
    assert abs(correlation(regress_then_filter, filtered_nuisance)) > 0.5
    centre = slice(60, -60)
    assert correlation(ours[centre], signal[centre]) > 0.99
    assert correlation(regress_then_filter[centre], signal[centre]) < 0.8


@pytest.mark.parametrize(
    ("band", "with_confounds", "with_censoring"),
    [((0.01, 0.1), True, False), ((0.01, 0.1), True, True), ((0.01, None), True, False), (None, True, False),
     ((0.01, 0.1), False, False)],
)
def test_clean_signals_matches_nilearn(band, with_confounds, with_censoring):
    nilearn_signal = pytest.importorskip("nilearn.signal")
    rng = np.random.default_rng(7)
    n_frames = 180
    data = 50.0 + rng.standard_normal((40, n_frames)).cumsum(axis=-1) * 0.2 + rng.standard_normal((40, n_frames))
    confounds = rng.standard_normal((8, n_frames)) if with_confounds else None
    censor = np.zeros(n_frames, dtype=bool)
    if with_censoring:
        censor[[30, 31, 32, 100, 140]] = True
    ours = clean_signals(data, TR, confounds=confounds, band=band, censor=censor if with_censoring else None)
    options = dict(detrend=True, standardize=None, standardize_confounds=True, t_r=TR,
                   confounds=None if confounds is None else confounds.T)
    if band is None:
        options["filter"] = False
    else:
        options.update(filter="butterworth", high_pass=band[0], low_pass=band[1])
    if with_censoring:
        options["sample_mask"] = np.flatnonzero(~censor)
    reference = nilearn_signal.clean(data.T.copy(), **options).T
    assert ours.shape == reference.shape
    assert np.max(np.abs(ours - reference)) < 1e-9 * np.max(np.abs(reference))


def test_clean_signals_constant_and_non_finite_series():
    rng = np.random.default_rng(8)
    data = rng.standard_normal((4, 100))
    data[1] = 12.0
    data[2, 5] = np.nan
    cleaned = clean_signals(data, TR, confounds=rng.standard_normal((3, 100)), band=(0.01, 0.1))
    np.testing.assert_array_equal(cleaned[1], 0.0)
    assert np.all(np.isnan(cleaned[2]))
    assert np.all(np.isfinite(cleaned[[0, 3]]))
    with pytest.raises(InputError, match="boolean vector"):
        clean_signals(data, TR, censor=np.zeros(99, dtype=bool))


def test_smooth_spatial_has_the_requested_width_in_mm():
    volume = np.zeros((41, 41, 41))
    volume[20, 20, 20] = 1.0
    spacing = (4.0, 2.0, 1.0)
    smoothed = smooth_spatial(volume, fwhm_mm=8.0, spacing_mm=spacing)
    assert smoothed.sum() == pytest.approx(1.0, rel=1e-9)
    for axis, step in enumerate(spacing):
        profile = smoothed.sum(axis=tuple(a for a in range(3) if a != axis))
        positions = (np.arange(41) - 20) * step
        sigma_mm = np.sqrt(np.sum(profile * positions**2))
        assert sigma_mm == pytest.approx(8.0 * FWHM_TO_SIGMA, rel=0.03)
    series = np.repeat(volume[..., None], 3, axis=-1)
    np.testing.assert_allclose(smooth_spatial(series, 8.0, spacing)[..., 2], smoothed)
