"""Feature asymmetry: agreement with a direct implementation, edge localisation, rotation invariance,
the dark-to-bright orientation convention, Kovesi's noise threshold, 4D vs 3D on the speckle phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest
from Echo4DFeaturesLib.feature_asymmetry import (
    feature_asymmetry,
    feature_asymmetry_series,
    noise_thresholds,
)
from Echo4DFeaturesLib.lv_segmentation import fibonacci_directions
from Echo4DFeaturesLib.monogenic import LogGaborBank, monogenic_signal
from Echo4DFeaturesLib.phantom import CAVITY, make_echo_phantom
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.special import erf
from scipy.stats import rankdata
from SpatioTemporalCommonLib.errors import InputError

BANK = LogGaborBank(n_scales=3, min_wavelength_mm=4.0, mult=2.0, sigma_onf=0.55)


def riesz_multiplier(frequency, radius, n):
    """-i u / |u| along one axis, zero at that axis's Nyquist frequency (even n), where it is not odd."""
    multiplier = -1j * frequency / radius
    if n % 2 == 0:
        multiplier = np.where(np.isclose(np.abs(frequency), np.abs(frequency).max()), 0, multiplier)
    return multiplier


def reference_feature_maps(image, steps, bank, k, seed=None):
    """FA and PS written out directly: full complex128 FFTs, all scales stored, median over all voxels."""
    n_dims = len(steps)
    axes = tuple(range(n_dims))
    spectrum = np.fft.fftn(image.astype(float), axes=axes)
    frequencies = np.meshgrid(
        *(np.fft.fftfreq(image.shape[a], d=steps[a]) for a in axes), indexing="ij", sparse=True
    )
    batch = (np.newaxis,) * (image.ndim - n_dims)
    frequencies = [f[(..., *batch)] for f in frequencies]
    radius = np.sqrt(sum(f**2 for f in frequencies))
    radius_safe = np.where(radius > 0, radius, 1.0)
    evens, odd_norms, odd_vectors = [], [], []
    for wavelength in bank.wavelengths_mm:
        gain = np.exp(-(np.log(radius_safe * wavelength) ** 2) / (2 * np.log(bank.sigma_onf) ** 2))
        gain = np.where(radius > 0, gain, 0.0)
        evens.append(np.fft.ifftn(spectrum * gain, axes=axes).real)
        odd = [
            np.fft.ifftn(spectrum * gain * riesz_multiplier(f, radius_safe, image.shape[a]), axes=axes).real
            for a, f in enumerate(frequencies)
        ]
        odd_vectors.append(odd)
        odd_norms.append(np.sqrt(sum(o**2 for o in odd)))
    amplitudes = [np.hypot(e, o) for e, o in zip(evens, odd_norms, strict=True)]
    tau = np.median(amplitudes[0]) / math.sqrt(math.log(4))
    smallest = tau * (math.sqrt(math.pi / 2) + k * math.sqrt((4 - math.pi) / 2))
    asymmetry = np.zeros(image.shape)
    symmetry = np.zeros(image.shape)
    for scale in range(bank.n_scales):
        threshold = smallest * bank.mult ** (-scale * n_dims / 2)
        term = np.maximum(odd_norms[scale] - np.abs(evens[scale]) - threshold, 0)
        if seed is not None:
            grids = np.meshgrid(*(np.arange(image.shape[a]) for a in range(3)), indexing="ij")
            trailing = (np.newaxis,) * (image.ndim - 3)
            offsets = [
                ((g - s) * steps[a])[(..., *trailing)]
                for a, (g, s) in enumerate(zip(grids, seed, strict=True))
            ]
            radial = sum(o * d for o, d in zip(odd_vectors[scale][:3], offsets, strict=True))
            term = np.where(radial < 0, term, 0.0)
        asymmetry += term
        symmetry += np.maximum(np.abs(evens[scale]) - odd_norms[scale] - threshold, 0)
    total = sum(amplitudes)
    epsilon = 1e-4 * total.mean()
    return asymmetry / (total + epsilon), symmetry / (total + epsilon)


def blurred_ball(shape, spacing, centre_mm, radius_mm, blur_mm):
    """Dark ball (0) in a bright background (1) with an error-function edge."""
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre_mm, strict=True)))
    return (0.5 * (1 + erf((distance - radius_mm) / (math.sqrt(2) * blur_mm)))).astype(np.float32)


