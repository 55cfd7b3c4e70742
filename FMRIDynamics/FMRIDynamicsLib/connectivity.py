"""Functional connectivity of BOLD fMRI: region signals, seed maps, correlation, coherence, dynamics.

Region series are ``(n_regions, T)`` arrays, time on the last axis.

References
----------
- Biswal B. et al. (1995). Functional connectivity in the motor cortex of resting human brain using
  echo-planar MRI. Magn Reson Med 34:537-541. (Seed correlation.)
- Marrelec G. et al. (2006). Partial correlation for functional brain interactivity investigation in
  functional MRI. NeuroImage 32:228-237. (Partial correlation from the precision matrix.)
- Ledoit O., Wolf M. (2004). A well-conditioned estimator for large-dimensional covariance matrices.
  J Multivar Anal 88:365-411. (Shrinkage intensity.)
- Fisher R.A. (1915). Frequency distribution of the values of the correlation coefficient in samples
  from an indefinitely large population. Biometrika 10:507-521. (z = artanh r.)
- Welch P.D. (1967). The use of fast Fourier transform for the estimation of power spectra. IEEE Trans
  Audio Electroacoust 15:70-73.
- Sun F.T., Miller L.M., D'Esposito M. (2004). Measuring interregional functional connectivity using
  coherence and partial coherence analyses of fMRI data. NeuroImage 21:647-658.
- Allen E.A. et al. (2014). Tracking whole-brain connectivity dynamics in the resting state. Cereb
  Cortex 24:663-676. (Sliding windows tapered by a Gaussian-convolved rectangle.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import as_series, check_tr, map_varying_series, varying_series_mask


# --------------------------------------------------------------------------------------------------
# Region signals and seed maps
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionSeries:
    """Mean time series of labelled regions.

    Attributes
    ----------
    series : ndarray, shape (n_regions, T)
        Mean signal of each region.
    region_ids : ndarray of int, shape (n_regions,)
        Label value of each row.
    n_voxels : ndarray of int, shape (n_regions,)
        Number of voxels averaged in each region.
    """

    series: np.ndarray
    region_ids: np.ndarray
    n_voxels: np.ndarray


def region_mean_series(
    data: np.ndarray,
    labels: np.ndarray,
    region_ids: Sequence[int] | None = None,
) -> RegionSeries:
    """Mean time series of each labelled region.

    Parameters
    ----------
    data : array_like, shape (..., T)
        BOLD image, time on the last axis (e.g. (k, j, i, T)).
    labels : array_like of int, shape (...)
        Label map on the same grid; 0 is background.
    region_ids : sequence of int, optional
        Regions to extract, in this order; default: every non-zero label, ascending.

    Returns
    -------
    RegionSeries
        Mean series (n_regions, T), the region ids and their voxel counts.

    Raises
    ------
    InputError
        If the label map does not match the grid or a requested region has no voxel.
    """
    values = as_series(data, min_frames=1)
    label_map = np.asarray(labels)
    if label_map.shape != values.shape[:-1]:
        raise InputError(
            f"label map shape {label_map.shape} does not match the image grid {values.shape[:-1]}: "
            "resample the labels onto the fMRI grid"
        )
    if not np.all(np.mod(label_map, 1) == 0):
        raise InputError("the label map has non-integer values: give an integer label image")
    flat_labels = label_map.reshape(-1).astype(np.int64)
    ids = np.unique(flat_labels[flat_labels != 0]) if region_ids is None else np.asarray(region_ids, np.int64)
    if ids.size == 0:
        raise InputError("the label map has no non-zero label: give a label image with regions")
    present, counts = np.unique(flat_labels, return_counts=True)
    count_of = dict(zip(present.tolist(), counts.tolist(), strict=True))
    missing = [int(i) for i in ids if count_of.get(int(i), 0) == 0]
    if missing:
        raise InputError(
            f"regions {missing} have no voxel in the label map: remove them from region_ids or check "
            "that the label image matches the data"
        )
    sorted_ids = np.unique(ids)
    members = np.flatnonzero(np.isin(flat_labels, sorted_ids))
    members = members[np.argsort(flat_labels[members], kind="stable")]
    starts = np.searchsorted(flat_labels[members], sorted_ids)
    sums = np.add.reduceat(values.reshape(-1, values.shape[-1])[members], starts, axis=0)
    n_voxels = np.diff(np.append(starts, members.size))
    order = np.searchsorted(sorted_ids, ids)
    return RegionSeries(
        series=(sums / n_voxels[:, None])[order], region_ids=ids, n_voxels=n_voxels[order]
    )


def _standardised_rows(rows: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; NaN for constant or non-finite rows."""
    return map_varying_series(_unit_norm_rows, rows)[0]


