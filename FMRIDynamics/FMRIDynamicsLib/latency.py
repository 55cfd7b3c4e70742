"""Time delays of BOLD signals: voxel-wise lag maps and region-wise lag structure.

Voxel-wise lag (Tong & Frederick 2010; Tong et al. 2019): each series and a reference (the global
mean signal or a given regressor) have a cubic polynomial trend removed (as rapidtide does), are
band-limited to the systemic low-frequency oscillation band (0.01-0.15 Hz by default, zero-phase
Butterworth filter of `FMRIDynamicsLib.cleaning`), normalised, and cross-correlated via the FFT
(zero-padded to at least ``2 T - 1`` frames, so the correlation is linear, not circular). The maximum
of the cross-correlation within +/- ``max_lag`` is refined to sub-TR precision by parabolic
interpolation. A positive lag means the voxel follows the reference: ``voxel(t) ~ reference(t - lag)``.

Two options reproduce the estimator of rapidtide (Frederick et al.), whose defaults are a Hamming
taper of both series before the correlation and the phase transform (PHAT) weighting of the
generalised cross-correlation (Knapp & Carter 1976): the cross-spectrum is divided by its magnitude,
so that only its phase (the delay) is kept, and the frequency bins whose magnitude is below 10 % of
the largest are dropped (their phase is noise). The peak correlation reported is always that of the
unweighted (tapered) correlation at the estimated lag. Neither option is the default. PHAT gives every
retained frequency the same weight whatever its signal-to-noise ratio (the maximum-likelihood
weighting of Knapp & Carter reduces to it only when the coherence is the same at all frequencies); it
is meant for high signal-to-noise ratios with several delayed copies, where its sharper peak separates
them. The taper lowers the effective number of frames. At the signal-to-noise ratio of single BOLD
voxels both raise the variance of the lag: on band-limited 1/f signals with known sub-TR lags and
white or 1/f noise (peak correlations 0.2-0.9) the plain estimator had a smaller error than the
tapered and the tapered PHAT ones, and on a resting-state scan a higher split-half reproducibility.
rapidtide also oversamples the series threefold and fits a Gaussian to the peak (which changed its
agreement with this estimator by about 0.01 in correlation over voxels), and by default smooths
every volume spatially (Gaussian, sigma = half the mean voxel size); smoothing is a preprocessing step
here.

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
Frederick BdeB, Salo T, Drucker DM. rapidtide: a suite of Python programs for modelling systemic
low-frequency oscillations in fMRI data. Zenodo, doi:10.5281/zenodo.814990.
Knapp CH, Carter GC. The generalized correlation method for estimation of time delay. IEEE Trans
Acoust Speech Signal Process 1976;24:320-327.
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

from FMRIDynamicsLib.cleaning import butterworth_filter, check_tr, detrend_polynomial, varying_series_mask

DEFAULT_BAND_HZ = (0.01, 0.15)
DEFAULT_DETREND_ORDER = 3
LAG_CHUNK_VOXELS = 4096
TAPERS = ("none", "hamming")
WEIGHTINGS = ("none", "phat")
PHAT_MIN_RELATIVE_MAGNITUDE = 0.1
"""Cross-spectral bins below this fraction of the largest magnitude are dropped by the PHAT weighting."""


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
    return offset, parabola_value(left, centre, right, offset)


def parabola_value(left: np.ndarray, centre: np.ndarray, right: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Value at ``offset`` (in samples from ``centre``) of the parabola through three equally spaced samples.

    Parameters
    ----------
    left, centre, right : numpy.ndarray
        Samples at offsets -1, 0 and +1 (any broadcastable shapes).
    offset : numpy.ndarray
        Where to evaluate the parabola, in samples relative to ``centre``.

    Returns
    -------
    numpy.ndarray
        ``centre + (right - left) offset / 2 + (left - 2 centre + right) offset**2 / 2``.
    """
    return centre + 0.5 * (right - left) * offset + 0.5 * (left - 2.0 * centre + right) * offset**2


def _band_limited(
    series: np.ndarray,
    tr: float,
    band: tuple[float | None, float | None] | None,
    detrend_order: int = 0,
) -> np.ndarray:
    """Polynomial trend of degree ``detrend_order`` removed (0: the mean), then zero-phase Butterworth
    filtered to ``band`` (Hz) unless it is None."""
    detrended = detrend_polynomial(series, detrend_order)
    return detrended if band is None else butterworth_filter(detrended, tr, band)


