"""Cleaning of BOLD fMRI time series: detrending, Butterworth filtering, nuisance regression, censoring.

Everything here works on arrays with time on the last axis, ``(..., T)``, sampled every ``tr_s``
seconds. The central function, :func:`clean_signals`, follows the order recommended by Lindquist et
al. (2019): censored frames are interpolated, data and confounds are detrended and filtered with the
*same* filter, and the confounds are then removed in one least-squares projection, so that the
filtering cannot re-introduce nuisance variance that a separate regression step removed (Hallquist et
al., 2013). Because every step is linear in the data, the whole pipeline is assembled once as a
``(T, T_kept)`` matrix and applied to all voxels with a single matrix product.

References
----------
- Friston K.J. et al. (1996). Movement-related effects in fMRI time-series. Magn Reson Med 35:346-355.
- Satterthwaite T.D. et al. (2013). An improved framework for confound regression and filtering for
  control of motion artifact in the preprocessing of resting-state functional connectivity data.
  NeuroImage 64:240-256. (24 motion terms: parameters, backward differences, and their squares.)
- Power J.D. et al. (2012). Spurious but systematic correlations in functional connectivity MRI
  networks arise from subject motion. NeuroImage 59:2142-2154. (Censoring one frame before and two
  after each frame above threshold.)
- Power J.D. et al. (2014). Methods to detect, characterize, and remove motion artifact in resting
  state fMRI. NeuroImage 84:320-341.
- Hallquist M.N., Hwang K., Luna B. (2013). The nuisance of nuisance regression. NeuroImage 82:208-225.
- Lindquist M.A. et al. (2019). Modular preprocessing pipelines can reintroduce artifacts into fMRI
  data. Hum Brain Mapp 40:2358-2376.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, ndimage, signal
from scipy.interpolate import CubicSpline
from SpatioTemporalCommonLib.errors import InputError

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))
"""Factor turning a Gaussian full width at half maximum into its standard deviation."""

_MOTION_TERM_COUNTS = (6, 12, 24)
_VOXEL_CHUNK = 65536


# --------------------------------------------------------------------------------------------------
# Small helpers shared by the fMRI feature modules
# --------------------------------------------------------------------------------------------------
def varying_series_mask(series: np.ndarray) -> np.ndarray:
    """Mark the time series that carry a signal: all values finite and not all equal.

    Parameters
    ----------
    series : ndarray, shape (..., T)
        Time series, time on the last axis.

    Returns
    -------
    ndarray of bool, shape (...)
        True where the series is finite and not constant. Features of the other series are NaN.
    """
    values = np.asarray(series)
    finite = np.all(np.isfinite(values), axis=-1)
    with np.errstate(invalid="ignore"):
        varying = np.max(values, axis=-1) > np.min(values, axis=-1)
    return finite & varying


def check_tr(tr_s: float) -> float:
    """Validate a repetition time.

    Parameters
    ----------
    tr_s : float
        Repetition time (sampling interval) in seconds.

    Returns
    -------
    float
        The repetition time as a float.
    """
    tr = float(tr_s)
    if not np.isfinite(tr) or tr <= 0.0 or tr > 100.0:
        raise InputError(
            f"repetition time {tr_s} s is outside (0, 100]: give the TR in seconds (e.g. 2.0), "
            "not in milliseconds"
        )
    return tr


def as_series(series: np.ndarray, min_frames: int = 2) -> np.ndarray:
    """Return ``series`` as a float64 array with time on the last axis, checking its length.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    min_frames : int
        Smallest acceptable number of frames.

    Returns
    -------
    ndarray, shape (..., T)
        The series as float64.
    """
    values = np.asarray(series, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] < min_frames:
        n = 0 if values.ndim == 0 else values.shape[-1]
        raise InputError(
            f"the time series has {n} frames but at least {min_frames} are needed: pass an array "
            "with time on the last axis, shape (..., T)"
        )
    return values


def map_varying_series(
    func: Callable[[np.ndarray], np.ndarray | tuple[np.ndarray, ...]],
    series: np.ndarray,
    chunk: int = 8192,
) -> tuple[np.ndarray, ...]:
    """Apply a per-series computation to chunks of the varying series; the other series get NaN.

    Parameters
    ----------
    func : callable
        Maps an (n, T) block of finite, non-constant series to one array or a tuple of arrays, each
        of shape (n, ...).
    series : ndarray, shape (..., T)
        Time series, time on the last axis.
    chunk : int
        Number of series passed to ``func`` at once (bounds the memory of vectorised computations).

    Returns
    -------
    tuple of ndarray
        One array per output of ``func``, of shape ``series.shape[:-1] + (...)``, NaN where the input
        series is constant or not finite (see :func:`varying_series_mask`).
    """
    rows = series.reshape(-1, series.shape[-1])
    usable = np.flatnonzero(varying_series_mask(rows))
    outputs: list[np.ndarray] = []
    for start in range(0, max(usable.size, 1), chunk):
        index = usable[start: start + chunk]
        results = func(rows[index])
        results = results if isinstance(results, tuple) else (results,)
        if not outputs:
            outputs = [np.full((rows.shape[0], *result.shape[1:]), np.nan) for result in results]
        for out, result in zip(outputs, results, strict=True):
            out[index] = result
    return tuple(out.reshape(series.shape[:-1] + out.shape[1:]) for out in outputs)


# --------------------------------------------------------------------------------------------------
# Detrending and filtering
# --------------------------------------------------------------------------------------------------
def polynomial_basis(n_frames: int, order: int) -> np.ndarray:
    """Orthonormal polynomial regressors of degree 0..``order`` over ``n_frames`` frames.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    order : int
        Highest polynomial degree (0: constant only, 1: constant and linear trend, ...).

    Returns
    -------
    ndarray, shape (order + 1, T)
        Rows are orthonormal (Legendre polynomials on [-1, 1], orthonormalised by QR).
    """
    if order < 0 or order >= n_frames:
        raise InputError(
            f"detrending order {order} is invalid for {n_frames} frames: give an order between 0 "
            f"and {n_frames - 1}"
        )
    abscissa = np.linspace(-1.0, 1.0, n_frames)
    vandermonde = np.polynomial.legendre.legvander(abscissa, order)
    basis, _ = np.linalg.qr(vandermonde)
    return basis.T


def detrend_polynomial(series: np.ndarray, order: int = 1) -> np.ndarray:
    """Remove a least-squares polynomial trend from every series.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    order : int
        Polynomial degree; 0 removes the mean, 1 the mean and a linear trend.

    Returns
    -------
    ndarray, shape (..., T)
        Residuals (zero mean), float64.
    """
    values = as_series(series, min_frames=1)
    basis = polynomial_basis(values.shape[-1], order)
    return values - (values @ basis.T) @ basis


def _butterworth_sections(tr_s: float, band: tuple[float | None, float | None], order: int) -> np.ndarray:
    """Second-order sections of a Butterworth high-, low- or band-pass filter for sampling at ``1/TR``."""
    tr = check_tr(tr_s)
    nyquist = 0.5 / tr
    if len(band) != 2:
        raise InputError(f"band {band} must be a pair (low_hz, high_hz); use None for an open edge")
    low, high = band
    if low is None and high is None:
        raise InputError("band (None, None) filters nothing: give a low edge, a high edge or both in Hz")
    if order < 1:
        raise InputError(f"Butterworth order {order} must be at least 1")
    for name, edge in (("low", low), ("high", high)):
        if edge is not None and not 0.0 < edge < nyquist:
            raise InputError(
                f"{name} band edge {edge} Hz is outside (0, {nyquist:g}) Hz, the open interval below the "
                f"Nyquist frequency for TR {tr:g} s: give the edge in Hz, or None to leave that side open"
            )
    if low is not None and high is not None and low >= high:
        raise InputError(f"band ({low}, {high}) Hz is empty: the low edge must be below the high edge")
    if high is None:
        return signal.butter(order, low, btype="highpass", output="sos", fs=1.0 / tr)
    if low is None:
        return signal.butter(order, high, btype="lowpass", output="sos", fs=1.0 / tr)
    return signal.butter(order, (low, high), btype="bandpass", output="sos", fs=1.0 / tr)


def _filter_pad_length(sections: np.ndarray) -> int:
    """Edge padding of the forward-backward filter (the default of ``scipy.signal.sosfiltfilt``)."""
    trailing_zeros = min(int((sections[:, 2] == 0).sum()), int((sections[:, 5] == 0).sum()))
    return 3 * (2 * len(sections) + 1 - trailing_zeros)


def butterworth_filter(
    series: np.ndarray,
    tr_s: float,
    band: tuple[float | None, float | None],
    order: int = 5,
) -> np.ndarray:
    """Zero-phase Butterworth filtering along time.

    The filter is applied forwards and backwards (``scipy.signal.sosfiltfilt``) with odd extension of
    ``3 * (2 * n_sections + 1)`` frames at both ends, so its magnitude response is the square of the
    Butterworth response and its phase is zero.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    tr_s : float
        Repetition time in seconds.
    band : tuple of (float or None, float or None)
        ``(low_hz, high_hz)``: pass band edges in Hz. ``(low, None)`` is a high-pass filter,
        ``(None, high)`` a low-pass filter, ``(low, high)`` a band-pass filter.
    order : int
        Order of the Butterworth prototype per band edge (a band-pass filter has twice this order).

    Returns
    -------
    ndarray, shape (..., T)
        Filtered series, float64.

    Raises
    ------
    InputError
        If a band edge is not strictly between 0 and the Nyquist frequency, or the series is too short
        for the edge padding of the filter.
    """
    values = as_series(series)
    sections = _butterworth_sections(tr_s, band, order)
    pad = _filter_pad_length(sections)
    n_frames = values.shape[-1]
    if n_frames <= pad:
        raise InputError(
            f"the series has {n_frames} frames but a zero-phase Butterworth filter of order {order} "
            f"with band {band} Hz needs more than {pad} frames: give a longer series or lower the filter order"
        )
    return signal.sosfiltfilt(sections, values, axis=-1, padtype="odd", padlen=pad)


# --------------------------------------------------------------------------------------------------
# Nuisance regressors and censoring
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NuisanceDesign:
    """Nuisance regressors with their names.

    Attributes
    ----------
    regressors : ndarray, shape (n_regressors, T)
        One regressor per row, time on the last axis.
    names : tuple of str
        One name per row.
    """

    regressors: np.ndarray
    names: tuple[str, ...]


def motion_confounds(motion: np.ndarray, n_terms: int = 24) -> np.ndarray:
    """Expand six rigid-body motion parameters into 6, 12 or 24 nuisance regressors.

    Parameters
    ----------
    motion : array_like, shape (6, T)
        Rigid-body parameters, one per row (any order and units; FSL ``.par`` files are (T, 6): pass
        ``numpy.loadtxt(path).T``).
    n_terms : {6, 12, 24}
        6: the parameters; 12: plus their backward differences ``p[t] - p[t-1]`` (0 at the first
        frame); 24: plus the squares of those 12 (Friston 1996; Satterthwaite 2013).

    Returns
    -------
    ndarray, shape (n_terms, T)
        Regressors, time on the last axis.
    """
    params = as_series(motion)
    if params.ndim != 2 or params.shape[0] != 6:
        raise InputError(
            f"motion parameters have shape {params.shape} but (6, T) is needed: six rows (three rotations, "
            "three translations), time on the last axis; transpose an FSL .par array"
        )
    if n_terms not in _MOTION_TERM_COUNTS:
        raise InputError(f"{n_terms} motion terms are not available: choose 6, 12 or 24")
    derivatives = np.diff(params, axis=-1, prepend=params[:, :1])
    terms = [params, derivatives][: 1 if n_terms == 6 else 2]
    if n_terms == 24:
        terms += [params**2, derivatives**2]
    return np.concatenate(terms, axis=0)


def mask_mean_signals(data: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """Mean time series inside each of several masks.

    Parameters
    ----------
    data : array_like, shape (k, j, i, T)
        4D image, time on the last axis.
    masks : sequence of array_like of bool, each shape (k, j, i)
        Masks, e.g. white matter, CSF, whole brain (global signal).

    Returns
    -------
    ndarray, shape (n_masks, T)
        One mean signal per mask.
    """
    values = np.asarray(data)
    rows = []
    for index, given in enumerate(masks):
        mask = np.asarray(given, dtype=bool)
        if mask.shape != values.shape[:-1]:
            raise InputError(
                f"mask {index} has shape {mask.shape} but the image grid is {values.shape[:-1]}: resample "
                "the mask onto the fMRI grid"
            )
        if not mask.any():
            raise InputError(f"mask {index} contains no voxel: give a mask that covers the tissue")
        rows.append(values[mask].mean(axis=0, dtype=np.float64))
    return np.stack(rows) if rows else np.empty((0, values.shape[-1]))


def nuisance_design(
    n_frames: int,
    *,
    motion: np.ndarray | None = None,
    n_motion_terms: int = 24,
    data: np.ndarray | None = None,
    white_matter_mask: np.ndarray | None = None,
    csf_mask: np.ndarray | None = None,
    global_mask: np.ndarray | None = None,
) -> NuisanceDesign:
    """Build a nuisance design from motion parameters and tissue mean signals.

    Parameters
    ----------
    n_frames : int
        Number of frames T of the data the design is for.
    motion : array_like, shape (6, T), optional
        Rigid-body motion parameters (see :func:`motion_confounds`).
    n_motion_terms : {6, 12, 24}
        Number of motion regressors built from ``motion``.
    data : array_like, shape (k, j, i, T), optional
        4D image; needed for any of the masks.
    white_matter_mask, csf_mask, global_mask : array_like of bool, shape (k, j, i), optional
        Masks whose mean signals become regressors ``wm``, ``csf`` and ``global``. The global signal
        is included only when ``global_mask`` (e.g. the brain mask) is given.

    Returns
    -------
    NuisanceDesign
        Regressors (n, T) and their names.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    if motion is not None:
        blocks.append(motion_confounds(motion, n_motion_terms))
        names += _motion_term_names(n_motion_terms)
    tissue = [(n, m) for n, m in (("wm", white_matter_mask), ("csf", csf_mask), ("global", global_mask))
              if m is not None]
    if tissue:
        if data is None:
            raise InputError("tissue masks were given without the 4D data: pass data=(k, j, i, T) array")
        blocks.append(mask_mean_signals(data, [mask for _, mask in tissue]))
        names += [name for name, _ in tissue]
    if not blocks:
        return NuisanceDesign(np.empty((0, n_frames)), ())
    regressors = np.concatenate(blocks, axis=0)
    if regressors.shape[-1] != n_frames:
        raise InputError(
            f"nuisance regressors have {regressors.shape[-1]} frames but the data has {n_frames}: give "
            "motion parameters and data from the same run"
        )
    return NuisanceDesign(regressors, tuple(names))


