"""Feature asymmetry and phase symmetry from the monogenic signal, in 3D and in 3D+t.

Feature asymmetry (FA) is a contrast-invariant step-edge detector (Kovesi 1999, "Image features from
phase congruency", Videre 1(3); Mulet-Parada & Noble 2000, Med. Image Anal. 4:21-30; Rajpoot et al.
2009, "Local-phase based 3D boundary detection using monogenic signal and its application to real-time
3-D echocardiography images", ISBI):

    FA = sum_s floor(|odd_s| - |even_s| - T_s) / (sum_s A_s + eps),
    PS = sum_s floor(|even_s| - |odd_s| - T_s) / (sum_s A_s + eps)          (phase symmetry),

with floor(x) = max(x, 0), ``even_s`` / ``odd_s`` the monogenic signal at scale ``s`` and ``A_s`` its
amplitude. ``T_s`` is Kovesi's noise threshold: the filter responses at the smallest scale are taken to
be noise with a Rayleigh-distributed amplitude whose parameter is estimated robustly from their median,
tau = median(A_0) / sqrt(ln 4); the threshold is the noise mean plus ``k`` standard deviations,
tau (sqrt(pi / 2) + k sqrt((4 - pi) / 2)). For white noise the amplitude response of an isotropic
band-pass filter is proportional to the square root of its passband volume, i.e. to f0^(n/2) in n
dimensions, so the threshold of scale ``s`` is that of the smallest scale times mult^(-s n / 2) (Kovesi's
2D code uses 1/mult, the case n = 2).

The oriented FA keeps only dark-to-bright edges seen from a seed inside a dark cavity: for a step that
increases along a direction ``d`` the Riesz (odd) vector points along ``-d`` (with the transform
-i u / |u|, the odd part of cos is sin, so the odd part of a rising step is negative at the step), so an
endocardial edge seen from a seed in the blood pool has ``odd . (x - seed) < 0``. The sign convention
is pinned by a test on a dark sphere inside a bright shell.

Arrays: volumes ``(k, j, i)``, series ``(k, j, i, T)`` (time last), spacing ``(sk, sj, si)`` in mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from .monogenic import DEFAULT_BANK, LogGaborBank, MonogenicFilterer

RAYLEIGH_MEDIAN = math.sqrt(math.log(4.0))
RAYLEIGH_MEAN = math.sqrt(math.pi / 2.0)
RAYLEIGH_STD = math.sqrt((4.0 - math.pi) / 2.0)
NOISE_SAMPLES = 1 << 20
"""Number of smallest-scale amplitudes (a regular subsample) used for the median noise estimate."""
RELATIVE_EPSILON = 1e-4
"""eps in the FA denominator, relative to the mean summed amplitude (keeps FA contrast invariant)."""
MODES = ("4d", "3d")
DEFAULT_SPACE_TIME_MM_PER_FRAME = 6.0
"""Default space-time constant c (mm per frame). The 4D filters see a wall that moves d mm per frame as
a space-time surface tilted by d / c, and its curvature in time (at end-diastole and end-systole) as a
curvature that moves FA peaks like a spatial one; c a few times the largest wall displacement per frame
(here up to about 2 mm) keeps that effect well below a voxel while still pooling neighbouring frames."""


@dataclass(frozen=True)
class FeatureMaps:
    """Local-phase feature maps of one volume or series.

    Attributes
    ----------
    feature_asymmetry : numpy.ndarray
        FA in [0, 1], same shape as the input (oriented when a seed was given).
    phase_symmetry : numpy.ndarray or None
        Phase symmetry in [0, 1] when requested.
    local_phase : numpy.ndarray or None
        Monogenic local phase atan2(|odd|, even) in radians, in [0, pi], at the requested scale.
    noise_thresholds : numpy.ndarray
        Threshold ``T_s`` of every scale, image units.
    """

    feature_asymmetry: np.ndarray
    phase_symmetry: np.ndarray | None
    local_phase: np.ndarray | None
    noise_thresholds: np.ndarray


def noise_thresholds(
    smallest_scale_amplitude: np.ndarray, n_dims: int, n_scales: int, mult: float, k: float
) -> np.ndarray:
    """Kovesi's per-scale noise thresholds from smallest-scale amplitudes, with the n-D scale correction.

    Parameters
    ----------
    smallest_scale_amplitude : numpy.ndarray
        Local amplitudes at the smallest scale (all voxels or a representative subsample).
    n_dims : int
        Dimension of the filters (3 for volumes, 4 for space-time).
    n_scales : int
        Number of scales.
    mult : float
        Wavelength ratio between successive scales.
    k : float
        Number of noise standard deviations above the noise mean.

    Returns
    -------
    numpy.ndarray
        ``T_s`` for ``s = 0 .. n_scales - 1``, image units.
    """
    tau = float(np.median(smallest_scale_amplitude)) / RAYLEIGH_MEDIAN
    smallest = tau * (RAYLEIGH_MEAN + k * RAYLEIGH_STD)
    return smallest * float(mult) ** (-0.5 * n_dims * np.arange(n_scales))


def check_k(k: float) -> float:
    """Validate the number of noise standard deviations ``k`` (>= 0)."""
    if not (math.isfinite(k) and k >= 0):
        raise InputError(f"noise factor k = {k} is not a non-negative number: give e.g. 2")
    return float(k)


def check_series(series: np.ndarray) -> None:
    """Refuse anything but a series ``(k, j, i, T)`` with at least 3 frames."""
    if series.ndim != 4:
        raise InputError(
            f"expected a 3D+t series (k, j, i, T) but got a {series.ndim}D array of shape {series.shape}: "
            "give the whole sequence, time on the last axis"
        )
    if series.shape[3] < 3:
        raise InputError(
            f"the series has {series.shape[3]} frame(s): give at least 3 frames (time on the last axis)"
        )


def check_seed(seed_kji: tuple[float, float, float], spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Validate a seed ``(k, j, i)`` in voxel coordinates and return it as a float array."""
    seed = np.asarray(seed_kji, dtype=float).ravel()
    if seed.size != 3 or not np.isfinite(seed).all():
        raise InputError(f"seed {seed_kji} is not three voxel coordinates: give (k, j, i)")
    upper = np.asarray(spatial_shape, dtype=float) - 1
    if np.any(seed < 0) or np.any(seed > upper):
        raise InputError(
            f"seed (k, j, i) = ({', '.join(f'{v:.2f}' for v in seed)}) lies outside the volume of shape "
            f"{tuple(spatial_shape)}: place it inside the image, in the cavity"
        )
    return seed