def _unit_norm(series: np.ndarray) -> np.ndarray:
    """Series scaled to unit Euclidean norm (all-zero series stay zero)."""
    norm = np.linalg.norm(series, axis=-1, keepdims=True)
    return np.divide(series, norm, out=np.zeros_like(series), where=norm > 0)


def _tapered_unit_norm(series: np.ndarray, taper: str) -> np.ndarray:
    """Series multiplied by the taper (``"hamming"`` or ``"none"``), then scaled to unit norm."""
    return _unit_norm(series * np.hamming(series.shape[-1]) if taper == "hamming" else series)


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
        The detrended, band-limited reference series ``(T,)`` (before any taper).
    n_failed : int
        Number of NaN lags.
    """

    lag: np.ndarray
    peak_correlation: np.ndarray
    reference: np.ndarray
    n_failed: int


def _cross_spectrum(series: np.ndarray, reference: np.ndarray, n_fft: int) -> np.ndarray:
    """Cross-spectrum of each series with the reference, both zero-padded to ``n_fft`` frames."""
    return fft.rfft(series, n_fft, axis=-1) * np.conj(fft.rfft(reference, n_fft))


def phase_transform(cross_spectrum: np.ndarray) -> np.ndarray:
    """PHAT weighting of a cross-spectrum (Knapp & Carter 1976): unit magnitude, phase kept.

    Parameters
    ----------
    cross_spectrum : numpy.ndarray
        Complex cross-spectra ``(..., F)``, frequency on the last axis.

    Returns
    -------
    numpy.ndarray
        ``S / |S|`` where ``|S|`` exceeds ``PHAT_MIN_RELATIVE_MAGNITUDE`` times the largest
        magnitude of that spectrum, 0 elsewhere (all zero for an all-zero spectrum).
    """
    magnitude = np.abs(cross_spectrum)
    kept = magnitude > PHAT_MIN_RELATIVE_MAGNITUDE * magnitude.max(axis=-1, keepdims=True)
    return np.divide(cross_spectrum, magnitude, out=np.zeros_like(cross_spectrum), where=kept)


def _lag_window(cross_spectrum: np.ndarray, n_fft: int, n_lags: int) -> np.ndarray:
    """Correlation at lags ``-n_lags .. n_lags`` from the cross-spectrum of series zero-padded to ``n_fft``."""
    correlation = fft.irfft(cross_spectrum, n_fft, axis=-1)
    return np.concatenate([correlation[..., n_fft - n_lags :], correlation[..., : n_lags + 1]], axis=-1)


def _check_lag_options(taper: str, weighting: str) -> None:
    """Refuse an unknown taper or cross-spectral weighting."""
    if taper not in TAPERS:
        raise InputError(f"taper {taper!r} is unknown: give one of {', '.join(TAPERS)}")
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting {weighting!r} is unknown: give one of {', '.join(WEIGHTINGS)}")


def lag_map(
    data: np.ndarray,
    tr: float,
    reference: np.ndarray | None = None,
    max_lag: float = 10.0,
    band: tuple[float | None, float | None] | None = DEFAULT_BAND_HZ,
    *,
    detrend_order: int = DEFAULT_DETREND_ORDER,
    taper: str = "none",
    weighting: str = "none",
) -> LagMaps:
    """Voxel-wise time lag of BOLD series relative to a reference signal.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)`` (e.g. ``(k, j, i, T)`` or ``(n_voxels, T)``).
    tr : float
        Repetition time, in s.
    reference : numpy.ndarray, optional
        Reference series ``(T,)``; the mean of the detrended, band-limited series when omitted.
    max_lag : float
        Largest |lag| searched, in s.
    band : tuple or None
        Pass band ``(low, high)`` in Hz applied to the data and the reference (None for an open
        edge, see `FMRIDynamicsLib.cleaning.butterworth_filter`); None to only detrend.
    detrend_order : int
        Degree of the least-squares polynomial trend removed from every series before filtering
        (0: only the mean; 3, the default, as rapidtide does).
    taper : {"none", "hamming"}
        Window applied to both band-limited series before the correlation ("hamming": rapidtide's
        default).
    weighting : {"none", "phat"}
        Cross-spectral weighting of the correlation that locates the lag ("phat": the phase
        transform, rapidtide's default; see the module notes for why it is not the default here).

    Returns
    -------
    LagMaps
    """
    tr = check_tr(tr)
    _check_lag_options(taper, weighting)
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
    indices = np.flatnonzero(usable)
    if reference is None:
        reference_series = _mean_band_limited(series, indices, tr, band, detrend_order)
    else:
        reference = np.asarray(reference, dtype=float)
        if reference.shape != (n_frames,) or not np.all(np.isfinite(reference)):
            raise InputError(
                f"reference of shape {reference.shape} is not a finite series of {n_frames} frames"
            )
        reference_series = _band_limited(reference, tr, band, detrend_order)
    if not np.any(reference_series):
        raise InputError(
            "the reference signal is zero after filtering: give a reference with power in the band"
        )
    n_lags = int(np.ceil(max_lag / tr)) + 1
    n_fft = fft.next_fast_len(2 * n_frames - 1, real=True)
    lag = np.full(series.shape[0], np.nan)
    peak = np.full(series.shape[0], np.nan)
    unit_reference = _tapered_unit_norm(reference_series, taper)
    for start in range(0, indices.size, LAG_CHUNK_VOXELS):
        chunk = indices[start : start + LAG_CHUNK_VOXELS]
        filtered = _tapered_unit_norm(_band_limited(series[chunk], tr, band, detrend_order), taper)
        spectrum = _cross_spectrum(filtered, unit_reference, n_fft)
        correlation = _lag_window(spectrum, n_fft, n_lags)
        located = correlation
        if weighting == "phat":
            located = _lag_window(phase_transform(spectrum), n_fft, n_lags)
        lag[chunk], peak[chunk] = _peak_lags(located, n_lags, tr, max_lag, absolute=False, values=correlation)
    return LagMaps(
        lag.reshape(data.shape[:-1]),
        peak.reshape(data.shape[:-1]),
        reference_series,
        n_failed=int(np.sum(np.isnan(lag))),
    )


def _mean_band_limited(
    series: np.ndarray,
    indices: np.ndarray,
    tr: float,
    band: tuple[float | None, float | None] | None,
    detrend_order: int,
) -> np.ndarray:
    """Mean of the detrended, band-limited series of the voxels ``indices`` (accumulated in chunks)."""
    total = np.zeros(series.shape[-1])
    for start in range(0, indices.size, LAG_CHUNK_VOXELS):
        chunk = indices[start : start + LAG_CHUNK_VOXELS]
        total += _band_limited(series[chunk], tr, band, detrend_order).sum(axis=0)
    return total / indices.size


def _peak_lags(
    correlation: np.ndarray,
    n_lags: int,
    tr: float,
    max_lag: float,
    absolute: bool,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated lag (s) and value of the maximum (or extremum) of windowed correlations.

    ``correlation`` holds lags ``-n_lags .. n_lags`` on its last axis; NaN where the peak is on the
    window edge or beyond ``max_lag``. The value is read from ``values`` (same layout, e.g. the
    unweighted correlation when ``correlation`` is weighted) at the interpolated lag when given.
    """
    index = np.argmax(np.abs(correlation) if absolute else correlation, axis=-1)
    inner = np.clip(index, 1, correlation.shape[-1] - 2)[..., None] + np.array([-1, 0, 1])
    neighbours = np.take_along_axis(correlation, inner, axis=-1)
    sign = np.sign(neighbours[..., 1]) if absolute else 1.0
    offset, value = parabolic_peak(*(sign * neighbours[..., column] for column in range(3)))
    value = sign * value
    if values is not None:
        samples = np.take_along_axis(values, inner, axis=-1)
        value = parabola_value(samples[..., 0], samples[..., 1], samples[..., 2], offset)
    lag = (inner[..., 1] - n_lags + offset) * tr
    valid = (index > 0) & (index < correlation.shape[-1] - 1) & (np.abs(lag) <= max_lag)
    return np.where(valid, lag, np.nan), np.where(valid, value, np.nan)


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