def _motion_term_names(n_terms: int) -> list[str]:
    """Names of the motion regressors in the order of :func:`motion_confounds`."""
    base = [f"motion_{index}" for index in range(6)]
    derivatives = [f"{name}_derivative" for name in base]
    names = base + (derivatives if n_terms >= 12 else [])
    if n_terms == 24:
        names += [f"{name}_squared" for name in base + derivatives]
    return names


def censor_mask(
    framewise_displacement: np.ndarray | None = None,
    dvars: np.ndarray | None = None,
    *,
    fd_threshold_mm: float = 0.5,
    dvars_threshold: float | None = None,
    frames_before: int = 1,
    frames_after: int = 2,
) -> np.ndarray:
    """Frames to censor (scrub) from framewise displacement and/or DVARS.

    Both measures have ``T - 1`` values; value ``i`` describes the change from frame ``i`` to frame
    ``i + 1`` and flags frame ``i + 1``. Each flagged frame is extended by ``frames_before`` earlier
    and ``frames_after`` later frames (1 and 2 in Power et al. 2012).

    Parameters
    ----------
    framewise_displacement : array_like, shape (T - 1,), optional
        Framewise displacement in mm (:func:`FMRIDynamicsLib.quality.framewise_displacement`).
    dvars : array_like, shape (T - 1,), optional
        A DVARS series (any variant; the threshold must be in the same units).
    fd_threshold_mm : float
        Frames with framewise displacement above this value (mm) are flagged.
    dvars_threshold : float or None
        Frames with DVARS above this value are flagged; None ignores DVARS.
    frames_before, frames_after : int
        Number of frames censored before and after each flagged frame.

    Returns
    -------
    ndarray of bool, shape (T,)
        True for frames to remove.
    """
    measures = [(framewise_displacement, fd_threshold_mm)]
    if dvars_threshold is not None:
        measures.append((dvars, dvars_threshold))
    if all(values is None for values, _ in measures):
        raise InputError("give framewise displacement, or DVARS with a dvars_threshold, to censor frames")
    if frames_before < 0 or frames_after < 0:
        raise InputError("frames_before and frames_after must be non-negative frame counts")
    lengths = {np.asarray(values).shape for values, _ in measures if values is not None}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise InputError(
            f"framewise displacement and DVARS must be 1D of the same length T - 1, got shapes {lengths}"
        )
    n_frames = next(iter(lengths))[0] + 1
    flagged = np.zeros(n_frames, dtype=bool)
    for values, threshold in measures:
        if values is not None:
            flagged[1:] |= np.asarray(values, dtype=np.float64) > threshold
    kernel = np.ones(frames_before + frames_after + 1, dtype=bool)
    spread = np.convolve(flagged, kernel)[frames_before: frames_before + n_frames]
    return spread > 0