class _Accumulator:
    """Sums of the FA / PS numerators and of the amplitudes over scales, block by block."""

    def __init__(self, shape: tuple[int, ...], phase_symmetry: bool, local_phase: bool) -> None:
        self.asymmetry = np.empty(shape, dtype=np.float32)
        self.amplitude = np.empty(shape, dtype=np.float32)
        self.odd_sq = np.empty(shape, dtype=np.float32)
        self.symmetry = np.empty(shape, dtype=np.float32) if phase_symmetry else None
        self.phase = np.empty(shape, dtype=np.float32) if local_phase else None
        self.samples: list[np.ndarray] = []


def _radial_offsets(seed: np.ndarray, spacing: tuple[float, ...], shape: tuple[int, ...]) -> list[np.ndarray]:
    """(x - seed) along k, j, i in mm, shaped to broadcast over a volume or a series."""
    offsets = []
    for axis in range(3):
        view = [1] * len(shape)
        view[axis] = shape[axis]
        values = (np.arange(shape[axis], dtype=np.float32) - np.float32(seed[axis])) * np.float32(
            spacing[axis]
        )
        offsets.append(values.reshape(view))
    return offsets


def _odd_pass(
    filterer: MonogenicFilterer,
    wavelength: float,
    sigma_onf: float,
    acc: _Accumulator,
    radial: np.ndarray | None,
    offsets: list[np.ndarray] | None,
) -> None:
    """Accumulate |odd|^2 (and the projection of odd on x - seed) over the Riesz components."""
    for axis in range(filterer.n_dims):

        def consume(slab: slice, block: np.ndarray, axis: int = axis) -> None:
            if radial is not None and axis < 3:
                offset = offsets[axis][slab] if axis == 0 else offsets[axis]
                if axis == 0:
                    np.multiply(block, offset, out=radial[slab])
                else:
                    radial[slab] += block * offset
            if axis == 0:
                np.square(block, out=acc.odd_sq[slab])
            else:
                acc.odd_sq[slab] += np.square(block, out=block)

        filterer.odd(axis, wavelength, sigma_onf, consume)