def _unit_norm_rows(rows: np.ndarray) -> np.ndarray:
    """Centre each row and scale it to unit Euclidean norm (rows must vary)."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True)


def seed_correlation_map(series: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Pearson correlation of every voxel series with a seed series.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Voxel series, time on the last axis.
    seed : array_like, shape (T,)
        Seed series (e.g. a row of :func:`region_mean_series`).

    Returns
    -------
    ndarray, shape (...)
        Correlation in [-1, 1]; NaN for constant or non-finite voxel series.
    """
    values = as_series(series, min_frames=3)
    seed = as_series(seed, min_frames=3)
    if seed.shape != (values.shape[-1],):
        raise InputError(f"seed has shape {seed.shape} but ({values.shape[-1]},) frames are needed")
    if not varying_series_mask(seed):
        raise InputError("the seed series is constant or not finite: choose a seed region with signal")
    unit_seed = _unit_norm_rows(seed[None, :])[0]
    return map_varying_series(lambda rows: _unit_norm_rows(rows) @ unit_seed, values)[0]


# --------------------------------------------------------------------------------------------------
# Static connectivity matrices
# --------------------------------------------------------------------------------------------------
def _check_region_series(series: np.ndarray, min_frames: int = 3) -> np.ndarray:
    """Validate an (n_regions, T) array."""
    values = as_series(series, min_frames=min_frames)
    if values.ndim != 2 or values.shape[0] < 2:
        raise InputError(
            f"region series have shape {values.shape} but (n_regions >= 2, T) is needed: one region per "
            "row, time on the last axis"
        )
    return values


def correlation_matrix(series: np.ndarray) -> np.ndarray:
    """Pearson correlation between every pair of region series.

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis.

    Returns
    -------
    ndarray, shape (n_regions, n_regions)
        Correlation matrix with unit diagonal; rows and columns of constant regions are NaN.
    """
    unit = _standardised_rows(_check_region_series(series))
    matrix = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(matrix, np.where(np.isnan(unit[:, 0]), np.nan, 1.0))
    return matrix


def ledoit_wolf_shrinkage(series: np.ndarray) -> float:
    """Ledoit-Wolf (2004) optimal shrinkage intensity of the correlation matrix towards the identity.

    With standardised series ``x_t`` (n_regions,) at frames ``t`` and sample correlation matrix ``S``:
    ``delta^2 = ||S - mu I||_F^2``, ``beta^2 = min(delta^2, sum_t ||x_t x_t^T - S||_F^2 / T^2)``,
    intensity ``beta^2 / delta^2`` (``mu = trace(S) / n = 1``).

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis; none may be constant.

    Returns
    -------
    float
        Shrinkage intensity in [0, 1].
    """
    standardised = _standardised_for_covariance(series)
    n_frames = standardised.shape[1]
    sample = standardised @ standardised.T / n_frames
    dispersion = np.sum((sample - np.eye(sample.shape[0])) ** 2)
    if dispersion == 0:
        return 0.0
    fourth_moments = np.sum(np.sum(standardised**2, axis=0) ** 2)
    spread = (fourth_moments - n_frames * np.sum(sample**2)) / n_frames**2
    return float(min(spread, dispersion) / dispersion)


def _standardised_for_covariance(series: np.ndarray) -> np.ndarray:
    """Z-scored region series (ddof=0); refuses constant regions, whose correlations are undefined."""
    values = _check_region_series(series)
    constant = ~varying_series_mask(values)
    if constant.any():
        raise InputError(
            f"regions {np.flatnonzero(constant).tolist()} have constant or non-finite series: remove them "
            "before computing partial correlations"
        )
    centred = values - values.mean(axis=-1, keepdims=True)
    return centred / centred.std(axis=-1, keepdims=True)