def interpolate_censored(series: np.ndarray, censor: np.ndarray) -> np.ndarray:
    """Replace censored frames by cubic-spline interpolation from the kept frames.

    The spline (``scipy.interpolate.CubicSpline``, not-a-knot ends) passes through every kept frame.
    Censored frames before the first or after the last kept frame are not extrapolated (a cubic
    diverges there) but take the value of the nearest kept frame.

    Parameters
    ----------
    series : array_like, shape (..., T)
        Time series, time on the last axis.
    censor : array_like of bool, shape (T,)
        True for frames to replace.

    Returns
    -------
    ndarray, shape (..., T)
        Series with the censored frames replaced, float64.
    """
    values = as_series(series, min_frames=1).copy()
    censor = _check_censor(censor, values.shape[-1])
    kept = np.flatnonzero(~censor)
    if not censor.any():
        return values
    frames = np.arange(values.shape[-1])
    inside = censor & (frames > kept[0]) & (frames < kept[-1])
    if kept.size >= 2 and inside.any():
        spline = CubicSpline(kept, values[..., kept], axis=-1)
        values[..., inside] = spline(frames[inside])
    values[..., frames < kept[0]] = values[..., kept[:1]]
    values[..., frames > kept[-1]] = values[..., kept[-1:]]
    return values


