"""Speckle phantom: truth geometry and volumes, speckle statistics, drop-out, tissue-following speckle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from Echo4DFeaturesLib.phantom import (
    CAVITY,
    MYOCARDIUM,
    PhantomParameters,
    cycle_volumes_ml,
    make_echo_phantom,
)
from SpatioTemporalCommonLib.errors import InputError

LOG_RAYLEIGH_STD_DB = 20 / math.log(10) * math.pi / math.sqrt(24)
"""Standard deviation of 20 log10 of a Rayleigh variable (fully developed speckle): 5.57 dB."""


@pytest.fixture(scope="module")
def phantom():
    return make_echo_phantom(n_frames=10, seed=2)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((64, 64, 64), (1.0, 1.0, 1.0)), ((80, 56, 64), (0.8, 1.15, 1.0))],
    ids=["iso", "aniso"],
)
def test_truth_follows_the_cycle_with_incompressible_myocardium(shape, spacing):
    params = PhantomParameters()
    phantom = make_echo_phantom(shape, spacing, n_frames=10, params=params, seed=0)
    voxel_ml = float(np.prod(spacing)) / 1000
    cavity_ml = np.count_nonzero(phantom.labels == CAVITY, axis=(0, 1, 2)) * voxel_ml
    myocardium_ml = np.count_nonzero(phantom.labels == MYOCARDIUM, axis=(0, 1, 2)) * voxel_ml
    np.testing.assert_allclose(cavity_ml, phantom.cavity_volumes_ml, rtol=0.03)
    np.testing.assert_allclose(myocardium_ml, phantom.myocardial_volume_ml, rtol=0.02)
    edv, esv = phantom.cavity_volumes_ml.max(), phantom.cavity_volumes_ml.min()
    assert (edv - esv) / edv == pytest.approx(params.ejection_fraction)
    assert (phantom.ed_frame, phantom.es_frame) == (0, 4)
    assert phantom.image.shape == (*shape, 10) and phantom.image.dtype == np.float32
    assert 0.0 <= phantom.image.min() and phantom.image.max() <= 1.0


def test_cycle_curve_reaches_end_systole_at_the_requested_phase():
    volumes = cycle_volumes_ml(20, edv_ml=120.0, ejection_fraction=0.6, es_phase=0.35)
    assert volumes[0] == pytest.approx(120.0)
    assert int(np.argmin(volumes)) == 7
    assert volumes.min() == pytest.approx(48.0)


def test_same_seed_same_series(phantom):
    again = make_echo_phantom(n_frames=10, seed=2)
    np.testing.assert_array_equal(again.image, phantom.image)
    other = make_echo_phantom(n_frames=10, seed=3)
    assert not np.array_equal(other.image, phantom.image)


def test_speckle_is_fully_developed(phantom):
    """Log-compressed Rayleigh speckle has a 5.57 dB standard deviation whatever its mean."""
    far_tissue = phantom.image[:8, :, :20, :]
    std_db = float(far_tissue.std()) * PhantomParameters().dynamic_range_db
    assert std_db == pytest.approx(LOG_RAYLEIGH_STD_DB, abs=0.3)


def test_drop_out_sector_and_blood_pool_contrast(phantom):
    params = PhantomParameters()
    frame = phantom.image[..., 0]
    labels = phantom.labels[..., 0]
    _, j, i = np.indices(frame.shape)
    base = phantom.base_centre_kji
    azimuth = np.degrees(np.arctan2(j - base[1], i - base[2]))
    myocardium = labels == MYOCARDIUM
    inside = myocardium & (np.abs(azimuth) < 0.4 * params.dropout_width_deg)
    outside = myocardium & (np.abs(azimuth) > params.dropout_width_deg)
    loss_db = (frame[outside].mean() - frame[inside].mean()) * params.dynamic_range_db
    assert loss_db == pytest.approx(-20 * math.log10(params.dropout_gain), abs=1.0)
    blood_db = (frame[labels == CAVITY].mean() - frame[outside].mean()) * params.dynamic_range_db
    assert blood_db < -20


def star_radius(direction, long_mm, short_mm):
    """Distance from the base centre to a half-ellipsoid along a unit direction (k component first)."""
    return 1 / math.sqrt((direction[0] / long_mm) ** 2 + (1 - direction[0] ** 2) / short_mm**2)


def normalised_correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def block_around(centre, half=2):
    """Slices of the (2 half + 1)^3 block centred on a voxel."""
    return tuple(slice(c - half, c + half + 1) for c in centre)


def test_myocardial_speckle_moves_with_the_wall():
    """Block matching of frozen speckle (no noise) finds the analytic displacement of a mid-wall point."""
    params = PhantomParameters(speckle_correlation=1.0, noise_level=0.0, dropout_gain=1.0)
    phantom = make_echo_phantom(n_frames=10, params=params, seed=4)
    direction = np.array([-math.sin(math.radians(30)), 0.0, -math.cos(math.radians(30))])
    cavity, epicardium = phantom.cavity_semi_axes_mm, phantom.epicardium_semi_axes_mm
    frame = 2
    inner0, outer0 = star_radius(direction, *cavity[0]), star_radius(direction, *epicardium[0])
    inner, outer = star_radius(direction, *cavity[frame]), star_radius(direction, *epicardium[frame])
    middle0 = 0.5 * (inner0 + outer0)
    middle = np.cbrt(inner**3 + (middle0**3 - inner0**3) * (outer**3 - inner**3) / (outer0**3 - inner0**3))
    start = np.rint(np.asarray(phantom.base_centre_kji) + middle0 * direction).astype(int)
    expected = (middle - middle0) * direction
    block = phantom.image[(*block_around(start), 0)]
    scores = {}
    for shift in np.ndindex(7, 7, 7):
        offset = tuple(int(s) - 3 for s in shift)
        moved = phantom.image[(*block_around(start + np.asarray(offset)), frame)]
        scores[offset] = normalised_correlation(block, moved)
    best = max(scores, key=scores.get)
    print(f"expected displacement {np.round(expected, 2)} voxels, best match {best}, NCC {scores[best]:.2f}")
    assert np.all(np.abs(np.asarray(best) - expected) <= 1.0)
    assert scores[best] > 0.6 and scores[best] > scores[(0, 0, 0)] + 0.2


def test_bad_phantom_requests_are_refused():
    with pytest.raises(InputError, match="does not fit"):
        make_echo_phantom((32, 32, 32))
    with pytest.raises(InputError, match="at least 3 frames"):
        make_echo_phantom(n_frames=2)
    with pytest.raises(InputError, match="ejection fraction"):
        make_echo_phantom(params=PhantomParameters(ejection_fraction=1.2))