def radial_peaks(fa, spacing, centre_mm, radius_mm, n_rays=300):
    """Radius (mm) of the FA maximum within 4 mm of ``radius_mm`` along rays from the centre."""
    directions = fibonacci_directions(n_rays)
    samples = np.arange(radius_mm - 4, radius_mm + 4, 0.02)
    points = np.asarray(centre_mm) + samples[None, :, None] * directions[:, None, :]
    profile = ndimage.map_coordinates(fa, np.moveaxis(points / np.asarray(spacing), -1, 0), order=3)
    return samples[np.argmax(profile, axis=1)]


def test_streamed_computation_matches_direct_formula_3d():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.standard_normal((24, 20, 28)), 1.0).astype(np.float32)
    spacing = (1.5, 1.0, 0.8)
    maps = feature_asymmetry(image, spacing, BANK, k=1.5, phase_symmetry=True, workers=2)
    asymmetry, symmetry = reference_feature_maps(image, spacing, BANK, 1.5)
    np.testing.assert_allclose(maps.feature_asymmetry, asymmetry, atol=2e-4)
    np.testing.assert_allclose(maps.phase_symmetry, symmetry, atol=2e-4)


@pytest.mark.parametrize("mode", ["4d", "3d"])
def test_streamed_computation_matches_direct_formula_series_with_seed(mode):
    rng = np.random.default_rng(1)
    series = ndimage.gaussian_filter(rng.standard_normal((20, 24, 22, 6)), (1, 1, 1, 0)).astype(np.float32)
    spacing = (1.0, 1.2, 1.0)
    seed = (9.0, 12.5, 10.0)
    maps = feature_asymmetry_series(
        series, spacing, BANK, mode=mode, space_time_mm_per_frame=3.0, k=2.0, seed_kji=seed, workers=2
    )
    steps = (*spacing, 3.0) if mode == "4d" else spacing
    asymmetry, _ = reference_feature_maps(series, steps, BANK, 2.0, seed=seed)
    np.testing.assert_allclose(maps.feature_asymmetry, asymmetry, atol=2e-4)


def test_feature_asymmetry_is_contrast_invariant():
    rng = np.random.default_rng(2)
    image = ndimage.gaussian_filter(rng.standard_normal((24, 24, 24)), 1.5).astype(np.float32)
    plain = feature_asymmetry(image, (1.0, 1.0, 1.0), BANK).feature_asymmetry
    scaled = feature_asymmetry(40.0 * image + 7.0, (1.0, 1.0, 1.0), BANK).feature_asymmetry
    np.testing.assert_allclose(scaled, plain, atol=1e-4)


def test_sphere_step_edge_peaks_on_the_surface():
    shape, spacing, radius = (64, 64, 64), (1.0, 1.0, 1.0), 16.0
    centre = np.array([31.8, 31.7, 31.6])
    fa = feature_asymmetry(blurred_ball(shape, spacing, centre, radius, 0.5), spacing, BANK).feature_asymmetry
    error = radial_peaks(fa, spacing, centre, radius) - radius
    print(
        f"sphere FA peak - surface: mean {error.mean():+.3f} voxel, max |.| {np.abs(error).max():.3f} voxel"
    )
    assert np.abs(error).max() < 0.5


def test_anisotropic_voxels_give_the_same_surface_in_mm():
    radius, blur = 16.0, 1.0
    results = {}
    for spacing, shape in (((1.0, 1.0, 1.0), (64, 64, 64)), ((2.0, 1.0, 1.0), (32, 64, 64))):
        centre = np.array([31.8, 31.7, 31.6])
        image = blurred_ball(shape, spacing, centre, radius, blur)
        fa = feature_asymmetry(image, spacing, BANK).feature_asymmetry
        results[spacing] = radial_peaks(fa, spacing, centre, radius) - radius
    isotropic, anisotropic = results[(1.0, 1.0, 1.0)], results[(2.0, 1.0, 1.0)]
    print(
        f"FA peak - surface (mm): isotropic {isotropic.mean():+.3f}, 2 x 1 x 1 mm voxels {anisotropic.mean():+.3f}"
    )
    assert np.abs(anisotropic).max() < 0.5 * 2.0
    assert abs(anisotropic.mean() - isotropic.mean()) < 0.1


