"""Time delays of BOLD signals: voxel-wise lag maps and region-wise lag structure.

Voxel-wise lag: each series and a reference (the global mean signal or a given regressor) are
band-limited to the systemic low-frequency oscillation band (0.01-0.15 Hz by default, zero-phase
Butterworth filter of `FMRIDynamicsLib.cleaning`), normalised, and cross-correlated via the FFT; the maximum of the cross-correlation
within +/- ``max_lag`` is refined to sub-TR precision by parabolic interpolation (Tong & Frederick
2010; Tong et al. 2019). A positive lag means the voxel follows the reference:
``voxel(t) ~ reference(t - lag)``.

Region-wise lag structure (Mitra et al. 2014, 2015): the lagged cross-covariance of each pair of
regions, normalised by the frame count and both standard deviations, is computed for lags within
the limit; the lag of its extremum, refined by parabolic interpolation, fills an antisymmetric time
delay matrix (NaN where the extremum lies beyond the limit). The lag projection of a region is the
mean of its row (optionally weighted by the peak correlations); latency eigenvectors ("lag
threads") are the principal components of the delay matrix after zero-centring each column.

References
----------
Tong Y, Frederick BdeB. Time lag dependent multimodal processing of concurrent fMRI and near-infrared
spectroscopy (NIRS) data suggests a global circulatory origin for low-frequency oscillation signals
in human brain. NeuroImage 2010;53:553-564.
Tong Y, Hocke LM, Frederick BB. Low frequency systemic hemodynamic "noise" in resting state BOLD fMRI:
characteristics, causes, implications, mitigation strategies, and applications. Front Neurosci
2019;13:787.
Mitra A, Snyder AZ, Hacker CD, Raichle ME. Lag structure in resting-state fMRI. J Neurophysiol
2014;111:2374-2391.
Mitra A, Snyder AZ, Blazey T, Raichle ME. Lag threads organize the brain's intrinsic activity. Proc
Natl Acad Sci USA 2015;112:E2235-E2244.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import butterworth_filter, check_tr, varying_series_mask

DEFAULT_BAND_HZ = (0.01, 0.15)
LAG_CHUNK_VOXELS = 4096


def parabolic_peak(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex of the parabola through three equally spaced samples.

    Parameters
    ----------
    left, centre, right : numpy.ndarray
        Samples at offsets -1, 0 and +1 (any broadcastable shapes).

    Returns
    -------
    offset : numpy.ndarray
        Vertex position in samples relative to ``centre``, clipped to [-1, 1] (0 where the three
        samples are collinear or curve upwards).
    value : numpy.ndarray
        Parabola value at the vertex.
    """
    curvature = left - 2.0 * centre + right
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    offset = np.clip(offset, -1.0, 1.0)
    return offset, centre - 0.25 * (left - right) * offset


def _band_limited(
    series: np.ndarray, tr: float, band: tuple[float | None, float | None] | None
) -> np.ndarray:
    """Mean-removed series, then zero-phase Butterworth filtered to ``band`` (Hz) unless it is None."""
    centred = series - series.mean(axis=-1, keepdims=True)
    return centred if band is None else butterworth_filter(centred, tr, band)


def _unit_norm(series: np.ndarray) -> np.ndarray:
    """Series scaled to unit Euclidean norm (all-zero series stay zero)."""
    norm = np.linalg.norm(series, axis=-1, keepdims=True)
    return np.divide(series, norm, out=np.zeros_like(series), where=norm > 0)


@dataclass(frozen=True)
class LagMaps:
    """Voxel-wise lag relative to a reference signal.

    Attributes
    ----------
    lag : numpy.ndarray
        Lag in s (positive: the voxel follows the reference); NaN where the correlation maximum
        lies at or beyond the lag limit, or for constant / non-finite series.
    peak_correlation : numpy.ndarray
        Correlation at the lag (interpolated), in [-1, 1].
    reference : numpy.ndarray
        The band-limited reference series ``(T,)``.
    n_failed : int
        Number of NaN lags.
    """

    lag: np.ndarray
    peak_correlation: np.ndarray
    reference: np.ndarray
    n_failed: int


def _windowed_cross_correlation(series: np.ndarray, reference: np.ndarray, n_lags: int) -> np.ndarray:
    """Circular cross-correlation via the FFT at lags ``-n_lags .. n_lags`` (zero-padded, no wrap)."""
    n_fft = fft.next_fast_len(series.shape[-1] + n_lags + 1, real=True)
    spectrum = fft.rfft(series, n_fft, axis=-1) * np.conj(fft.rfft(reference, n_fft))
    correlation = fft.irfft(spectrum, n_fft, axis=-1)
    return np.concatenate([correlation[..., n_fft - n_lags :], correlation[..., : n_lags + 1]], axis=-1)