def _check_censor(censor: np.ndarray, n_frames: int) -> np.ndarray:
    """Validate a censoring vector and return it as bool."""
    censor = np.asarray(censor)
    if censor.shape != (n_frames,) or censor.dtype != bool:
        raise InputError(
            f"censor must be a boolean vector of {n_frames} frames (True = remove), got dtype "
            f"{censor.dtype} and shape {censor.shape}"
        )
    if censor.sum() > n_frames - 2:
        raise InputError(
            f"{int(censor.sum())} of {n_frames} frames are censored: at least two frames must be kept; "
            "relax the censoring thresholds"
        )
    return censor


# --------------------------------------------------------------------------------------------------
# The cleaning pipeline
# --------------------------------------------------------------------------------------------------
def _orthonormal_confound_basis(confounds: np.ndarray) -> np.ndarray:
    """Orthonormal basis (n_kept, rank) of the centred confound columns (pivoted QR, rank-revealing)."""
    centred = confounds - confounds.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    centred = centred[:, norms > 0] / norms[norms > 0]
    if centred.shape[1] == 0:
        return centred
    q, r, _ = linalg.qr(centred, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r))
    tolerance = max(centred.shape) * np.finfo(np.float64).eps * diagonal[0]
    return q[:, diagonal > tolerance]


