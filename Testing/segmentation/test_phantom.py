"""The synthetic breast DCE phantom: reproducibility, geometry and the kinetics that separate lesion types."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.phantom import benign_enhancement, generate_breast_phantom, malignant_enhancement

SMALL = {"shape": (32, 64, 64), "lesion_radius_mm": (3.5, 4.5)}


def test_equal_seeds_give_equal_phantoms_and_other_seeds_differ() -> None:
    first, again, other = (generate_breast_phantom(seed, **SMALL) for seed in (5, 5, 6))
    np.testing.assert_array_equal(first.phases, again.phases)
    np.testing.assert_array_equal(first.tumor_mask, again.tumor_mask)
    assert not np.array_equal(first.tumor_mask, other.tumor_mask)


def test_phantom_arrays_times_and_masks() -> None:
    phantom = generate_breast_phantom(1, n_post_contrast=3, spacing=(1.5, 1.0, 1.0), **SMALL)
    assert phantom.phases.shape == (4, 32, 64, 64) and phantom.phases.dtype == np.float32
    assert phantom.spacing == (1.5, 1.0, 1.0)
    assert phantom.times[0] == 0.0 and 60.0 <= phantom.times[1] <= 120.0
    assert np.all(np.diff(phantom.times) >= 60.0) and np.all(np.diff(phantom.times) <= 120.0)
    assert phantom.tumor_mask.dtype == np.uint8 and phantom.benign_mask.dtype == np.uint8
    assert phantom.tumor_mask.sum() > 0 and phantom.benign_mask.sum() > 0
    assert not np.any(phantom.tumor_mask & phantom.benign_mask)
    assert ndimage.label(phantom.tumor_mask)[1] == 1


def test_enhancement_curves_meet_at_the_first_post_contrast_time_and_then_diverge() -> None:
    times = np.array([0.0, 90.0, 180.0, 300.0, 420.0])
    malignant = malignant_enhancement(times, 90.0, 1.2, uptake_s=25.0, washout_s=400.0)
    benign = benign_enhancement(times, 90.0, 1.2, uptake_s=250.0)
    assert malignant[0] == 0.0 and benign[0] == 0.0
    assert malignant[1] == pytest.approx(1.2) and benign[1] == pytest.approx(1.2)
    assert np.all(np.diff(malignant[1:]) < 0) and np.all(np.diff(benign[1:]) > 0)
    expected = (
        1.2
        * (1 - np.exp(-300.0 / 25.0))
        * np.exp(-300.0 / 400.0)
        / ((1 - np.exp(-90.0 / 25.0)) * np.exp(-90.0 / 400.0))
    )
    assert malignant[3] == pytest.approx(expected)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_lesion_types_match_at_first_post_contrast_and_differ_later(seed: int) -> None:
    phantom = generate_breast_phantom(seed, n_post_contrast=4, noise_sd=0.0, bias_amplitude=0.0, **SMALL)

    def core_signal(mask: np.ndarray) -> np.ndarray:
        core = ndimage.binary_erosion(mask, iterations=1)
        return phantom.phases[:, core].mean(axis=1)

    malignant, benign = core_signal(phantom.tumor_mask), core_signal(phantom.benign_mask)
    first_post_enhancement = malignant[1] / malignant[0] - 1.0, benign[1] / benign[0] - 1.0
    assert first_post_enhancement[0] == pytest.approx(first_post_enhancement[1], rel=0.1)
    assert malignant[0] == pytest.approx(benign[0], rel=0.1)
    assert malignant[-1] < 0.97 * malignant[1]
    assert benign[-1] > 1.1 * benign[1]


def test_phantom_refuses_impossible_requests() -> None:
    with pytest.raises(InputError, match="at least 2"):
        generate_breast_phantom(0, n_post_contrast=1, **SMALL)
    with pytest.raises(InputError, match="too small"):
        generate_breast_phantom(0, shape=(8, 64, 64))
