"""HRF models, design matrix, GLM fit and contrasts, HRF shape maps."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from FMRIDynamicsLib.glm import (
    ar1_whiten,
    compute_contrast,
    condition_regressors,
    cosine_drift,
    design_matrix,
    estimate_hrf_shape,
    fit_glm,
    frame_times,
    make_events,
    read_events_tsv,
    response_peak_and_fwhm,
    t_to_z,
)
from FMRIDynamicsLib.hrf import SPM_SHAPE, hrf_times, spm_hrf, time_derivative
from scipy import special, stats
from SpatioTemporalCommonLib.errors import InputError

TR = 2.0


def _event_design(rng: np.random.Generator, n_events: int = 30, span: float = 300.0):
    onsets = np.sort(rng.choice(np.arange(4.0, span, 6.0), n_events, replace=False)) + rng.uniform(
        0, 2, n_events
    )
    trial_types = np.where(np.arange(n_events) % 2 == 0, "faces", "houses")
    return onsets, np.ones(n_events), trial_types


def _ar1_noise(rng: np.random.Generator, rho: np.ndarray, n_frames: int) -> np.ndarray:
    innovations = rng.standard_normal((rho.size, n_frames))
    noise = np.empty_like(innovations)
    noise[:, 0] = innovations[:, 0] / np.sqrt(1 - rho**2)
    for frame in range(1, n_frames):
        noise[:, frame] = rho * noise[:, frame - 1] + innovations[:, frame]
    return noise


def test_spm_hrf_is_the_normalised_gamma_difference():
    times = hrf_times(TR, oversampling=20)
    closed_form = (
        times**5 * np.exp(-times) / math.factorial(5) - times**15 * np.exp(-times) / math.factorial(15) / 6.0
    )
    kernel = spm_hrf(TR, oversampling=20)
    np.testing.assert_allclose(kernel, closed_form / closed_form.sum(), atol=1e-12)
    peak, _, _ = response_peak_and_fwhm(times, kernel)
    assert abs(peak - 5.0) < 0.05  # mode of the gamma(6, 1) response, barely moved by the undershoot


def test_time_derivative_approximates_a_small_delay():
    shift = 0.3
    base = spm_hrf(TR)
    delayed = spm_hrf(TR, onset=shift)
    linearised = base - shift * time_derivative(TR, SPM_SHAPE)
    assert np.abs(delayed - linearised).max() < 0.1 * np.abs(delayed - base).max()


def test_cosine_drift_is_orthonormal_with_spm_count():
    drift = cosine_drift(200, TR, 128.0)
    assert drift.shape == (200, int(np.floor(2 * 200 * TR / 128.0)))
    np.testing.assert_allclose(drift.T @ drift, np.eye(drift.shape[1]), atol=1e-12)
    np.testing.assert_allclose(drift.sum(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("hrf_model", ["glover", "spm + derivative + dispersion"])
def test_design_matrix_agrees_with_nilearn(hrf_model):
    pd = pytest.importorskip("pandas")
    first_level = pytest.importorskip("nilearn.glm.first_level")
    onsets, durations, trial_types = _event_design(np.random.default_rng(1))
    ours = design_matrix(make_events(onsets, durations, trial_types), 160, TR, hrf_model, reference_time=1.0)
    theirs = first_level.make_first_level_design_matrix(
        frame_times(160, TR, 1.0),
        pd.DataFrame({"onset": onsets, "duration": durations, "trial_type": trial_types}),
        hrf_model=hrf_model,
        drift_model="cosine",
        high_pass=1 / 128.0,
    )
    assert ours.names == tuple(theirs.columns)
    for column in range(ours.matrix.shape[1] - 1):
        assert np.corrcoef(ours.matrix[:, column], theirs.to_numpy()[:, column])[0, 1] > 0.999
    n_task = len(ours.names) - cosine_drift(160, TR).shape[1] - 1
    np.testing.assert_allclose(ours.matrix[:, n_task:], theirs.to_numpy()[:, n_task:], atol=1e-12)


def test_z_maps_agree_with_nilearn_first_level_model():
    pd = pytest.importorskip("pandas")
    nib = pytest.importorskip("nibabel")
    first_level = pytest.importorskip("nilearn.glm.first_level")
    rng = np.random.default_rng(2)
    shape, n_frames = (6, 6, 5), 160
    onsets, durations, trial_types = _event_design(rng)
    design = design_matrix(
        make_events(onsets, durations, trial_types), n_frames, TR, "spm", reference_time=1.0
    )
    n_voxels = int(np.prod(shape))
    beta = np.zeros((n_voxels, design.matrix.shape[1]))
    beta[: n_voxels // 2, 0] = rng.uniform(0, 30, n_voxels // 2)
    beta[:, -1] = 100.0
    data = beta @ design.matrix.T + _ar1_noise(rng, rng.uniform(0.0, 0.5, n_voxels), n_frames)
    data = data.reshape(*shape, n_frames)
    ours = compute_contrast(fit_glm(data, design, "ar1"), {"faces": 1, "houses": -1})
    model = first_level.FirstLevelModel(
        t_r=TR,
        slice_time_ref=0.5,
        hrf_model="spm",
        drift_model="cosine",
        high_pass=1 / 128.0,
        noise_model="ar1",
        mask_img=nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4)),
        signal_scaling=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(
            nib.Nifti1Image(data.astype(np.float32), np.eye(4)),
            events=pd.DataFrame({"onset": onsets, "duration": durations, "trial_type": trial_types}),
        )
        theirs = model.compute_contrast("faces - houses", output_type="z_score").get_fdata()
    assert np.corrcoef(ours.z.ravel(), theirs.ravel())[0, 1] > 0.999
    moderate = np.abs(theirs) < 5
    assert np.abs(ours.z - theirs)[moderate].max() < 0.1


def test_ar1_prewhitening_calibrates_null_z_scores():
    rng = np.random.default_rng(3)
    onsets, durations, trial_types = _event_design(rng, span=380.0)
    design = design_matrix(make_events(onsets, durations, trial_types), 200, TR, "spm")
    rho = np.full(3000, 0.4)
    data = 50.0 + _ar1_noise(rng, rho, 200)
    results = fit_glm(data, design, "ar1")
    assert abs(np.mean(results.ar_coefficient) - 0.4) < 0.1  # residual-based estimates are biased low
    whitened_z = compute_contrast(results, {"faces": 1}).z
    naive_z = compute_contrast(fit_glm(data, design, "ols"), {"faces": 1}).z
    assert 0.95 < np.std(whitened_z) < 1.1
    assert np.std(naive_z) > 1.2
    assert results.n_failed == 0


def test_glm_recovers_effects_and_flags_bad_voxels():
    rng = np.random.default_rng(4)
    onsets, durations, trial_types = _event_design(rng, span=380.0)
    design = design_matrix(make_events(onsets, durations, trial_types), 200, TR, "spm")
    truth = np.zeros((500, design.matrix.shape[1]))
    truth[:, 0], truth[:, 1], truth[:, -1] = 40.0, 10.0, 100.0
    data = truth @ design.matrix.T + 0.5 * rng.standard_normal((500, 200))
    data[0, 5] = np.nan
    data[1] = 7.0
    results = fit_glm(data, design)
    np.testing.assert_allclose(np.nanmean(results.beta[2:, :2], axis=0), [40.0, 10.0], rtol=0.02)
    contrast = compute_contrast(results, {"faces": 1, "houses": -1})
    assert np.isnan(contrast.z[0]) and np.isnan(contrast.z[1])
    assert results.n_failed == 2
    assert np.all(contrast.z[2:] > 5)


def test_ar1_whitening_removes_autocorrelation():
    rng = np.random.default_rng(5)
    noise = _ar1_noise(rng, np.full(2000, 0.6), 300)
    whitened = ar1_whiten(noise, 0.6)
    lag1 = np.mean(whitened[:, 1:] * whitened[:, :-1]) / np.mean(whitened**2)
    assert abs(lag1) < 0.01
    assert abs(np.var(whitened) - 1.0) < 0.02


def test_t_to_z_matches_exact_distributions_deep_in_the_tails():
    bulk = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(t_to_z(bulk, 20), -stats.norm.ppf(stats.t.sf(bulk, 20)), atol=1e-9)
    huge = np.array([1e3, 1e6, 1e12, 1e100])
    cauchy_log_tail = np.log(np.arctan(1 / huge) / np.pi)  # P(T_1 > t) = arctan(1/t) / pi
    np.testing.assert_allclose(t_to_z(huge, 1), -special.ndtri_exp(cauchy_log_tail), rtol=1e-10)
    two_dof_log_tail = -np.log(np.sqrt(2 + huge**2) * (np.sqrt(2 + huge**2) + huge))  # closed form for dof 2
    np.testing.assert_allclose(t_to_z(huge, 2), -special.ndtri_exp(two_dof_log_tail), rtol=1e-10)
    extreme = t_to_z(np.array([-1e8, -40.0, 40.0, 1e8]), 150)
    assert np.all(np.isfinite(extreme)) and np.all(np.diff(extreme) > 0)
    np.testing.assert_allclose(extreme, -extreme[::-1])
    assert np.isnan(t_to_z(np.array([np.nan]), 10)[0])


def test_events_outside_the_scan_are_refused(shared_data):
    events = read_events_tsv(shared_data / "fmri" / "nipype_ds003" / "events.tsv")
    assert events.trial_types == ("event",)
    with pytest.raises(InputError, match="outside the scan"):
        design_matrix(events, 20, TR)
    assert design_matrix(events, 700, TR).names[0] == "event"


def test_events_tsv_validation(tmp_path):
    good = tmp_path / "good_events.tsv"
    good.write_text("onset\tduration\ttrial_type\n1.5\t0\ta\n10\t2\tb\n")
    events = read_events_tsv(good)
    np.testing.assert_array_equal(events.onset, [1.5, 10.0])
    assert events.trial_types == ("a", "b")
    no_duration = tmp_path / "no_duration_events.tsv"
    no_duration.write_text("onset\ttrial_type\n1\ta\n")
    with pytest.raises(InputError, match="duration"):
        read_events_tsv(no_duration)
    missing_onset = tmp_path / "missing_events.tsv"
    missing_onset.write_text("onset\tduration\nn/a\t1\n")
    with pytest.raises(InputError, match="onset"):
        read_events_tsv(missing_onset)
    text_onset = tmp_path / "text_events.tsv"
    text_onset.write_text("onset\tduration\nsoon\t1\n")
    with pytest.raises(InputError, match="not a number"):
        read_events_tsv(text_onset)


def test_unknown_trial_type_in_contrast_is_refused():
    rng = np.random.default_rng(6)
    design = design_matrix(make_events(*_event_design(rng)), 160, TR)
    results = fit_glm(rng.standard_normal((10, 160)), design)
    with pytest.raises(InputError, match="cars"):
        compute_contrast(results, {"faces": 1, "cars": -1})


def _shifted_response_data(rng, shifts, tr, n_frames, oversampling=50):
    onsets = np.sort(rng.choice(np.arange(5, n_frames * tr - 30, tr), 40, replace=False))
    events = make_events(onsets, np.zeros(onsets.size))
    times = frame_times(n_frames, tr)
    responses = np.stack(
        [
            condition_regressors(events, times, tr, spm_hrf(tr, oversampling, onset=shift)[None])[:, 0]
            for shift in shifts
        ]
    )
    data = 100 + 5 * responses / responses.max() + 0.05 * rng.standard_normal(responses.shape)
    true_peak, true_fwhm, _ = response_peak_and_fwhm(
        hrf_times(tr, oversampling), np.stack([spm_hrf(tr, oversampling, onset=shift) for shift in shifts])
    )
    return data, events, true_peak, true_fwhm


@pytest.mark.parametrize("hrf_model, tr", [("fir", 1.0), ("spm + derivative + dispersion", 2.0)])
def test_hrf_peak_latency_is_recovered(hrf_model, tr):
    rng = np.random.default_rng(7)
    shifts = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])
    n_frames = int(400 / tr)
    data, events, true_peak, true_fwhm = _shifted_response_data(rng, shifts, tr, n_frames)
    shape = estimate_hrf_shape(data, events, tr, "event", hrf_model=hrf_model, n_fir_delays=20)
    assert shape.n_failed == 0
    assert np.abs(shape.peak_latency - true_peak).max() < 0.5
    if hrf_model == "fir":
        assert np.abs(shape.fwhm - true_fwhm).max() < 0.5


def test_peak_and_fwhm_of_gaussian_responses():
    times = np.arange(0.0, 30.0, 0.5)
    centres, widths = np.array([6.3, 9.1]), np.array([1.5, 2.5])
    responses = np.exp(-0.5 * ((times - centres[:, None]) / widths[:, None]) ** 2)
    peak, fwhm, value = response_peak_and_fwhm(times, np.vstack([responses, -responses[:1]]))
    np.testing.assert_allclose(peak[:2], centres, atol=0.02)
    np.testing.assert_allclose(fwhm[:2], 2 * np.sqrt(2 * np.log(2)) * widths, rtol=0.01)
    np.testing.assert_allclose(value[:2], 1.0, atol=0.01)
    assert np.isnan(peak[2]) and np.isnan(fwhm[2])