def _preprocess(
    rows: np.ndarray,
    tr_s: float,
    censor: np.ndarray | None,
    detrend_order: int | None,
    band: tuple[float | None, float | None] | None,
    filter_order: int,
) -> np.ndarray:
    """Interpolate censored frames, detrend and filter series (the steps shared by data and confounds)."""
    if censor is not None:
        rows = interpolate_censored(rows, censor)
    if detrend_order is not None:
        rows = detrend_polynomial(rows, detrend_order)
    if band is not None:
        rows = butterworth_filter(rows, tr_s, band, filter_order)
    return rows


def cleaning_operator(
    n_frames: int,
    tr_s: float,
    *,
    confounds: np.ndarray | None = None,
    detrend_order: int | None = 1,
    band: tuple[float | None, float | None] | None = None,
    censor: np.ndarray | None = None,
    filter_order: int = 5,
) -> np.ndarray:
    """Matrix ``M`` such that ``clean_signals(y) == y @ M`` for every series ``y`` of length T.

    Interpolation, detrending, filtering and the confound projection are all linear in the data, so
    the pipeline of :func:`clean_signals` is applied once to the T unit series and the result reused
    for every voxel.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    tr_s, confounds, detrend_order, band, censor, filter_order
        As in :func:`clean_signals`.

    Returns
    -------
    ndarray, shape (T, T_kept)
        The cleaning operator; ``T_kept`` is the number of frames not censored.
    """
    tr = check_tr(tr_s)
    if censor is not None:
        censor = _check_censor(censor, n_frames)
    kept = np.ones(n_frames, dtype=bool) if censor is None else ~censor
    operator = _preprocess(np.eye(n_frames), tr, censor, detrend_order, band, filter_order)[:, kept]
    if confounds is None:
        return operator
    confounds = as_series(confounds)
    confounds = confounds.reshape(1, -1) if confounds.ndim == 1 else confounds
    if confounds.ndim != 2 or confounds.shape[1] != n_frames:
        raise InputError(
            f"confounds have shape {confounds.shape} but (n_confounds, {n_frames}) is needed: one "
            "regressor per row, time on the last axis"
        )
    if not np.all(np.isfinite(confounds)):
        raise InputError("confounds contain NaN or infinite values: fill or drop those regressors")
    processed = _preprocess(confounds, tr, censor, detrend_order, band, filter_order)[:, kept]
    basis = _orthonormal_confound_basis(processed.T)
    return operator - (operator @ basis) @ basis.T


