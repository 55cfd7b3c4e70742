"""Voxel-wise features of BOLD fMRI dynamics: ALFF/fALFF/mALFF, ReHo, intrinsic timescales, sample entropy.

All functions take series with time on the last axis, ``(..., T)`` (ReHo, which needs neighbourhoods,
takes a 4D image ``(k, j, i, T)`` and a mask ``(k, j, i)``). Series that are constant or contain
non-finite values carry no fluctuation to describe: their features are NaN.

References
----------
- Zang Y.-F. et al. (2007). Altered baseline brain activity in children with ADHD revealed by
  resting-state functional MRI. Brain Dev 29:83-91. (ALFF: mean amplitude in 0.01-0.08 Hz.)
- Zou Q.-H. et al. (2008). An improved approach to detection of amplitude of low-frequency
  fluctuation (ALFF) for resting-state fMRI: fractional ALFF. J Neurosci Methods 172:137-141.
- Zang Y., Jiang T., Lu Y., He Y., Tian L. (2004). Regional homogeneity approach to fMRI data
  analysis. NeuroImage 22:394-400. (ReHo: Kendall's coefficient of concordance.)
- Kendall M.G., Babington Smith B. (1939). The problem of m rankings. Ann Math Stat 10:275-287.
- Watanabe T., Rees G., Masuda N. (2019). Atypical intrinsic neural timescale in autism. eLife
  8:e42256. (Timescale: sum of the initial positive autocorrelation times TR.)
- Raut R.V., Snyder A.Z., Raichle M.E. (2020). Hierarchical dynamics as a macroscopic organizing
  principle of the human brain. PNAS 117:20890-20897. (Autocorrelation half-width.)
- Richman J.S., Moorman J.R. (2000). Physiological time-series analysis using approximate entropy and
  sample entropy. Am J Physiol Heart Circ Physiol 278:H2039-H2049.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage, stats
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import (
    as_series,
    check_tr,
    detrend_polynomial,
    map_varying_series,
    varying_series_mask,
)

DEFAULT_LOW_FREQUENCY_BAND = (0.01, 0.08)
"""ALFF band in Hz (Zang et al. 2007)."""

_NEIGHBOURHOOD_SIZES = (7, 19, 27)
_RANK_CHUNK = 8192
_REHO_SLAB_ELEMENTS = 8_000_000


# --------------------------------------------------------------------------------------------------
# Amplitude of low-frequency fluctuations
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LowFrequencyAmplitude:
    """ALFF and fALFF maps.

    Attributes
    ----------
    alff : ndarray, shape (...)
        Mean single-sided amplitude over the frequency bins in the band (signal units).
    falff : ndarray, shape (...)
        Sum of the amplitudes in the band over the sum of the amplitudes of all bins from the first
        non-zero frequency up to and including Nyquist (dimensionless, 0..1).
    n_band_bins : int
        Number of frequency bins inside the band.
    """

    alff: np.ndarray
    falff: np.ndarray
    n_band_bins: int


def amplitude_spectrum(series: np.ndarray, tr_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Single-sided amplitude spectrum of each series (no windowing, no zero padding).

    The amplitude of bin ``k`` is ``2 |X_k| / T`` except at 0 Hz and (for even T) Nyquist, where it is
    ``|X_k| / T``; a sinusoid ``A sin(2 pi f t)`` with ``f`` on a bin has amplitude ``A`` there.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    tr_s : float
        Repetition time in seconds.

    Returns
    -------
    frequencies : ndarray, shape (T // 2 + 1,)
        Bin frequencies in Hz.
    amplitude : ndarray, shape (..., T // 2 + 1)
        Amplitudes in signal units.
    """
    values = as_series(series)
    n_frames = values.shape[-1]
    frequencies = fft.rfftfreq(n_frames, d=check_tr(tr_s))
    amplitude = np.abs(fft.rfft(values, axis=-1)) * (2.0 / n_frames)
    amplitude[..., 0] /= 2.0
    if n_frames % 2 == 0:
        amplitude[..., -1] /= 2.0
    return frequencies, amplitude


