"""Study validation, N4, resampling, normalisation and phase selection."""

from __future__ import annotations

import numpy as np
import pytest
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.preprocessing import (
    input_samples,
    n4_bias_correct,
    normalise_intensity,
    phase_triplets,
    prepare_study,
    resample_volume,
    to_original_grid,
    validate_study,
)

TIMES = [0.0, 90.0, 180.0, 270.0]


def study(n_phases: int = 4, shape: tuple[int, int, int] = (6, 7, 8)) -> np.ndarray:
    """Random positive phases."""
    return np.random.default_rng(0).uniform(1.0, 2.0, size=(n_phases, *shape)).astype(np.float32)


@pytest.mark.parametrize(
    ("phases", "times", "message"),
    [
        (study(2), TIMES[:2], "at least 3"),
        (study(), None, "times are missing"),
        (study(), TIMES[:3], "exactly one time per phase"),
        (study(), [0.0, np.nan, 180.0, 270.0], "missing"),
        (study(), [0.0, 90.0, 90.0, 270.0], "increase strictly, but phase 2"),
        (study(), [0.0, 180.0, 90.0, 270.0], "increase strictly"),
        ([*study(3), study(1, (6, 7, 9))[0]], TIMES, "phase 3 has shape .* one geometry"),
        (study(3, (6, 7)), TIMES[:3], "3D volume"),
    ],
)
def test_bad_studies_are_refused_with_the_fix(phases, times, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_study(phases, times)


def test_non_finite_voxels_are_refused() -> None:
    phases = study()
    phases[1, 2, 3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        validate_study(phases, TIMES)


def test_normalisation_maps_minimum_to_zero_and_99th_percentile_to_one() -> None:
    phases = study() * 50.0 + 7.0
    normalised = normalise_intensity(phases)
    assert normalised.min() == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(normalised, 99) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="constant"):
        normalise_intensity(np.ones((3, 4, 4, 4), dtype=np.float32))


def test_resampling_to_1_mm_reproduces_a_linear_ramp() -> None:
    spacing = (2.0, 1.0, 0.5)
    k, j, i = np.meshgrid(np.arange(10) * 2.0, np.arange(8) * 1.0, np.arange(12) * 0.5, indexing="ij")
    ramp = (3.0 * k - 2.0 * j + i).astype(np.float32)
    resampled = resample_volume(ramp, spacing, (1.0, 1.0, 1.0))
    assert resampled.shape == (20, 8, 6)
    kk, jj, ii = np.meshgrid(np.arange(19.0), np.arange(8.0), np.arange(6.0), indexing="ij")
    np.testing.assert_allclose(resampled[:19], 3.0 * kk - 2.0 * jj + ii, atol=1e-4)


def test_prepared_study_maps_back_onto_the_input_grid() -> None:
    phases = study(3, (10, 9, 8))
    prepared = prepare_study(phases, TIMES[:3], (2.0, 1.0, 1.5))
    assert prepared.phases.shape == (3, 20, 9, 12)
    assert prepared.spacing == (1.0, 1.0, 1.0)
    back = to_original_grid(prepared.phases[0], prepared)
    assert back.shape == (10, 9, 8)


def test_n4_removes_a_smooth_bias_and_keeps_the_enhancement_ratio() -> None:
    shape = (24, 32, 32)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    tissue = np.where(k**2 + j**2 + i**2 < 0.8, 100.0, 0.0)
    bias = np.exp(0.3 * (j + 0.5 * i))
    pre = (tissue * bias).astype(np.float32)
    phases = np.stack([pre, 1.5 * pre, 1.2 * pre])
    corrected = n4_bias_correct(phases, (1.0, 1.0, 1.0), iterations=(20, 20))
    inside = tissue > 0

    def variation(volume: np.ndarray) -> float:
        return float(volume[inside].std() / volume[inside].mean())

    assert variation(corrected[0]) < 0.5 * variation(pre)
    np.testing.assert_allclose(corrected[1][inside] / corrected[0][inside], 1.5, rtol=1e-5)


def test_default_triplets_use_every_later_phase() -> None:
    assert phase_triplets(5) == [(0, 1, 2), (0, 1, 3), (0, 1, 4)]
    assert phase_triplets(6, (0, 2, 5)) == [(0, 2, 5)]
    assert phase_triplets(6, (1, 2, 4, 5)) == [(1, 2, 4), (1, 2, 5)]


@pytest.mark.parametrize(
    ("selection", "message"),
    [((0, 1), "too short"), ((0, 1, 6), "outside 0..5"), ((0, 3, 2), "increase strictly")],
)
def test_bad_phase_selections_are_refused(selection: tuple[int, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        phase_triplets(6, selection)


def test_samples_of_single_phase_networks_read_the_first_post_contrast_phase_once() -> None:
    assert input_samples(5, 1) == [(1,)]
    assert input_samples(5, 3) == [(0, 1, 2), (0, 1, 3), (0, 1, 4)]
    with pytest.raises(InputError, match="2 input channels"):
        input_samples(5, 2)