def clean_signals(
    series: np.ndarray,
    tr_s: float,
    *,
    confounds: np.ndarray | None = None,
    detrend_order: int | None = 1,
    band: tuple[float | None, float | None] | None = None,
    censor: np.ndarray | None = None,
    filter_order: int = 5,
) -> np.ndarray:
    """Detrend, filter and regress confounds out of BOLD time series in one consistent pipeline.

    Steps, applied identically to the data and to the confounds:

    1. censored frames are replaced by cubic-spline interpolation from the kept frames
       (:func:`interpolate_censored`), so that the filter sees no gaps;
    2. a polynomial trend of degree ``detrend_order`` is removed (least squares over all frames);
    3. the zero-phase Butterworth filter ``band`` is applied (:func:`butterworth_filter`);
    4. the censored frames are dropped and the confounds, centred over the kept frames, are removed
       from the data by one least-squares projection fitted on the kept frames only (the
       interpolated frames never influence the fit).

    The result matches ``nilearn.signal.clean`` with ``detrend=True`` (``detrend_order=1``),
    ``filter="butterworth"``, ``standardize=False`` and ``standardize_confounds=True``.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD time series, time on the last axis.
    tr_s : float
        Repetition time in seconds.
    confounds : array_like, shape (n_confounds, T) or (T,), optional
        Nuisance regressors, time on the last axis (e.g. :func:`nuisance_design`).
    detrend_order : int or None
        Degree of the polynomial trend removed before filtering; None skips detrending.
    band : tuple of (float or None, float or None), optional
        Pass band ``(low_hz, high_hz)`` of the Butterworth filter (see :func:`butterworth_filter`);
        None skips filtering.
    censor : array_like of bool, shape (T,), optional
        True for frames to remove (e.g. :func:`censor_mask`).
    filter_order : int
        Butterworth order per band edge.

    Returns
    -------
    ndarray, shape (..., T_kept)
        Cleaned series, float64, without the censored frames. Constant input series come out as exact
        zeros; series containing NaN or infinity come out as NaN.
    """
    values = as_series(series)
    operator = cleaning_operator(
        values.shape[-1], tr_s, confounds=confounds, detrend_order=detrend_order, band=band,
        censor=censor, filter_order=filter_order,
    )
    rows = values.reshape(-1, values.shape[-1])
    cleaned = np.empty((rows.shape[0], operator.shape[1]))
    for start in range(0, rows.shape[0], _VOXEL_CHUNK):
        stop = start + _VOXEL_CHUNK
        cleaned[start:stop] = rows[start:stop] @ operator
    finite = np.all(np.isfinite(rows), axis=-1)
    cleaned[~finite] = np.nan
    cleaned[finite & ~varying_series_mask(rows)] = 0.0
    return cleaned.reshape((*values.shape[:-1], operator.shape[1]))