def lag_map(
    data: np.ndarray,
    tr: float,
    reference: np.ndarray | None = None,
    max_lag: float = 10.0,
    band: tuple[float | None, float | None] | None = DEFAULT_BAND_HZ,
) -> LagMaps:
    """Voxel-wise time lag of BOLD series relative to a reference signal.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)`` (e.g. ``(k, j, i, T)`` or ``(n_voxels, T)``).
    tr : float
        Repetition time, in s.
    reference : numpy.ndarray, optional
        Reference series ``(T,)``; the mean of the band-limited series when omitted.
    max_lag : float
        Largest |lag| searched, in s.
    band : tuple or None
        Pass band ``(low, high)`` in Hz applied to the data and the reference (None for an open
        edge, see `FMRIDynamicsLib.cleaning.butterworth_filter`); None to only remove the mean.

    Returns
    -------
    LagMaps
    """
    tr = check_tr(tr)
    data = np.asarray(data, dtype=float)
    n_frames = data.shape[-1]
    if not 0 < max_lag < n_frames * tr / 2:
        raise InputError(
            f"maximum lag {max_lag} s is not within (0, half the scan = {n_frames * tr / 2:g} s): "
            "give it in s"
        )
    series = data.reshape(-1, n_frames)
    usable = varying_series_mask(series)
    if not np.any(usable):
        raise InputError("no voxel has a finite, non-constant series: check the data and the mask")
    if reference is None:
        reference_series = _band_limited(series[usable], tr, band).mean(axis=0)
    else:
        reference = np.asarray(reference, dtype=float)
        if reference.shape != (n_frames,) or not np.all(np.isfinite(reference)):
            raise InputError(
                f"reference of shape {reference.shape} is not a finite series of {n_frames} frames"
            )
        reference_series = _band_limited(reference, tr, band)
    if not np.any(reference_series):
        raise InputError(
            "the reference signal is zero after filtering: give a reference with power in the band"
        )
    n_lags = int(np.ceil(max_lag / tr)) + 1
    lag = np.full(series.shape[0], np.nan)
    peak = np.full(series.shape[0], np.nan)
    indices = np.flatnonzero(usable)
    unit_reference = _unit_norm(reference_series)
    for start in range(0, indices.size, LAG_CHUNK_VOXELS):
        chunk = indices[start : start + LAG_CHUNK_VOXELS]
        filtered = _unit_norm(_band_limited(series[chunk], tr, band))
        lag[chunk], peak[chunk] = _peak_lags(
            _windowed_cross_correlation(filtered, unit_reference, n_lags), n_lags, tr, max_lag, absolute=False
        )
    return LagMaps(
        lag.reshape(data.shape[:-1]),
        peak.reshape(data.shape[:-1]),
        reference_series,
        n_failed=int(np.sum(np.isnan(lag))),
    )