def blurred_ellipsoid(rotation, shape, semi_axes, blur):
    """Bright ellipsoid rotated by ``rotation`` about the grid centre, with an error-function edge."""
    centre = (np.asarray(shape) - 1) / 2
    grid = np.indices(shape).astype(float) - centre[:, None, None, None]
    body = np.tensordot(rotation.as_matrix().T, grid, axes=1)
    scaled = body / np.asarray(semi_axes)[:, None, None, None]
    level = np.sqrt((scaled**2).sum(axis=0))
    gradient = np.sqrt(((body / np.asarray(semi_axes)[:, None, None, None] ** 2) ** 2).sum(axis=0))
    distance = (level - 1) * np.maximum(level, 1e-9) / np.maximum(gradient, 1e-9)
    return (0.5 * (1 - erf(distance / (math.sqrt(2) * blur)))).astype(np.float32), distance


def test_feature_asymmetry_is_rotation_invariant():
    shape, semi_axes = (64, 64, 64), (14.0, 10.0, 7.0)
    centre = (np.asarray(shape) - 1) / 2
    upright, _ = blurred_ellipsoid(Rotation.identity(), shape, semi_axes, 0.7)
    fa_upright = feature_asymmetry(upright, (1.0, 1.0, 1.0), BANK).feature_asymmetry
    rotation = Rotation.from_euler("xyz", [17, 33, 52], degrees=True)
    turned, distance = blurred_ellipsoid(rotation, shape, semi_axes, 0.7)
    fa_turned = feature_asymmetry(turned, (1.0, 1.0, 1.0), BANK).feature_asymmetry
    grid = np.indices(shape).astype(float) - centre[:, None, None, None]
    source = np.tensordot(rotation.as_matrix().T, grid, axes=1) + centre[:, None, None, None]
    fa_upright_turned = ndimage.map_coordinates(fa_upright, source, order=3)
    band = np.abs(distance) < 4
    correlation = np.corrcoef(fa_upright_turned[band], fa_turned[band])[0, 1]
    difference = np.abs(fa_upright_turned - fa_turned)[band].mean()
    print(f"rotation invariance: correlation {correlation:.4f}, mean |FA difference| {difference:.4f}")
    assert correlation > 0.98
    assert difference < 0.03


def test_odd_part_of_a_rising_step_points_against_the_rise():
    """Sign convention: for intensity increasing along +i the Riesz i component is negative at the step."""
    image = np.zeros((16, 16, 64), dtype=np.float32)
    image[..., 32:] = 1.0
    signal = monogenic_signal(image, (1.0, 1.0, 1.0), 8.0)
    at_step = slice(31, 33)
    assert np.all(signal.odd[2, 8, 8, at_step] < 0)
    assert np.all(np.abs(signal.odd[2, 8, 8, at_step]) > np.abs(signal.even[8, 8, at_step]))
    np.testing.assert_allclose(signal.even[8, 8, 31], -signal.even[8, 8, 32], atol=1e-5)


def test_oriented_feature_asymmetry_keeps_dark_to_bright_edges_seen_from_the_seed():
    """A dark cavity in a bright shell in a grey background: only the inner (endocardial) edge survives."""
    shape, spacing = (64, 64, 64), (1.0, 1.0, 1.0)
    centre = np.array([31.5, 31.5, 31.5])
    cavity = blurred_ball(shape, spacing, centre, 10.0, 0.6)
    shell = 1.0 - blurred_ball(shape, spacing, centre, 17.0, 0.6)
    image = 0.1 + 0.9 * cavity * shell + 0.4 * (1.0 - shell)
    plain = feature_asymmetry(image, spacing, BANK).feature_asymmetry
    oriented = feature_asymmetry(image, spacing, BANK, seed_kji=tuple(centre)).feature_asymmetry

    def peak(fa, radius):
        return radial_peaks(fa, spacing, centre, radius), ndimage.map_coordinates(
            fa, np.moveaxis((centre + radius * fibonacci_directions(300)) / spacing, -1, 0), order=1
        )

    _, plain_inner = peak(plain, 10.0)
    _, plain_outer = peak(plain, 17.0)
    _, oriented_inner = peak(oriented, 10.0)
    _, oriented_outer = peak(oriented, 17.0)
    assert plain_inner.min() > 0.5 and plain_outer.min() > 0.3
    assert oriented_inner.min() > 0.5
    np.testing.assert_allclose(oriented_inner, plain_inner, atol=0.05)
    assert oriented_outer.max() < 0.02


def test_noise_thresholds_follow_the_rayleigh_model_and_the_n_d_scaling():
    rng = np.random.default_rng(3)
    sigma = 0.7
    samples = rng.rayleigh(scale=sigma, size=400_000)
    thresholds = noise_thresholds(samples, n_dims=4, n_scales=3, mult=2.0, k=2.0)
    expected = sigma * (math.sqrt(math.pi / 2) + 2.0 * math.sqrt((4 - math.pi) / 2))
    assert thresholds[0] == pytest.approx(expected, rel=0.01)
    np.testing.assert_allclose(thresholds / thresholds[0], [1.0, 2.0**-2, 2.0**-4])