# --------------------------------------------------------------------------------------------------
# Spatial smoothing
# --------------------------------------------------------------------------------------------------
def smooth_spatial(
    data: np.ndarray,
    fwhm_mm: float,
    spacing_mm: tuple[float, float, float],
) -> np.ndarray:
    """Isotropic Gaussian smoothing in physical units of a 3D volume or of every frame of a 4D image.

    Parameters
    ----------
    data : array_like, shape (k, j, i) or (k, j, i, T)
        Volume or 4D image with time on the last axis (time is not smoothed).
    fwhm_mm : float
        Full width at half maximum of the Gaussian kernel in mm (0 returns a copy).
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm, in the array's axis order.

    Returns
    -------
    ndarray
        Smoothed data, float64, same shape. Edges are handled by repeating the border voxel.
    """
    values = np.asarray(data, dtype=np.float64)
    if values.ndim not in (3, 4):
        raise InputError(f"data has {values.ndim} dimensions: give a (k, j, i) or (k, j, i, T) array")
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise InputError(f"voxel spacing {spacing_mm} must be three positive values (sk, sj, si) in mm")
    if not np.isfinite(fwhm_mm) or fwhm_mm < 0:
        raise InputError(f"FWHM {fwhm_mm} mm must be a finite non-negative value in mm")
    sigma = list(fwhm_mm * FWHM_TO_SIGMA / spacing) + [0.0] * (values.ndim - 3)
    return ndimage.gaussian_filter(values, sigma=sigma, mode="nearest")