def partial_correlation_matrix(
    series: np.ndarray,
    shrinkage: float | Literal["ledoit-wolf"] = 0.0,
) -> np.ndarray:
    """Partial correlation between every pair of regions given all the others.

    The series are z-scored, their correlation matrix ``S`` shrunk to ``(1 - a) S + a I`` and inverted
    to the precision matrix ``P``; the partial correlation is ``-P_ij / sqrt(P_ii P_jj)``.

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis.
    shrinkage : float in [0, 1] or "ledoit-wolf"
        Shrinkage intensity ``a``; "ledoit-wolf" uses :func:`ledoit_wolf_shrinkage`. Needed (> 0)
        when there are at least as many regions as frames.

    Returns
    -------
    ndarray, shape (n_regions, n_regions)
        Partial correlation matrix with unit diagonal.
    """
    standardised = _standardised_for_covariance(series)
    if shrinkage == "ledoit-wolf":
        intensity = ledoit_wolf_shrinkage(standardised)
    elif isinstance(shrinkage, (int, float)) and 0.0 <= shrinkage <= 1.0:
        intensity = float(shrinkage)
    else:
        raise InputError(f"shrinkage {shrinkage!r} must be a number in [0, 1] or 'ledoit-wolf'")
    n_regions, n_frames = standardised.shape
    covariance = (1.0 - intensity) * (standardised @ standardised.T / n_frames) + intensity * np.eye(n_regions)
    eigenvalues = np.linalg.eigvalsh(covariance)
    if eigenvalues[0] <= n_regions * np.finfo(np.float64).eps * eigenvalues[-1]:
        raise InputError(
            f"the correlation matrix of {n_regions} regions over {n_frames} frames is singular: use "
            "shrinkage='ledoit-wolf' (or a positive value), or fewer regions"
        )
    precision = np.linalg.inv(covariance)
    scale = np.sqrt(np.diag(precision))
    partial = -precision / np.outer(scale, scale)
    np.fill_diagonal(partial, 1.0)
    return partial


def fisher_z(correlation: np.ndarray) -> np.ndarray:
    """Fisher z-transform ``z = artanh(r)`` of correlation values.

    Parameters
    ----------
    correlation : array_like
        Correlations in [-1, 1].

    Returns
    -------
    ndarray
        z values; ``r = +-1`` (e.g. a unit diagonal) gives ``+-inf``, NaN stays NaN.
    """
    values = np.asarray(correlation, dtype=np.float64)
    if np.any(np.abs(values[np.isfinite(values)]) > 1.0):
        raise InputError("correlation values outside [-1, 1] cannot be Fisher-transformed")
    with np.errstate(divide="ignore"):
        return np.arctanh(values)


# --------------------------------------------------------------------------------------------------
# Coherence
# --------------------------------------------------------------------------------------------------
def cross_spectral_matrix(
    series: np.ndarray,
    tr_s: float,
    *,
    nfft: int = 64,
    n_overlap: int | None = None,
    segment_detrend: Literal["constant"] | None = "constant",
) -> tuple[np.ndarray, np.ndarray]:
    """Welch estimate of all auto- and cross-spectra between region series.

    The series are cut into segments of ``nfft`` frames starting every ``nfft - n_overlap`` frames
    (trailing frames that do not fill a segment are dropped), each segment is optionally demeaned and
    multiplied by a symmetric Hann window (``numpy.hanning``), and ``S_ab(f)`` is the mean over segments
    of ``X_a(f) conj(X_b(f))``. The scale is arbitrary: only ratios (coherence) are meaningful.

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis.
    tr_s : float
        Repetition time in seconds.
    nfft : int
        Segment length in frames.
    n_overlap : int, optional
        Overlap between segments in frames (default ``nfft // 2``).
    segment_detrend : {"constant", None}
        "constant" removes each segment's mean before windowing; None keeps it.

    Returns
    -------
    frequencies : ndarray, shape (nfft // 2 + 1,)
        Frequencies in Hz.
    spectra : ndarray of complex, shape (n_regions, n_regions, nfft // 2 + 1)
        Cross-spectral matrix at each frequency.
    """
    values = _check_region_series(series)
    tr = check_tr(tr_s)
    n_overlap = nfft // 2 if n_overlap is None else int(n_overlap)
    if nfft < 2 or not 0 <= n_overlap < nfft:
        raise InputError(f"segment length {nfft} and overlap {n_overlap} frames need nfft >= 2 and 0 <= overlap < nfft")
    if values.shape[-1] < nfft:
        raise InputError(
            f"the series have {values.shape[-1]} frames, fewer than one segment of {nfft}: lower nfft"
        )
    if segment_detrend not in ("constant", None):
        raise InputError(f"segment_detrend {segment_detrend!r} is unknown: choose 'constant' or None")
    segments = np.lib.stride_tricks.sliding_window_view(values, nfft, axis=-1)[:, :: nfft - n_overlap]
    if segment_detrend == "constant":
        segments = segments - segments.mean(axis=-1, keepdims=True)
    transforms = np.fft.rfft(segments * np.hanning(nfft), axis=-1)
    spectra = np.einsum("asf,bsf->abf", transforms, np.conj(transforms)) / transforms.shape[1]
    return np.fft.rfftfreq(nfft, d=tr), spectra