@pytest.mark.parametrize(
    ("shape", "space_time", "n_dims"), [((48, 48, 48), None, 3), ((32, 32, 32, 32), 1.0, 4)]
)
def test_white_noise_response_scales_as_mult_to_minus_n_over_2(shape, space_time, n_dims):
    """The n-D correction of the threshold: noise amplitude ratio between scales is mult^(-n/2)."""
    noise = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    medians = [
        float(
            np.median(
                monogenic_signal(noise, (1.0, 1.0, 1.0), w, space_time_mm_per_frame=space_time).amplitude
            )
        )
        for w in (8.0, 16.0)
    ]
    assert medians[1] / medians[0] == pytest.approx(2.0 ** (-n_dims / 2), rel=0.07)


def test_threshold_suppresses_pure_noise():
    noise = np.random.default_rng(6).standard_normal((40, 40, 40)).astype(np.float32)
    default = feature_asymmetry(noise, (1.0, 1.0, 1.0), BANK, k=2.0).feature_asymmetry
    loose = feature_asymmetry(noise, (1.0, 1.0, 1.0), BANK, k=0.0).feature_asymmetry
    assert np.mean(default > 0) < 0.001 < 0.05 < np.mean(loose > 0)


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` vs the rest (Mann-Whitney U / n1 n0)."""
    ranks = rankdata(np.concatenate([score[positive], score[~positive]]))
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def boundary_voxels(labels: np.ndarray) -> np.ndarray:
    """Voxels on either side of every tissue interface (cavity, myocardium, outside), frame by frame."""
    boundary = np.zeros(labels.shape, dtype=bool)
    for frame in range(labels.shape[3]):
        for region in (labels[..., frame] == CAVITY, labels[..., frame] > 0):
            boundary[..., frame] |= region & ~ndimage.binary_erosion(region)
            boundary[..., frame] |= ~region & ndimage.binary_dilation(region)
    return boundary


def test_4d_feature_asymmetry_detects_phantom_boundaries_better_than_3d():
    phantom = make_echo_phantom(n_frames=10, seed=11)
    truth = boundary_voxels(phantom.labels)
    auc = {}
    for mode in ("3d", "4d"):
        fa = feature_asymmetry_series(phantom.image, phantom.spacing_mm, mode=mode).feature_asymmetry
        auc[mode] = roc_auc(fa, truth)
    print(
        f"ROC AUC of boundary vs non-boundary voxels: FA 3D per frame {auc['3d']:.4f}, FA 4D {auc['4d']:.4f}"
    )
    assert auc["4d"] >= auc["3d"]


def test_bad_input_is_refused_with_the_fix():
    volume = np.zeros((24, 24, 24), dtype=np.float32)
    series = np.zeros((24, 24, 24, 4), dtype=np.float32)
    with pytest.raises(InputError, match="time on the last axis"):
        feature_asymmetry_series(volume, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="at least 3 frames"):
        feature_asymmetry_series(series[..., :2], (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="outside the volume"):
        feature_asymmetry_series(series, (1.0, 1.0, 1.0), seed_kji=(5.0, 30.0, 5.0))
    with pytest.raises(InputError, match="'4d' or '3d'"):
        feature_asymmetry_series(series, (1.0, 1.0, 1.0), mode="2d")
    with pytest.raises(InputError, match="k = -1"):
        feature_asymmetry(volume, (1.0, 1.0, 1.0), k=-1.0)
    with pytest.raises(InputError, match="feature_asymmetry_series"):
        feature_asymmetry(series, (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="below 2 voxels"):
        feature_asymmetry(volume, (1.0, 1.0, 2.5))
    with pytest.raises(InputError, match="local phase scale"):
        feature_asymmetry(volume, (1.0, 1.0, 1.0), local_phase_scale=3)


def test_local_phase_is_returned_at_the_requested_scale():
    volume = blurred_ball((40, 40, 40), (1.0, 1.0, 1.0), (19.5, 19.5, 19.5), 10.0, 0.6)
    maps = feature_asymmetry(volume, (1.0, 1.0, 1.0), BANK, local_phase_scale=1)
    expected = monogenic_signal(volume, (1.0, 1.0, 1.0), BANK.wavelengths_mm[1]).phase
    np.testing.assert_allclose(maps.local_phase, expected, atol=1e-5)