def _even_pass(
    filterer: MonogenicFilterer,
    wavelength: float,
    sigma_onf: float,
    acc: _Accumulator,
    radial: np.ndarray | None,
    threshold: float | None,
    with_phase: bool,
) -> None:
    """Combine the even part with |odd| into the running sums; ``threshold=None`` is the smallest scale.

    At the smallest scale the threshold is not known yet: the raw differences |odd| - |even| are stored
    (and amplitudes sampled for the noise estimate); :func:`_apply_first_threshold` finishes them.
    """
    first = threshold is None
    sample_step = max(1, acc.amplitude.size // NOISE_SAMPLES)

    def consume(slab: slice, even: np.ndarray) -> None:
        odd_sq = acc.odd_sq[slab]
        if with_phase:
            np.arctan2(np.sqrt(odd_sq), even, out=acc.phase[slab])
        amplitude = np.square(even)
        amplitude += odd_sq
        np.sqrt(amplitude, out=amplitude)
        difference = np.sqrt(odd_sq)
        difference -= np.abs(even, out=even)
        if first:
            acc.amplitude[slab] = amplitude
            acc.samples.append(amplitude.ravel()[::sample_step].copy())
            if acc.symmetry is not None:
                np.negative(difference, out=acc.symmetry[slab])
            if radial is not None:
                difference[radial[slab] >= 0] = -np.inf
            acc.asymmetry[slab] = difference
            return
        acc.amplitude[slab] += amplitude
        if acc.symmetry is not None:
            symmetric = np.negative(difference, out=amplitude)
            symmetric -= np.float32(threshold)
            acc.symmetry[slab] += np.maximum(symmetric, 0, out=symmetric)
        difference -= np.float32(threshold)
        np.maximum(difference, 0, out=difference)
        if radial is not None:
            difference[radial[slab] >= 0] = 0
        acc.asymmetry[slab] += difference

    filterer.even(wavelength, sigma_onf, consume)


def _apply_first_threshold(acc: _Accumulator, threshold: float) -> None:
    """Floor the stored smallest-scale differences once the threshold is known."""
    for numerator in (acc.asymmetry, acc.symmetry):
        if numerator is not None:
            np.subtract(numerator, np.float32(threshold), out=numerator)
            np.maximum(numerator, 0, out=numerator)


def _normalise(numerator: np.ndarray, amplitude_sum: np.ndarray, epsilon: float) -> np.ndarray:
    """numerator / (amplitude_sum + epsilon), in place in ``numerator``."""
    denominator_offset = np.float32(epsilon)
    for slab in range(numerator.shape[0]):
        numerator[slab] /= amplitude_sum[slab] + denominator_offset
    return numerator


def _feature_maps(
    filterer: MonogenicFilterer,
    bank: LogGaborBank,
    k: float,
    seed: np.ndarray | None,
    phase_symmetry: bool,
    local_phase_scale: int | None,
) -> FeatureMaps:
    """Run the scales of ``bank`` through ``filterer`` and return FA (and PS, local phase) maps."""
    shape = filterer.shape
    acc = _Accumulator(shape, phase_symmetry, local_phase_scale is not None)
    radial = np.empty(shape, dtype=np.float32) if seed is not None else None
    offsets = _radial_offsets(seed, filterer.spacing_mm, shape) if seed is not None else None
    thresholds = None
    for scale, wavelength in enumerate(bank.wavelengths_mm):
        _odd_pass(filterer, wavelength, bank.sigma_onf, acc, radial, offsets)
        threshold = None if thresholds is None else float(thresholds[scale])
        _even_pass(filterer, wavelength, bank.sigma_onf, acc, radial, threshold, scale == local_phase_scale)
        if thresholds is None:
            thresholds = noise_thresholds(
                np.concatenate(acc.samples), filterer.n_dims, bank.n_scales, bank.mult, k
            )
            _apply_first_threshold(acc, float(thresholds[0]))
    del radial
    acc.odd_sq = None
    epsilon = RELATIVE_EPSILON * float(acc.amplitude.mean(dtype=np.float64)) + np.finfo(np.float32).tiny
    asymmetry = _normalise(acc.asymmetry, acc.amplitude, epsilon)
    symmetry = _normalise(acc.symmetry, acc.amplitude, epsilon) if acc.symmetry is not None else None
    return FeatureMaps(asymmetry, symmetry, acc.phase, np.asarray(thresholds, dtype=float))


def _check_phase_scale(local_phase_scale: int | None, bank: LogGaborBank) -> None:
    if local_phase_scale is not None and not 0 <= local_phase_scale < bank.n_scales:
        raise InputError(
            f"local phase scale {local_phase_scale} does not exist: give 0..{bank.n_scales - 1} (0 = finest)"
        )


def feature_asymmetry(
    volume: np.ndarray,
    spacing_mm: tuple[float, float, float],
    bank: LogGaborBank = DEFAULT_BANK,
    *,
    k: float = 2.0,
    seed_kji: tuple[float, float, float] | None = None,
    phase_symmetry: bool = False,
    local_phase_scale: int | None = None,
    workers: int | None = None,
) -> FeatureMaps:
    """Feature asymmetry (and optionally phase symmetry and local phase) of one volume.

    Parameters
    ----------
    volume : numpy.ndarray
        Volume ``(k, j, i)``.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm; filters are isotropic in mm.
    bank : LogGaborBank
        Scales (wavelengths in mm) and bandwidth of the filters.
    k : float
        Noise threshold in noise standard deviations above the noise mean (Kovesi's ``k``).
    seed_kji : tuple of float or None
        Seed (voxel coordinates) inside a dark cavity: when given, only dark-to-bright edges seen
        from the seed are kept (oriented FA).
    phase_symmetry : bool
        Also return phase symmetry.
    local_phase_scale : int or None
        Also return the local phase (rad) at this scale index (0 = finest).
    workers : int or None
        FFT threads (default: all available CPUs).

    Returns
    -------
    FeatureMaps
        FA in [0, 1] (float32, shape of ``volume``), optional PS and phase, and the noise thresholds.
    """
    if volume.ndim != 3:
        raise InputError(
            f"expected a volume (k, j, i) but got a {volume.ndim}D array: use feature_asymmetry_series for "
            "a series (k, j, i, T)"
        )
    k = check_k(k)
    _check_phase_scale(local_phase_scale, bank)
    filterer = MonogenicFilterer(volume, spacing_mm, workers=workers)
    bank.check_grid(volume.shape, filterer.spacing_mm)
    seed = None if seed_kji is None else check_seed(seed_kji, volume.shape)
    return _feature_maps(filterer, bank, k, seed, phase_symmetry, local_phase_scale)


def feature_asymmetry_series(
    series: np.ndarray,
    spacing_mm: tuple[float, float, float],
    bank: LogGaborBank = DEFAULT_BANK,
    *,
    mode: str = "4d",
    space_time_mm_per_frame: float = DEFAULT_SPACE_TIME_MM_PER_FRAME,
    k: float = 2.0,
    seed_kji: tuple[float, float, float] | None = None,
    phase_symmetry: bool = False,
    local_phase_scale: int | None = None,
    workers: int | None = None,
) -> FeatureMaps:
    """Feature asymmetry of a 3D+t series, in 4D (space-time filters) or 3D frame by frame.

    Parameters
    ----------
    series : numpy.ndarray
        Series ``(k, j, i, T)``, time on the last axis, at least 3 frames.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    bank : LogGaborBank
        Scales (wavelengths in mm) and bandwidth of the filters.
    mode : {"4d", "3d"}
        "4d": 4D monogenic signal with time scaled by ``space_time_mm_per_frame``; "3d": each frame
        on its own (the noise threshold is then estimated over all frames together).
    space_time_mm_per_frame : float
        Space-time constant ``c``: one frame counts as ``c`` mm along the time axis (4D mode only).
    k : float
        Noise threshold in noise standard deviations above the noise mean.
    seed_kji : tuple of float or None
        Seed (voxel coordinates) inside a dark cavity for the oriented FA (dark-to-bright edges only).
    phase_symmetry : bool
        Also return phase symmetry.
    local_phase_scale : int or None
        Also return the local phase (rad) at this scale index (0 = finest).
    workers : int or None
        FFT threads (default: all available CPUs).

    Returns
    -------
    FeatureMaps
        Maps of shape ``(k, j, i, T)``, float32.

    Notes
    -----
    Peak memory is about 5.5 times the input (float32) for FA alone: the complex half-spectrum and
    one complex work buffer (about the input's size each), the log-radius of the frequency grid (half
    of it) and three float32 accumulators; a seed, phase symmetry and local phase add one input-sized
    array each.
    """
    check_series(series)
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not one of {MODES}: give '4d' or '3d'")
    k = check_k(k)
    _check_phase_scale(local_phase_scale, bank)
    space_time = float(space_time_mm_per_frame) if mode == "4d" else None
    filterer = MonogenicFilterer(series, spacing_mm, space_time_mm_per_frame=space_time, workers=workers)
    bank.check_grid(series.shape[:3], filterer.spacing_mm)
    seed = None if seed_kji is None else check_seed(seed_kji, series.shape[:3])
    return _feature_maps(filterer, bank, k, seed, phase_symmetry, local_phase_scale)