def coherence_matrix(
    series: np.ndarray,
    tr_s: float,
    band: tuple[float, float],
    *,
    nfft: int = 64,
    n_overlap: int | None = None,
    segment_detrend: Literal["constant"] | None = "constant",
) -> np.ndarray:
    """Magnitude-squared coherence between region series, averaged over a frequency band.

    ``C_ab(f) = |S_ab(f)|^2 / (S_aa(f) S_bb(f))`` from the Welch cross-spectra of
    :func:`cross_spectral_matrix`, averaged over the bins with ``low <= f <= high``. The defaults
    (64-frame segments, 32-frame overlap, symmetric Hann window) are those of nitime's
    ``CoherenceAnalyzer``; nitime does not demean segments, which ``segment_detrend=None`` reproduces.

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis.
    tr_s : float
        Repetition time in seconds.
    band : tuple of float
        ``(low_hz, high_hz)`` averaging band.
    nfft, n_overlap, segment_detrend
        See :func:`cross_spectral_matrix`.

    Returns
    -------
    ndarray, shape (n_regions, n_regions)
        Band-averaged coherence in [0, 1], unit diagonal; NaN rows and columns for regions without
        power in the band.
    """
    frequencies, spectra = cross_spectral_matrix(
        series, tr_s, nfft=nfft, n_overlap=n_overlap, segment_detrend=segment_detrend
    )
    low, high = band
    in_band = (frequencies >= low) & (frequencies <= high)
    if not in_band.any():
        raise InputError(
            f"band ({low}, {high}) Hz contains no frequency of the {nfft}-frame segments (resolution "
            f"{frequencies[1]:.4g} Hz): widen the band or increase nfft"
        )
    spectra = spectra[..., in_band]
    power = np.real(np.diagonal(spectra, axis1=0, axis2=1)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        coherence = np.abs(spectra) ** 2 / (power[:, None, :] * power[None, :, :])
    return np.mean(coherence, axis=-1)


# --------------------------------------------------------------------------------------------------
# Dynamic connectivity
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DynamicConnectivity:
    """Window-wise correlation matrices.

    Attributes
    ----------
    matrices : ndarray, shape (n_windows, n_regions, n_regions)
        Weighted Pearson correlation in each window.
    window_centres_s : ndarray, shape (n_windows,)
        Time of each window's centre in s (frame 0 at 0 s).
    variability : ndarray, shape (n_regions, n_regions)
        Standard deviation of each correlation across windows (``ddof=1``; NaN with one window).
    weights : ndarray, shape (window_frames,)
        Taper applied within each window.
    """

    matrices: np.ndarray
    window_centres_s: np.ndarray
    variability: np.ndarray
    weights: np.ndarray


def window_taper(
    n_frames: int,
    tr_s: float,
    taper: Literal["gaussian", "hamming", "rectangular"] = "gaussian",
    sigma_s: float | None = None,
) -> np.ndarray:
    """Weights of a tapered sliding window.

    "gaussian" is the window of Allen et al. (2014): a rectangle as long as the window convolved
    with a Gaussian of standard deviation ``sigma_s`` (default 3 TR), evaluated at the window's frames
    (the Gaussian tails outside the window are cut) and scaled to a maximum of 1:
    ``w(t) = Phi((t + W/2) / sigma) - Phi((t - W/2) / sigma)``, ``t`` the time from the window centre,
    ``W = n_frames * TR``. "hamming" is ``numpy.hamming``; "rectangular" weighs all frames equally.

    Parameters
    ----------
    n_frames : int
        Window length in frames.
    tr_s : float
        Repetition time in seconds.
    taper : {"gaussian", "hamming", "rectangular"}
        Window shape.
    sigma_s : float, optional
        Gaussian standard deviation in s (only for "gaussian").

    Returns
    -------
    ndarray, shape (n_frames,)
        Non-negative weights, maximum 1.
    """
    tr = check_tr(tr_s)
    if taper == "rectangular":
        return np.ones(n_frames)
    if taper == "hamming":
        return np.hamming(n_frames)
    if taper != "gaussian":
        raise InputError(f"taper {taper!r} is unknown: choose 'gaussian', 'hamming' or 'rectangular'")
    sigma = 3.0 * tr if sigma_s is None else float(sigma_s)
    if not sigma > 0:
        raise InputError(f"taper sigma {sigma_s} s must be positive")
    times = (np.arange(n_frames) - (n_frames - 1) / 2.0) * tr
    half_width = n_frames * tr / 2.0
    weights = special.ndtr((times + half_width) / sigma) - special.ndtr((times - half_width) / sigma)
    return weights / weights.max()


def sliding_window_connectivity(
    series: np.ndarray,
    tr_s: float,
    window_s: float,
    step_s: float,
    *,
    taper: Literal["gaussian", "hamming", "rectangular"] = "gaussian",
    taper_sigma_s: float | None = None,
) -> DynamicConnectivity:
    """Dynamic functional connectivity from tapered sliding windows.

    Windows of ``round(window_s / TR)`` frames start every ``round(step_s / TR)`` frames (at least 1)
    from frame 0, as long as they fit in the series. In each window the weighted Pearson correlation
    with the taper weights ``w`` is computed: weighted means, ``cov_ab = sum w (a - m_a)(b - m_b) /
    sum w``, ``r = cov_ab / sqrt(cov_aa cov_bb)``.

    Parameters
    ----------
    series : array_like, shape (n_regions, T)
        Region series, time on the last axis.
    tr_s : float
        Repetition time in seconds.
    window_s : float
        Window length in s (at least 3 frames).
    step_s : float
        Step between window starts in s.
    taper, taper_sigma_s
        See :func:`window_taper`.

    Returns
    -------
    DynamicConnectivity
        Window-wise matrices, window centres, variability (SD across windows) and the taper weights.

    Raises
    ------
    InputError
        If the series are shorter than one window or the window is shorter than 3 frames.
    """
    values = _check_region_series(series)
    tr = check_tr(tr_s)
    window_frames = round(window_s / tr)
    step_frames = max(1, round(step_s / tr))
    n_frames = values.shape[-1]
    if window_frames < 3:
        raise InputError(f"window of {window_s} s is {window_frames} frames at TR {tr:g} s: give at least 3 TR")
    if n_frames < window_frames:
        raise InputError(
            f"the series have {n_frames} frames, fewer than the {window_frames}-frame window ({window_s} s): "
            "shorten the window or give a longer series"
        )
    if not step_s > 0:
        raise InputError(f"window step {step_s} s must be positive")
    weights = window_taper(window_frames, tr, taper, taper_sigma_s)
    windows = np.lib.stride_tricks.sliding_window_view(values, window_frames, axis=-1)[:, ::step_frames]
    normalised = weights / weights.sum()
    centred = windows - np.einsum("awl,l->aw", windows, normalised)[..., None]
    covariance = np.einsum("awl,bwl,l->wab", centred, centred, normalised)
    scale = np.sqrt(np.einsum("waa->wa", covariance))
    with np.errstate(invalid="ignore", divide="ignore"):
        matrices = np.clip(covariance / (scale[:, :, None] * scale[:, None, :]), -1.0, 1.0)
    regions = np.arange(values.shape[0])
    matrices[:, regions, regions] = np.where(scale > 0, 1.0, np.nan)
    n_windows = matrices.shape[0]
    variability = matrices.std(axis=0, ddof=1) if n_windows > 1 else np.full(matrices.shape[1:], np.nan)
    starts = np.arange(n_windows) * step_frames
    return DynamicConnectivity(
        matrices=matrices,
        window_centres_s=(starts + (window_frames - 1) / 2.0) * tr,
        variability=variability,
        weights=weights,
    )