def _peak_lags(
    correlation: np.ndarray, n_lags: int, tr: float, max_lag: float, absolute: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated lag (s) and value of the maximum (or extremum) of windowed correlations.

    ``correlation`` holds lags ``-n_lags .. n_lags`` on its last axis; NaN where the peak is on the
    window edge or beyond ``max_lag``.
    """
    index = np.argmax(np.abs(correlation) if absolute else correlation, axis=-1)
    inner = np.clip(index, 1, correlation.shape[-1] - 2)[..., None]
    neighbours = np.take_along_axis(correlation, inner + np.array([-1, 0, 1]), axis=-1)
    sign = np.sign(neighbours[..., 1]) if absolute else 1.0
    offset, value = parabolic_peak(*(sign * neighbours[..., column] for column in range(3)))
    lag = (inner[..., 0] - n_lags + offset) * tr
    valid = (index > 0) & (index < correlation.shape[-1] - 1) & (np.abs(lag) <= max_lag)
    return np.where(valid, lag, np.nan), np.where(valid, sign * value, np.nan)


@dataclass(frozen=True)
class DelayMatrix:
    """Pairwise time delays between regions.

    Attributes
    ----------
    delays : numpy.ndarray
        ``(R, R)`` antisymmetric; ``delays[i, j]`` is the lag of region ``i`` relative to region
        ``j`` in s (positive: ``i`` follows ``j``); NaN beyond the lag limit.
    peak_correlation : numpy.ndarray
        ``(R, R)`` symmetric lagged correlation at the extremum.
    """

    delays: np.ndarray
    peak_correlation: np.ndarray


def lagged_cross_correlation(series: np.ndarray, n_lags: int) -> np.ndarray:
    """Lagged cross-correlation of region series.

    Parameters
    ----------
    series : numpy.ndarray
        Region series ``(R, T)``.
    n_lags : int
        Largest lag in frames.

    Returns
    -------
    numpy.ndarray
        ``(R, R, 2 n_lags + 1)``; entry ``[i, j, n_lags + k]`` is
        ``sum_t x_i(t) x_j(t - k) / (T sigma_i sigma_j)`` of the mean-removed series.
    """
    centred = series - series.mean(axis=-1, keepdims=True)
    n_frames = centred.shape[-1]
    scaled = _unit_norm(centred) * np.sqrt(n_frames)
    positive = np.stack([scaled[:, k:] @ scaled[:, : n_frames - k].T for k in range(n_lags + 1)], axis=-1)
    negative = np.transpose(positive[..., :0:-1], (1, 0, 2))
    return np.concatenate([negative, positive], axis=-1) / n_frames


def delay_matrix(
    series: np.ndarray, tr: float, max_lag: float = 4.0, band: tuple[float | None, float | None] | None = None
) -> DelayMatrix:
    """Time delay matrix of region series from their lagged cross-covariance (Mitra et al. 2014).

    Parameters
    ----------
    series : numpy.ndarray
        Region series ``(R, T)``.
    tr : float
        Repetition time, in s.
    max_lag : float
        Largest |delay| accepted, in s; extrema beyond it give NaN.
    band : tuple or None
        Optional pass band ``(low, high)`` in Hz applied first (as in `lag_map`).

    Returns
    -------
    DelayMatrix
    """
    tr = check_tr(tr)
    series = np.asarray(series, dtype=float)
    if series.ndim != 2 or series.shape[0] < 2:
        raise InputError(f"region series of shape {series.shape} are not (n_regions >= 2, T)")
    if not np.all(varying_series_mask(series)):
        raise InputError(
            "a region series is constant or not finite: drop empty regions before computing delays"
        )
    if not 0 < max_lag < series.shape[1] * tr / 2:
        raise InputError(f"maximum lag {max_lag} s is not within (0, half the scan): give it in s")
    n_lags = int(np.ceil(max_lag / tr)) + 1
    correlation = lagged_cross_correlation(_band_limited(series, tr, band), n_lags)
    delays, peak = _peak_lags(correlation, n_lags, tr, max_lag, absolute=True)
    upper = np.triu(np.ones(delays.shape, dtype=bool), 1)
    delays = np.where(upper, delays, -delays.T)
    np.fill_diagonal(delays, 0.0)
    return DelayMatrix(delays, np.where(upper, peak, peak.T))


def lag_projection(delays: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean lag of each region relative to all others (row means of the delay matrix).

    Parameters
    ----------
    delays : numpy.ndarray
        ``(R, R)`` delay matrix in s (NaN entries are ignored; the diagonal is excluded).
    weights : numpy.ndarray, optional
        ``(R, R)`` non-negative weights, e.g. ``abs(peak_correlation)``; unweighted when omitted.

    Returns
    -------
    numpy.ndarray
        ``(R,)`` lag projection in s (positive: the region is late on average); NaN for a region
        with no valid delay.
    """
    delays = np.asarray(delays, dtype=float)
    weights = np.ones_like(delays) if weights is None else np.asarray(weights, dtype=float)
    if weights.shape != delays.shape or np.any(weights < 0):
        raise InputError("weights must be non-negative and shaped like the delay matrix")
    valid = np.isfinite(delays) & ~np.eye(delays.shape[0], dtype=bool)
    weights = np.where(valid, weights, 0.0)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights * np.where(valid, delays, 0.0)).sum(axis=1) / total, np.nan)


def latency_eigenvectors(delays: np.ndarray, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Principal components ("lag threads") of the zero-centred delay matrix (Mitra et al. 2015).

    Parameters
    ----------
    delays : numpy.ndarray
        ``(R, R)`` delay matrix in s; NaN entries count as zero delay.
    n_components : int
        Number of components returned.

    Returns
    -------
    components : numpy.ndarray
        ``(n_components, R)`` unit-norm region weights, each signed so its largest-magnitude entry is
        positive. For delays ``d_ij = s_i - s_j`` the first is proportional to ``s - mean(s)``
        (up to sign).
    explained_variance_ratio : numpy.ndarray
        ``(n_components,)`` fraction of the centred matrix's variance each component explains.
    """
    delays = np.nan_to_num(np.asarray(delays, dtype=float), nan=0.0)
    if delays.ndim != 2 or delays.shape[0] != delays.shape[1]:
        raise InputError(f"delay matrix of shape {delays.shape} is not square")
    if not 1 <= n_components <= delays.shape[0]:
        raise InputError(f"{n_components} components are not within 1..{delays.shape[0]} regions")
    centred = delays - delays.mean(axis=0, keepdims=True)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    components = left[:, :n_components].T
    largest = np.take_along_axis(components, np.argmax(np.abs(components), axis=1)[:, None], axis=1)
    components = components * np.sign(largest)
    power = singular**2
    total = power.sum()
    ratio = power[:n_components] / total if total > 0 else np.zeros(n_components)
    return components, ratio
