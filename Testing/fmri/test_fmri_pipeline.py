"""The whole fMRI analysis on arrays: the phantom's lags, latencies and activation are recovered."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.parameters import FEATURES, FMRIParameters
from FMRIDynamicsLib.phantom import make_phantom
from FMRIDynamicsLib.pipeline import (
    SliceTiming,
    analyse_fmri,
    parse_contrast,
    preprocess,
    slice_timing_reference_s,
    smooth_rows,
)
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.progress import as_progress

CONSTANT_VOXEL = (4, 10, 7)
"""A voxel of slab 2 whose series is made constant."""
SEED_REGION_NAMES = {1: "left slab", 3: "slab #3"}
"""Slabs used as seed regions, and the names their maps carry: seed_left_slab_..., seed_slab_3_..."""


def analyse(phantom, **options):
    parameters = options.pop("parameters", FMRIParameters(motion_correction=False))
    return analyse_fmri(phantom.data, phantom.tr_s, phantom.spacing_kji, parameters, **options)


def cube_centre(phantom, cube):
    return tuple(np.argwhere(phantom.cubes == cube).mean(axis=0).round().astype(int))


def seed_region_labels(phantom):
    return np.where(np.isin(phantom.labels, list(SEED_REGION_NAMES)), phantom.labels, 0)


@pytest.fixture(scope="module")
def phantom():
    phantom = make_phantom()
    phantom.data[CONSTANT_VOXEL] = 1000.0
    return phantom


@pytest.fixture(scope="module")
def analysis(phantom):
    return analyse(
        phantom,
        events=phantom.events,
        labels=phantom.labels,
        region_names=phantom.region_names,
        seeds=[cube_centre(phantom, 1)],
        seed_labels=seed_region_labels(phantom),
        seed_region_names=SEED_REGION_NAMES,
    )


def test_every_feature_runs_and_the_automatic_mask_is_the_brain(phantom, analysis):
    assert analysis.features == FEATURES and analysis.skipped == {}
    np.testing.assert_array_equal(analysis.mask, phantom.brain)
    expected = {
        "glm_motor_z",
        "glm_motor_effect",
        "glm_visual_z",
        "glm_visual_effect",
        "hrf_peak_latency",
        "hrf_fwhm",
        "mi_preferred_time",
        "mi_amplitude",
        "mi_significance",
        "lag",
        "lag_correlation",
        "lag_projection",
        "int_acf",
        "int_hwhm",
        "alff",
        "falff",
        "malff",
        "reho",
        "sample_entropy",
        "tsnr",
        "seed_1_correlation",
        "seed_left_slab_correlation",
        "seed_slab_3_correlation",
    }
    assert set(analysis.maps) == expected
    assert set(analysis.tables) == {
        "qc",
        "fc_matrix",
        "dfc",
        "delay_matrix",
        "region_lags",
        "time_courses",
        "lag_reference",
        "ica_time_courses",
    }
    assert analysis.ica_components.shape == (10, *phantom.brain.shape)
    for name, values in analysis.maps.items():
        assert values.shape == phantom.brain.shape and np.all(np.isnan(values[~phantom.brain])), name


def test_constant_voxel_is_nan_in_every_map_and_counted(analysis):
    for name, values in analysis.maps.items():
        assert np.isnan(values[CONSTANT_VOXEL]), name
        assert analysis.nan_voxels[name] >= 1, name
    assert np.all(np.isnan(analysis.ica_components[(slice(None), *CONSTANT_VOXEL)]))
    assert np.isfinite(analysis.maps["alff"][analysis.mask]).sum() == analysis.mask.sum() - 1


def test_lag_map_against_the_global_signal_recovers_the_propagation(phantom, analysis):
    oscillating = np.isfinite(phantom.lag_s) & np.isfinite(analysis.maps["lag"])
    assert oscillating.sum() == np.isfinite(phantom.lag_s).sum() - 1  # all but the constant voxel
    error = analysis.maps["lag"][oscillating] - phantom.lag_s[oscillating]
    # the global mean is the oscillation averaged over symmetric lags: no shift, a mild low-pass
    assert np.median(np.abs(error)) < 0.05 and np.max(np.abs(error)) < 0.15
    assert np.all(analysis.maps["lag_correlation"][oscillating] > 0.9)


def test_sub_tr_lags_are_recovered_within_0_1_s_against_the_true_reference():
    phantom = make_phantom(noise_sd=0.5, seed=3)
    lags = analyse(
        phantom,
        parameters=FMRIParameters(motion_correction=False, features="lag"),
        reference_signal=phantom.oscillation,
    ).maps["lag"]
    oscillating = np.isfinite(phantom.lag_s)
    assert np.max(np.abs(lags[oscillating] - phantom.lag_s[oscillating])) < 0.1


def test_region_delays_projection_and_latency_eigenvector(phantom, analysis):
    truth = np.array([phantom.region_lag_s[label] for label in sorted(phantom.region_lag_s)])
    names = list(analysis.region_names)
    table = analysis.tables["delay_matrix"]
    expected = [
        truth[names.index(a)] - truth[names.index(b)]
        for a, b in zip(table["region_a"], table["region_b"], strict=True)
    ]
    np.testing.assert_allclose(table["delay_s"], expected, atol=0.25)
    regions = analysis.tables["region_lags"]
    assert np.all(np.diff(regions["lag_projection_s"]) > 0) and np.all(
        np.diff(regions["weighted_lag_projection_s"]) > 0
    )
    assert abs(np.corrcoef(regions["latency_eigenvector_1"], truth)[0, 1]) > 0.99
    for label, value in zip(range(1, 5), regions["lag_projection_s"], strict=True):
        inside = (phantom.labels == label) & analysis.mask
        inside[CONSTANT_VOXEL] = False
        assert np.all(analysis.maps["lag_projection"][inside] == value)


def test_hrf_peak_latency_and_activation_of_the_task_cubes(phantom, analysis):
    for cube, latency in phantom.cube_peak_latency_s.items():
        inside = phantom.cubes == cube
        assert abs(np.median(analysis.maps["hrf_peak_latency"][inside]) - latency) < 0.5, cube
        for trial_type in ("motor", "visual"):
            assert np.min(analysis.maps[f"glm_{trial_type}_z"][inside]) > 3.0, (cube, trial_type)
            assert np.median(analysis.maps[f"glm_{trial_type}_effect"][inside]) > 0
    null = phantom.cubes == 4
    assert (
        np.max(np.abs(analysis.maps["glm_motor_z"][null])) < 4
        and np.max(np.abs(analysis.maps["glm_visual_z"][null])) < 4
    )


def test_mutual_information_finds_the_responding_cubes_and_orders_their_timing(phantom, analysis):
    medians = [np.median(analysis.maps["mi_preferred_time"][phantom.cubes == cube]) for cube in (1, 2, 3)]
    assert medians == sorted(medians) and medians[0] < medians[2]
    for cube in (1, 2, 3):
        assert np.median(analysis.maps["mi_significance"][phantom.cubes == cube]) < 0.05
    assert np.median(analysis.maps["mi_significance"][phantom.cubes == 4]) > 0.05


def test_connectivity_tables_follow_the_propagation(phantom, analysis):
    fc = analysis.tables["fc_matrix"]
    assert len(fc["pearson"]) == 6
    pearson = analysis.matrices["fc_pearson"]
    assert pearson[0, 1] > pearson[0, 2] > pearson[0, 3]
    np.testing.assert_allclose(fc["fisher_z"], np.arctanh(fc["pearson"]))
    parameters = FMRIParameters()
    n_windows = (phantom.data.shape[-1] - round(parameters.dfc_window_s)) // round(parameters.dfc_step_s) + 1
    assert len(analysis.tables["dfc"]["correlation"]) == 6 * n_windows
    seed_map = analysis.maps["seed_1_correlation"]
    assert np.nanmedian(seed_map[phantom.cubes == 1]) > 0.9 > np.nanmedian(seed_map[phantom.labels > 0])


def test_seed_region_maps_are_the_correlation_with_the_region_mean(phantom, analysis):
    voxels = phantom.brain.copy()
    voxels[CONSTANT_VOXEL] = False
    band_passed = preprocess(
        phantom.data.astype(float),
        voxels,
        phantom.tr_s,
        phantom.spacing_kji,
        FMRIParameters(motion_correction=False),
        ("fc",),
        progress=as_progress(None),
    ).band_passed
    for label, name in ((1, "left_slab"), (3, "slab_3")):
        seed_map = analysis.maps[f"seed_{name}_correlation"]
        in_region = phantom.labels[voxels] == label
        seed = band_passed[in_region].mean(axis=0)
        expected = [np.corrcoef(row, seed)[0, 1] for row in band_passed]
        np.testing.assert_allclose(seed_map[voxels], expected, atol=1e-9)
        assert analysis.summary["fc"]["seed_voxels"][name] == np.count_nonzero(in_region)
        # the oscillation reaches the slabs one after another: each seed map peaks in its own slab
        medians = [np.nanmedian(seed_map[phantom.labels == slab]) for slab in range(1, 5)]
        assert np.argmax(medians) == label - 1, name


def test_seed_regions_without_voxels_or_with_clashing_names_are_refused(phantom):
    parameters = FMRIParameters(motion_correction=False, features="fc")
    outside = np.zeros(phantom.brain.shape, dtype=int)
    outside[0, 0, 0] = 1
    with pytest.raises(
        InputError, match="seed region 'corner' has no voxel with signal inside the brain mask"
    ):
        analyse(phantom, parameters=parameters, seed_labels=outside, seed_region_names={1: "corner"})
    empty_segment = {**SEED_REGION_NAMES, 2: "empty"}
    with pytest.raises(InputError, match="seed region 'empty' has no voxel"):
        analyse(
            phantom,
            parameters=parameters,
            seed_labels=seed_region_labels(phantom),
            seed_region_names=empty_segment,
        )
    with pytest.raises(InputError, match=r"seed region '1\.' would write seed_1_correlation"):
        analyse(
            phantom,
            parameters=parameters,
            seeds=[cube_centre(phantom, 1)],
            seed_labels=phantom.labels == 1,
            seed_region_names={1: "1."},
        )


def test_features_are_skipped_without_their_inputs_and_refused_when_requested(phantom):
    short = make_phantom(n_frames=120)
    skipped = analyse(short, parameters=FMRIParameters(motion_correction=False, features="")).skipped
    assert set(skipped) == {"glm", "mi", "fc", "dfc"}
    for features, message in (
        ("glm", "--features glm needs task events"),
        ("mi", "--features mi needs task events"),
        ("dfc", "needs at least two regions"),
        ("fc", "or seed points"),
    ):
        with pytest.raises(InputError, match=message):
            analyse(short, parameters=FMRIParameters(motion_correction=False, features=features))


def test_censoring_by_framewise_displacement_interpolates_frames_and_adds_spike_regressors(phantom):
    motion = np.zeros((phantom.data.shape[-1], 6))
    motion[100:, 3] = 1.0  # a 1 mm step along x between frames 99 and 100
    parameters = FMRIParameters(
        motion_correction=False, features="qc,glm,lag", censor_fd_mm=0.5, motion_terms=0
    )
    result = analyse(phantom, parameters=parameters, events=phantom.events, motion=motion)
    np.testing.assert_array_equal(np.flatnonzero(result.censored), [99, 100, 101, 102])
    np.testing.assert_array_equal(np.flatnonzero(result.tables["qc"]["censored"]), [99, 100, 101, 102])
    assert result.tables["qc"]["fd_mm"][100] == pytest.approx(1.0)
    assert "censored_frame_100" in result.summary["glm"]["regressors"]
    assert np.isfinite(result.maps["lag"][phantom.labels > 0]).mean() > 0.99
    np.testing.assert_allclose(result.tables["motion"]["trans_x_mm"], motion[:, 3])


def test_contrasts_are_linear_in_the_trial_type_effects(phantom):
    parameters = FMRIParameters(motion_correction=False, features="glm", contrasts="motor-visual; 2*visual")
    maps = analyse(phantom, parameters=parameters, events=phantom.events).maps
    np.testing.assert_allclose(
        maps["glm_motor_minus_visual_effect"], maps["glm_motor_effect"] - maps["glm_visual_effect"]
    )
    np.testing.assert_allclose(maps["glm_2xvisual_effect"], 2 * maps["glm_visual_effect"])
    assert parse_contrast("-motor + visual", ("motor", "visual")) == (
        "minus_motor_plus_visual",
        {"motor": -1.0, "visual": 1.0},
    )
    for expression, message in (
        ("motor-visul", "'visul' is not a trial type"),
        ("motor--visual", "empty term"),
        ("x*motor", "not a number"),
        ("motor-motor", "no non-zero weight"),
    ):
        with pytest.raises(InputError, match=message):
            parse_contrast(expression, ("motor", "visual"))


def test_slice_timing_reference_is_passed_on_and_smoothing_keeps_constants(phantom):
    timing = SliceTiming(np.linspace(0.0, 0.875, phantom.data.shape[0]), axis=0)
    result = analyse(
        phantom, parameters=FMRIParameters(motion_correction=False, features="qc"), slice_timing=timing
    )
    assert (
        result.reference_time_s
        == pytest.approx(slice_timing_reference_s(timing, 0.5))
        == pytest.approx(0.4375)
    )
    voxels = phantom.brain
    smoothed = smooth_rows(np.full((voxels.sum(), 3), 7.0), voxels, 8.0, phantom.spacing_kji)
    np.testing.assert_allclose(smoothed, 7.0)
