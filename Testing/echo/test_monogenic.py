"""Monogenic signal: analytic identities of the Riesz transform and the log-Gabor bank, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from Echo4DFeaturesLib.monogenic import LogGaborBank, MonogenicFilterer, monogenic_signal
from SpatioTemporalCommonLib.errors import InputError

SPACING = (1.5, 1.0, 0.8)
SHAPE = (32, 40, 50)


def log_gabor_gain(frequency: float, wavelength: float, sigma_onf: float) -> float:
    """The log-Gabor transfer function at a radial frequency (cycles/mm)."""
    return math.exp(-(math.log(frequency * wavelength) ** 2) / (2 * math.log(sigma_onf) ** 2))


def positions_mm(shape: tuple[int, ...], steps: tuple[float, ...]) -> np.ndarray:
    """Coordinates (mm, and c * frame for a time axis) of every sample, shape (ndim, *shape)."""
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, steps, strict=True)), indexing="ij")
    return np.stack(grids)


def cycles_per_box(shape: tuple[int, ...], steps: tuple[float, ...], cycles: tuple[int, ...]) -> np.ndarray:
    """Frequency vector (cycles/mm) with a whole number of cycles along every axis of the box."""
    return np.array([c / (n * s) for c, n, s in zip(cycles, shape, steps, strict=True)])


def check_cosine(signal, position: np.ndarray, frequency: np.ndarray, wavelength: float, sigma_onf: float):
    """Amplitude constant = filter gain, phase linear along the wave, orientation along the wave."""
    radial = float(np.linalg.norm(frequency))
    gain = log_gabor_gain(radial, wavelength, sigma_onf)
    np.testing.assert_allclose(signal.amplitude, gain, rtol=1e-4)
    unit = frequency / radial
    odd_along = np.tensordot(unit, signal.odd, axes=1)
    phase = np.arctan2(odd_along, signal.even)
    expected = 2 * np.pi * np.tensordot(frequency, position, axes=1)
    wrapped = np.angle(np.exp(1j * (phase - expected)))
    assert np.abs(wrapped).max() < 1e-3
    np.testing.assert_allclose(signal.phase, np.abs(np.angle(np.exp(1j * expected))), atol=2e-3)
    orientation_along = np.abs(np.tensordot(unit, signal.orientation, axes=1))
    busy = np.abs(np.sin(expected)) > 0.1
    np.testing.assert_allclose(orientation_along[busy], 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "cycles",
    [(4, 0, 0), (0, 5, 0), (0, 0, 6), (3, 4, 0), (2, 3, 5)],
    ids=["along-k", "along-j", "along-i", "oblique-kj", "oblique-kji"],
)
def test_cosine_3d_has_constant_amplitude_and_linear_phase(cycles):
    frequency = cycles_per_box(SHAPE, SPACING, cycles)
    position = positions_mm(SHAPE, SPACING)
    image = np.cos(2 * np.pi * np.tensordot(frequency, position, axes=1))
    wavelength = 1.3 / float(np.linalg.norm(frequency))
    signal = monogenic_signal(image, SPACING, wavelength, 0.55)
    assert signal.even.dtype == np.float32 and signal.odd.shape == (3, *SHAPE)
    check_cosine(signal, position, frequency, wavelength, 0.55)


@pytest.mark.parametrize("cycles", [(0, 0, 0, 3), (2, 0, 3, 2)], ids=["along-t", "oblique-space-time"])
def test_cosine_4d_uses_the_space_time_constant(cycles):
    shape = (16, 20, 24, 12)
    space_time = 2.5
    steps = (*SPACING, space_time)
    frequency = cycles_per_box(shape, steps, cycles)
    position = positions_mm(shape, steps)
    image = np.cos(2 * np.pi * np.tensordot(frequency, position, axes=1)).astype(np.float32)
    wavelength = 1.2 / float(np.linalg.norm(frequency))
    signal = monogenic_signal(image, SPACING, wavelength, 0.6, space_time_mm_per_frame=space_time)
    assert signal.odd.shape == (4, *shape)
    check_cosine(signal, position, frequency, wavelength, 0.6)


def test_series_without_space_time_constant_is_filtered_frame_by_frame():
    rng = np.random.default_rng(3)
    series = rng.standard_normal((20, 22, 24, 3)).astype(np.float32)
    batched = monogenic_signal(series, SPACING, 5.0)
    for frame in range(3):
        single = monogenic_signal(series[..., frame], SPACING, 5.0)
        np.testing.assert_allclose(batched.even[..., frame], single.even, atol=1e-5)
        np.testing.assert_allclose(batched.odd[..., frame], single.odd, atol=1e-5)


def test_riesz_transform_preserves_energy_of_the_band():
    """Parseval: the Riesz components together carry the energy of the band-passed image."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal((40, 40, 40)).astype(np.float32)
    for wavelength in (8.0, 16.0):
        signal = monogenic_signal(image, (1.0, 1.0, 1.0), wavelength)
        ratio = float((signal.odd.astype(float) ** 2).sum() / (signal.even.astype(float) ** 2).sum())
        assert abs(ratio - 1) < 2e-3


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(5)
    image = rng.standard_normal((24, 20, 18, 5)).astype(np.float32)
    one = monogenic_signal(image, SPACING, 4.0, space_time_mm_per_frame=3.0, workers=1)
    two = monogenic_signal(image, SPACING, 4.0, space_time_mm_per_frame=3.0, workers=2)
    np.testing.assert_array_equal(one.amplitude, two.amplitude)


def test_bank_wavelengths_are_geometric():
    bank = LogGaborBank(n_scales=4, min_wavelength_mm=3.0, mult=2.5, sigma_onf=0.6)
    np.testing.assert_allclose(bank.wavelengths_mm, [3.0, 7.5, 18.75, 46.875])


@pytest.mark.parametrize(
    ("bank", "fragment"),
    [
        (LogGaborBank(3, 2.5, 2.0), "at least 3 mm"),
        (LogGaborBank(4, 6.0, 2.0), "exceeds the 40 mm field of view"),
    ],
    ids=["below-2-voxels", "above-field-of-view"],
)
def test_wavelengths_outside_the_grid_are_refused(bank, fragment):
    with pytest.raises(InputError, match=fragment):
        bank.check_grid((40, 64, 64), (1.0, 1.5, 1.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_scales": 0},
        {"min_wavelength_mm": -1.0},
        {"mult": 1.0},
        {"sigma_onf": 1.2},
    ],
)
def test_bank_parameters_are_validated(kwargs):
    with pytest.raises(InputError):
        LogGaborBank(**kwargs)


def test_bad_images_are_refused():
    with pytest.raises(InputError, match="dimensions"):
        MonogenicFilterer(np.zeros((8, 8)), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="NaN"):
        MonogenicFilterer(np.full((8, 8, 8), np.nan), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        MonogenicFilterer(np.zeros((8, 8, 8)), (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="series"):
        MonogenicFilterer(np.zeros((8, 8, 8)), (1.0, 1.0, 1.0), space_time_mm_per_frame=2.0)
