"""Left-ventricular segmentation on the speckle phantom, volume indices, and refusal of bad seeds/series."""

from __future__ import annotations

import numpy as np
import pytest
from Echo4DFeaturesLib.lv_segmentation import automatic_seed, segment_left_ventricle
from Echo4DFeaturesLib.phantom import CAVITY, MYOCARDIUM, make_echo_phantom
from Echo4DFeaturesLib.volumes import cardiac_phases, volume_curve_ml, volume_indices
from scipy import ndimage
from SpatioTemporalCommonLib.errors import InputError


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def mean_surface_distance_mm(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Symmetric mean distance between the boundary voxels of two masks, mm."""
    surface_a = a & ~ndimage.binary_erosion(a)
    surface_b = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    return float((to_b.sum() + to_a.sum()) / (to_b.size + to_a.size))


def true_ejection_fraction(phantom) -> float:
    volumes = phantom.cavity_volumes_ml
    return 100.0 * (volumes.max() - volumes.min()) / volumes.max()


def check_against_truth(phantom, result, label: str) -> None:
    truth = phantom.labels == CAVITY
    found = result.labels == 1
    frames = range(truth.shape[3])
    dices = [dice(found[..., t], truth[..., t]) for t in frames]
    distances = [mean_surface_distance_mm(found[..., t], truth[..., t], phantom.spacing_mm) for t in frames]
    ef_error = result.indices.ef_percent - true_ejection_fraction(phantom)
    print(
        f"{label}: Dice min {min(dices):.3f} mean {np.mean(dices):.3f}; mean surface distance max "
        f"{max(distances):.2f} mm; EF {result.indices.ef_percent:.1f} % vs true "
        f"{true_ejection_fraction(phantom):.1f} % (error {ef_error:+.2f} points); "
        f"ED/ES frames {result.indices.ed_frame}/{result.indices.es_frame}"
    )
    assert min(dices) > 0.90
    assert max(distances) < 1.0
    assert abs(ef_error) < 3.0
    assert (result.indices.ed_frame, result.indices.es_frame) == (phantom.ed_frame, phantom.es_frame)


@pytest.fixture(scope="module")
def phantom():
    return make_echo_phantom(n_frames=10, seed=7)


def test_automatic_segmentation_matches_the_phantom(phantom):
    result = segment_left_ventricle(phantom.image, phantom.spacing_mm)
    seed = np.round(result.seed_kji).astype(int)
    assert np.all(phantom.labels[tuple(seed)] == CAVITY)
    check_against_truth(phantom, result, "64^3 x 10, 1 mm, automatic seed")
    np.testing.assert_allclose(result.volumes_ml, volume_curve_ml(result.labels, phantom.spacing_mm))


def test_anisotropic_voxels_are_segmented_in_mm():
    phantom = make_echo_phantom((80, 56, 64), (0.8, 1.15, 1.0), n_frames=8, seed=8)
    result = segment_left_ventricle(phantom.image, phantom.spacing_mm, seed_kji=phantom.cavity_centre_kji)
    check_against_truth(phantom, result, "80 x 56 x 64 x 8, 0.8 x 1.15 x 1.0 mm, given seed")


def test_automatic_seed_lies_in_the_cavity_in_every_frame(phantom):
    seed = np.round(automatic_seed(phantom.image, phantom.spacing_mm)).astype(int)
    assert np.all(phantom.labels[tuple(seed)] == CAVITY)


def test_progress_is_reported_from_start_to_end(phantom):
    fractions = []
    segment_left_ventricle(
        phantom.image[..., :4],
        phantom.spacing_mm,
        seed_kji=phantom.cavity_centre_kji,
        mode="3d",
        progress=lambda fraction, message: fractions.append(fraction),
    )
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_bad_series_and_seeds_are_refused_with_the_fix(phantom):
    image, spacing = phantom.image, phantom.spacing_mm
    with pytest.raises(InputError, match="time on the last axis"):
        segment_left_ventricle(image[..., 0], spacing)
    with pytest.raises(InputError, match="at least 3 frames"):
        segment_left_ventricle(image[..., :2], spacing)
    with pytest.raises(InputError, match="outside the volume"):
        segment_left_ventricle(image, spacing, seed_kji=(10.0, 70.0, 30.0))
    always_myocardium = np.all(phantom.labels == MYOCARDIUM, axis=3)
    always_myocardium[..., int(phantom.base_centre_kji[2]) - 4 :] = False
    depth = ndimage.distance_transform_edt(always_myocardium)
    in_wall = np.unravel_index(int(np.argmax(depth)), depth.shape)
    with pytest.raises(InputError, match="myocardium"):
        segment_left_ventricle(image, spacing, seed_kji=tuple(float(c) for c in in_wall))
    with pytest.raises(InputError, match="below 2 voxels"):
        segment_left_ventricle(image, (1.0, 1.0, 2.5), seed_kji=phantom.cavity_centre_kji)


def test_volume_indices_of_a_known_curve():
    volumes = np.array([130.0, 120.0, 80.0, 52.0, 60.0, 95.0, 125.0])
    indices = volume_indices(volumes)
    assert (indices.ed_frame, indices.es_frame) == (0, 3)
    assert indices.edv_ml == 130.0 and indices.esv_ml == 52.0 and indices.sv_ml == 78.0
    assert indices.ef_percent == pytest.approx(60.0)
    assert cardiac_phases(np.roll(volumes, 2)) == (2, 5)


def test_volume_curve_counts_voxels_in_ml():
    labels = np.zeros((10, 10, 10, 3), dtype=np.uint8)
    labels[2:6, 2:7, 2:8, 0] = 1
    labels[2:4, 2:7, 2:8, 2] = 1
    np.testing.assert_allclose(
        volume_curve_ml(labels, (2.0, 0.5, 1.5)), [120 * 1.5 / 1000, 0.0, 60 * 1.5 / 1000]
    )


def test_bad_volume_curves_are_refused():
    with pytest.raises(InputError, match="NaN"):
        volume_indices(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(InputError, match="3\\+ frames"):
        cardiac_phases(np.array([1.0, 2.0]))