def low_frequency_amplitude(
    series: np.ndarray,
    tr_s: float,
    band: tuple[float, float] = DEFAULT_LOW_FREQUENCY_BAND,
    detrend_order: int | None = 1,
) -> LowFrequencyAmplitude:
    """ALFF (Zang 2007) and fALFF (Zou 2008) from the amplitude (not power) spectrum.

    Each series is detrended (polynomial of degree ``detrend_order``), its single-sided amplitude
    spectrum computed (:func:`amplitude_spectrum`), and

    - ALFF = mean amplitude over bins with ``low <= f <= high``;
    - fALFF = (sum of amplitudes in the band) / (sum of amplitudes of all bins ``0 < f <= Nyquist``).
      The 0 Hz bin is excluded from the denominator so the mean level cannot dilute fALFF.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis (ideally without band-pass filtering, which would empty
        the denominator of fALFF).
    tr_s : float
        Repetition time in seconds.
    band : tuple of float
        ``(low_hz, high_hz)``, default 0.01-0.08 Hz.
    detrend_order : int or None
        Degree of the polynomial trend removed first; None keeps the series as is.

    Returns
    -------
    LowFrequencyAmplitude
        ALFF and fALFF maps; NaN for constant or non-finite series.
    """
    values = as_series(series, min_frames=4)
    tr = check_tr(tr_s)
    frequencies = fft.rfftfreq(values.shape[-1], d=tr)
    low, high = band
    in_band = (frequencies >= low) & (frequencies <= high)
    if not 0 <= low < high or not in_band.any():
        raise InputError(
            f"band ({low}, {high}) Hz contains no frequency bin for {values.shape[-1]} frames at TR {tr:g} s "
            f"(resolution {frequencies[1]:.4g} Hz): widen the band or give a longer series"
        )

    def features(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detrended = rows if detrend_order is None else detrend_polynomial(rows, detrend_order)
        _, amplitude = amplitude_spectrum(detrended, tr)
        band_sum = amplitude[:, in_band].sum(axis=-1)
        total = amplitude[:, 1:].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(total > 0, band_sum / total, np.nan)
        return band_sum / in_band.sum(), fraction

    alff, falff = map_varying_series(features, values)
    return LowFrequencyAmplitude(alff=alff, falff=falff, n_band_bins=int(in_band.sum()))


def mean_normalised_alff(alff: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """mALFF: ALFF divided by the mean ALFF over the mask (NaN voxels ignored in the mean).

    Parameters
    ----------
    alff : array_like, shape (...)
        ALFF map.
    mask : array_like of bool, shape (...)
        Brain mask over which the mean is taken.

    Returns
    -------
    ndarray, shape (...)
        mALFF (dimensionless); NaN outside the mask and where ALFF is NaN.
    """
    values = np.asarray(alff, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise InputError(f"mask shape {mask.shape} does not match the ALFF map shape {values.shape}")
    inside = values[mask & np.isfinite(values)]
    if inside.size == 0 or inside.mean() <= 0:
        raise InputError("the mask holds no voxel with a positive ALFF: check the mask and the ALFF map")
    return np.where(mask, values / inside.mean(), np.nan)


# --------------------------------------------------------------------------------------------------
# Regional homogeneity
# --------------------------------------------------------------------------------------------------
def neighbourhood_offsets(size: int) -> np.ndarray:
    """Voxel offsets of a 7-, 19- or 27-voxel neighbourhood (the centre included).

    7: the centre and its 6 face neighbours; 19: plus the 12 edge neighbours; 27: plus the 8 corners.

    Parameters
    ----------
    size : {7, 19, 27}
        Neighbourhood size.

    Returns
    -------
    ndarray of int, shape (size, 3)
        Offsets ``(dk, dj, di)``.
    """
    if size not in _NEIGHBOURHOOD_SIZES:
        raise InputError(f"ReHo neighbourhood of {size} voxels is not defined: choose 7, 19 or 27")
    grid = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    max_manhattan = {7: 1, 19: 2, 27: 3}[size]
    return grid[np.abs(grid).sum(axis=1) <= max_manhattan]


def regional_homogeneity(data: np.ndarray, mask: np.ndarray, neighbourhood: int = 27) -> np.ndarray:
    """ReHo: Kendall's coefficient of concordance W of each voxel's neighbourhood (Zang 2004).

    Each series is ranked over time (ties get their average rank). For a voxel whose neighbourhood
    holds ``K`` usable voxels (inside the mask, not constant, finite; the centre included) with rank
    sums ``R_t`` over those voxels,

    ``W = 12 * sum_t (R_t - K (T + 1) / 2)^2 / (K^2 (T^3 - T))``,

    without the correction for ties (as REST, DPABI and AFNI's 3dReHo). Neighbours outside the grid
    count as outside the mask. The computation is a sum of shifted rank arrays, vectorised over voxels.

    Parameters
    ----------
    data : array_like, shape (k, j, i, T)
        4D BOLD image, time on the last axis.
    mask : array_like of bool, shape (k, j, i)
        Brain mask.
    neighbourhood : {7, 19, 27}
        Neighbourhood size (see :func:`neighbourhood_offsets`).

    Returns
    -------
    ndarray, shape (k, j, i)
        W in [0, 1]; NaN outside the mask, at unusable voxels and where fewer than two usable voxels
        form the neighbourhood.
    """
    values = np.asarray(data)
    offsets = neighbourhood_offsets(neighbourhood)
    mask = np.asarray(mask, dtype=bool)
    if values.ndim != 4 or mask.shape != values.shape[:-1] or values.shape[-1] < 3:
        raise InputError(
            f"ReHo needs a 4D image (k, j, i, T) with T >= 3 and a mask (k, j, i); got {values.shape} "
            f"and {mask.shape}"
        )
    usable = mask & varying_series_mask(values)
    twice_ranks = _padded_twice_ranks(values, usable)
    footprint = np.zeros((3, 3, 3), dtype=int)
    footprint[tuple((offsets + 1).T)] = 1
    counts = ndimage.correlate(usable.astype(int), footprint, mode="constant", cval=0)
    reho = np.full(usable.shape, np.nan)
    n_frames = values.shape[-1]
    slab = max(1, _REHO_SLAB_ELEMENTS // (np.prod(values.shape[1:])))
    for k0 in range(0, values.shape[0], slab):
        k1 = min(k0 + slab, values.shape[0])
        rank_sums = _neighbourhood_rank_sums(twice_ranks, offsets, k0, k1)
        target = usable[k0:k1] & (counts[k0:k1] >= 2)
        twice_sums = rank_sums[target].astype(np.float64)
        n_raters = counts[k0:k1][target].astype(np.float64)
        deviation = (twice_sums - (n_raters * (n_frames + 1))[:, None]) / 2.0
        reho[k0:k1][target] = (12.0 * np.sum(deviation**2, axis=-1)
                               / (n_raters**2 * (n_frames**3 - n_frames)))
    return reho


def _padded_twice_ranks(values: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Twice the temporal ranks (integers; ties averaged) of usable voxels, zero elsewhere, padded by one."""
    n_frames = values.shape[-1]
    dtype = np.uint16 if 2 * n_frames < np.iinfo(np.uint16).max else np.int32
    padded = np.zeros((*(s + 2 for s in usable.shape), n_frames), dtype=dtype)
    rows = values[usable]
    ranks = np.empty(rows.shape, dtype=dtype)
    for start in range(0, rows.shape[0], _RANK_CHUNK):
        block = rows[start: start + _RANK_CHUNK]
        ranks[start: start + _RANK_CHUNK] = np.rint(2.0 * stats.rankdata(block, axis=-1)).astype(dtype)
    padded[1:-1, 1:-1, 1:-1][usable] = ranks
    return padded


def _neighbourhood_rank_sums(twice_ranks: np.ndarray, offsets: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Sum of twice-ranks over the neighbourhood, for grid slices ``k0:k1`` (shape (k1-k0, j, i, T))."""
    n_j, n_i = twice_ranks.shape[1] - 2, twice_ranks.shape[2] - 2
    sums = np.zeros((k1 - k0, n_j, n_i, twice_ranks.shape[-1]), dtype=np.int32)
    for dk, dj, di in offsets:
        sums += twice_ranks[k0 + 1 + dk: k1 + 1 + dk, 1 + dj: 1 + dj + n_j, 1 + di: 1 + di + n_i]
    return sums


# --------------------------------------------------------------------------------------------------
# Intrinsic neural timescales
# --------------------------------------------------------------------------------------------------
def autocorrelation(series: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Sample autocorrelation function of each series.

    ``r(k) = sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2`` (the biased estimator, normalised by
    the lag-0 value; computed with a zero-padded FFT).

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    max_lag : int, optional
        Largest lag in frames (default T - 1).

    Returns
    -------
    ndarray, shape (..., max_lag + 1)
        ``r(0) = 1, r(1), ..., r(max_lag)``; NaN rows for constant or non-finite series.
    """
    values = as_series(series)
    n_frames = values.shape[-1]
    max_lag = n_frames - 1 if max_lag is None else int(max_lag)
    if not 0 <= max_lag < n_frames:
        raise InputError(f"max_lag {max_lag} must be between 0 and T - 1 = {n_frames - 1} frames")
    n_fft = fft.next_fast_len(2 * n_frames - 1, real=True)

    def acf(rows: np.ndarray) -> np.ndarray:
        centred = rows - rows.mean(axis=-1, keepdims=True)
        spectrum = fft.rfft(centred, n=n_fft, axis=-1)
        covariance = fft.irfft(spectrum * np.conj(spectrum), n=n_fft, axis=-1)[:, : max_lag + 1]
        return covariance / covariance[:, :1]

    return map_varying_series(acf, values)[0]


def timescale_positive_acf_sum(series: np.ndarray, tr_s: float) -> np.ndarray:
    """Intrinsic neural timescale as the initial positive area of the autocorrelation (Watanabe 2019).

    ``INT = TR * sum_{k=1}^{L-1} r(k)``, where ``L`` is the first lag (>= 1) with ``r(L) < 0``. Lag 0
    (always 1) is excluded, so white noise gives ~0 s and an AR(1) process with coefficient ``phi``
    gives ~``TR * phi / (1 - phi)``. When ``r(1) < 0`` the sum is empty and INT is 0 s.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis.
    tr_s : float
        Repetition time in seconds.

    Returns
    -------
    ndarray, shape (...)
        Timescale in seconds; NaN for constant or non-finite series.
    """
    tr = check_tr(tr_s)
    lagged = autocorrelation(series)[..., 1:]
    before_first_negative = np.cumsum(lagged < 0, axis=-1) == 0
    timescale = tr * np.sum(np.where(before_first_negative, lagged, 0.0), axis=-1)
    return np.where(np.isnan(lagged[..., 0]), np.nan, timescale)


def timescale_acf_half_width(series: np.ndarray, tr_s: float) -> np.ndarray:
    """Intrinsic timescale as the half width at half maximum of the autocorrelation (Raut 2020).

    The lag at which the autocorrelation first falls to 0.5 (its maximum, r(0) = 1, halved), linearly
    interpolated between the two lags that bracket the crossing, times TR.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis.
    tr_s : float
        Repetition time in seconds.

    Returns
    -------
    ndarray, shape (...)
        Half width in seconds; NaN for constant or non-finite series and where the autocorrelation
        never falls to 0.5.
    """
    tr = check_tr(tr_s)
    acf = autocorrelation(series)
    below = acf <= 0.5
    crossing = np.argmax(below, axis=-1)
    found = below.any(axis=-1) & (crossing > 0)
    upper = np.take_along_axis(acf, np.maximum(crossing - 1, 0)[..., None], axis=-1)[..., 0]
    lower = np.take_along_axis(acf, crossing[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = crossing - 1 + (upper - 0.5) / (upper - lower)
    return np.where(found, tr * lag, np.nan)


# --------------------------------------------------------------------------------------------------
# Sample entropy
# --------------------------------------------------------------------------------------------------
def sample_entropy(
    series: np.ndarray,
    m: int = 2,
    r_fraction: float = 0.2,
    chunk_size: int = 2048,
) -> np.ndarray:
    """Sample entropy of each series (Richman & Moorman 2000).

    With the ``N - m`` templates ``x[i:i+m]``, ``i = 0 .. N-m-1``, ``B`` counts pairs ``i < j`` whose
    Chebyshev distance is ``<= r`` and ``A`` the pairs that still match when extended to length
    ``m + 1``; ``SampEn = -ln(A / B)``. The tolerance is ``r = r_fraction * SD`` with the standard
    deviation of the series (``ddof=0``). The pair count runs as a loop over the lag ``j - i``,
    vectorised over voxels and time, in chunks of ``chunk_size`` voxels.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    m : int
        Template length.
    r_fraction : float
        Tolerance as a fraction of each series' standard deviation.
    chunk_size : int
        Voxels processed at once (memory ~ ``chunk_size * T`` bytes per boolean array).

    Returns
    -------
    ndarray, shape (...)
        Sample entropy (dimensionless); NaN for constant or non-finite series and where A or B is 0
        (undefined).
    """
    values = as_series(series)
    n_frames = values.shape[-1]
    if m < 1 or n_frames < m + 2:
        raise InputError(
            f"sample entropy with template length m={m} needs m >= 1 and at least m + 2 frames; the "
            f"series has {n_frames}"
        )
    if not r_fraction > 0:
        raise InputError(f"tolerance fraction {r_fraction} must be positive (typically 0.2)")

    def entropy(rows: np.ndarray) -> np.ndarray:
        matches_m, matches_longer = _template_match_counts(rows, m, r_fraction * rows.std(axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = matches_longer / matches_m
            return np.where((matches_m > 0) & (matches_longer > 0), -np.log(ratio), np.nan)

    return map_varying_series(entropy, values, chunk=chunk_size)[0]


def _template_match_counts(rows: np.ndarray, m: int, tolerance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of matching template pairs of length m (B) and m + 1 (A) for each row."""
    n_frames = rows.shape[-1]
    n_templates = n_frames - m
    matches_m = np.zeros(rows.shape[0], dtype=np.int64)
    matches_longer = np.zeros(rows.shape[0], dtype=np.int64)
    for lag in range(1, n_templates):
        close = np.abs(rows[:, lag:] - rows[:, :-lag]) <= tolerance[:, None]
        n_pairs = n_templates - lag
        match = close[:, :n_pairs].copy()
        for offset in range(1, m):
            match &= close[:, offset: offset + n_pairs]
        matches_m += match.sum(axis=-1)
        matches_longer += (match & close[:, m: m + n_pairs]).sum(axis=-1)
    return matches_m, matches_longer
