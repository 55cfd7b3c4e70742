"""Semi-quantitative (model-free) descriptors of DCE-MRI enhancement curves.

The maps describe the shape of each curve without a pharmacokinetic model. They work on
concentration curves (mM) or on signal curves; the "curve units" below are mM for concentration.
Every definition is relative to the voxel's bolus arrival time ``ta`` (estimated per voxel with the
Cheong et al. 2003 fit of :mod:`DCEKineticsLib.bolus_arrival` unless given) and uses the enhancement
``E(t) = C(t) - C0``, where ``C0`` is the mean over the baseline frames. Values between frames are
interpolated linearly. With ``te = ta + early_phase_s`` (end of the early phase) and ``tN`` the last
frame:

``TTP`` (s)
    Time from arrival to the curve maximum.
``MaxEnhancement`` (curve units)
    Maximum of ``E``.
``RelativeEnhancement`` (fraction, 1 = 100 %)
    ``max E / C0``; meaningful for signal curves, NaN where ``C0 <= 0``.
``InitialRate`` (curve units per s)
    Mean upslope over the early phase, ``(E(te) - E(ta)) / early_phase_s``.
``MaxSlope`` (curve units per s)
    Steepest rise between consecutive frames.
``WashoutSlope`` (% of the early peak per minute)
    Least-squares slope of ``E`` over the frames after ``te``, divided by the early peak
    ``Epeak = max E`` over ``[ta, te]``, times 100 and 60; negative values mean wash-out.
``iAUC<w>`` (curve units x s; mM s for concentration)
    Initial area under ``E`` from ``ta`` to ``ta + w`` for each window ``w`` in ``iauc_windows_s``
    (keys follow the windows, e.g. ``iAUC60`` and ``iAUC90``; Evelhoch 1999).
``SER`` (ratio)
    Signal enhancement ratio ``(S1 - S0) / (S2 - S0) = E(te) / E(tN)`` with ``S1`` at the end of the
    early phase and ``S2`` at the last frame (Hylton et al. take the early and late images about
    2.5 and 7.5 min after injection); NaN where ``E(tN) <= 0``.
``CurveType`` (1, 2 or 3)
    The relative late change ``r = (E(tN) - Epeak) / Epeak`` classifies the curve as 1 persistent
    (``r > +threshold``), 2 plateau, or 3 wash-out (``r < -threshold``); threshold 10 % by default
    (Kuhl et al. 1999).

A map is NaN where it is undefined: no arrival time, a non-finite sample, a window or early phase
that ends after the last frame, fewer than two frames after the early phase (``WashoutSlope``), or a
non-positive denominator.

References: Kuhl CK et al. Dynamic breast MR imaging: are signal intensity time course data useful
for differential diagnosis of enhancing lesions? Radiology 1999;211:101-110. Hylton NM et al.
Locally advanced breast cancer: MR imaging for prediction of response to neoadjuvant chemotherapy.
Radiology 2012;263:663-672 (signal enhancement ratio). Evelhoch JL. Key factors in the acquisition
of contrast kinetic data for oncology. J Magn Reson Imaging 1999;10:254-259 (initial area under the
curve). Cheong LH, Koh TS, Hou Z. Phys Med Biol 2003;48:N83-N88 (bolus arrival).
"""

from __future__ import annotations

import numpy as np
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.series import validate_frame_times

from .bolus_arrival import bolus_arrival_time
from .signal_model import baseline_signal

PERSISTENT, PLATEAU, WASHOUT = 1, 2, 3
"""Codes of the ``CurveType`` map."""


def semiquantitative_maps(
    curves: np.ndarray,
    times_s: np.ndarray,
    baseline_frames: int | slice | np.ndarray | None,
    *,
    early_phase_s: float = 90.0,
    iauc_windows_s: tuple[float, ...] = (60.0, 90.0),
    arrival_s: np.ndarray | float | None = None,
    curve_type_threshold: float = 0.10,
) -> dict[str, np.ndarray]:
    """Compute the semi-quantitative maps of DCE curves (definitions in the module notes).

    Parameters
    ----------
    curves : array_like, shape (..., T)
        Concentration (mM) or signal curves, time on the last axis.
    times_s : array_like, shape (T,)
        Frame times in seconds, strictly increasing.
    baseline_frames : int, slice, bool array or None
        Baseline frames, as in :func:`DCEKineticsLib.signal_model.baseline_signal`.
    early_phase_s : float, optional
        Duration of the early (initial) phase after the bolus arrival, in seconds.
    iauc_windows_s : tuple of float, optional
        Integration windows of the initial areas under the curve, in seconds after arrival.
    arrival_s : float or array_like, shape (...), optional
        Bolus arrival time(s) in seconds; estimated per voxel when omitted.
    curve_type_threshold : float, optional
        Relative late change separating persistent, plateau and wash-out curves (0.10 = 10 %).

    Returns
    -------
    dict of str to numpy.ndarray
        Maps of shape (...) under the keys ``TTP``, ``MaxEnhancement``, ``RelativeEnhancement``,
        ``InitialRate``, ``MaxSlope``, ``WashoutSlope``, one ``iAUC<w>`` per window, ``SER`` and
        ``CurveType``; NaN where undefined.

    Raises
    ------
    InputError
        If the times do not match the curves, the baseline selection is invalid, a duration or the
        threshold is not positive, or the arrival times do not fit the curves.
    """
    curves = np.asarray(curves, dtype=float)
    if curves.ndim == 0:
        raise InputError("curves is a single number: give curves with time on the last axis")
    times = validate_frame_times(times_s, curves.shape[-1])
    _check_positive(early_phase_s, "early_phase_s", "the duration of the early phase in seconds, e.g. 90")
    for window in iauc_windows_s:
        _check_positive(window, "iAUC window", "integration windows in seconds, e.g. (60, 90)")
    _check_positive(curve_type_threshold, "curve_type_threshold", "a fraction such as 0.10")

    voxel_shape = curves.shape[:-1]
    arrival = _arrival_times(curves, times, arrival_s)
    baseline = baseline_signal(curves, baseline_frames).reshape(-1)
    enhancement = curves.reshape(-1, times.size) - baseline[:, np.newaxis]
    arrival = arrival.reshape(-1)
    arrival = np.where(np.all(np.isfinite(enhancement), axis=1), arrival, np.nan)

    early_end = arrival + early_phase_s
    at_arrival = _value_at(enhancement, times, arrival)
    at_early_end = _value_at(enhancement, times, early_end)
    at_last = np.where(np.isfinite(arrival), enhancement[:, -1], np.nan)
    early_peak = _early_peak(enhancement, times, arrival, early_end, at_arrival, at_early_end)
    with np.errstate(divide="ignore", invalid="ignore"):
        late_change = (at_last - early_peak) / early_peak
        maps = {
            "TTP": np.where(np.isfinite(arrival), times[np.argmax(enhancement, axis=1)] - arrival, np.nan),
            "MaxEnhancement": np.max(enhancement, axis=1),
            "RelativeEnhancement": np.where(baseline > 0, np.max(enhancement, axis=1) / baseline, np.nan),
            "InitialRate": (at_early_end - at_arrival) / early_phase_s,
            "MaxSlope": np.max(np.diff(enhancement, axis=1) / np.diff(times), axis=1),
            "WashoutSlope": np.where(
                early_peak > 0, 100.0 * 60.0 * _late_slope(enhancement, times, early_end) / early_peak, np.nan
            ),
        }
        for window in iauc_windows_s:
            maps[f"iAUC{window:g}"] = _area_between(enhancement, times, arrival, arrival + window)
        maps["SER"] = np.where(at_last > 0, at_early_end / at_last, np.nan)
    maps["CurveType"] = _curve_type(late_change, early_peak, curve_type_threshold)
    return {name: values.reshape(voxel_shape) for name, values in maps.items()}


def _check_positive(value: float, name: str, expected: str) -> None:
    """Raise InputError unless ``value`` is a finite positive number."""
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name}={value} is not positive: give {expected}")


def _arrival_times(curves: np.ndarray, times: np.ndarray, arrival_s: np.ndarray | float | None) -> np.ndarray:
    """Arrival time per voxel: given (broadcast to the voxel shape) or estimated."""
    if arrival_s is None:
        return bolus_arrival_time(curves, times)
    arrival = np.asarray(arrival_s, dtype=float)
    try:
        return np.broadcast_to(arrival, curves.shape[:-1]).copy()
    except ValueError:
        raise InputError(
            f"arrival times of shape {arrival.shape} do not fit curves with voxel shape "
            f"{curves.shape[:-1]}: give one arrival time (s) or a map without the time axis"
        ) from None


def _segment_index(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index ``k`` of the sampling interval ``[t_k, t_k+1]`` holding each query time (clipped)."""
    return np.clip(np.searchsorted(times, np.nan_to_num(query), side="right") - 1, 0, times.size - 2)


def _value_at(curves: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Linear interpolation of each curve (N, T) at its own query time (N,); NaN outside the series."""
    index = _segment_index(times, query)
    rows = np.arange(curves.shape[0])
    start, stop = times[index], times[index + 1]
    weight = (query - start) / (stop - start)
    value = curves[rows, index] + weight * (curves[rows, index + 1] - curves[rows, index])
    inside = (query >= times[0]) & (query <= times[-1])
    return np.where(inside, value, np.nan)


def _area_between(curves: np.ndarray, times: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Integral (trapezoidal, linear interpolation) of each curve from ``start`` to ``stop`` (N,)."""
    steps = np.diff(times)
    cumulative = np.concatenate(
        [np.zeros((curves.shape[0], 1)), np.cumsum(0.5 * (curves[:, 1:] + curves[:, :-1]) * steps, axis=1)],
        axis=1,
    )
    rows = np.arange(curves.shape[0])

    def area_up_to(limit: np.ndarray) -> np.ndarray:
        index = _segment_index(times, limit)
        partial = 0.5 * (limit - times[index]) * (curves[rows, index] + _value_at(curves, times, limit))
        return cumulative[rows, index] + partial

    return area_up_to(stop) - area_up_to(start)


def _early_peak(
    curves: np.ndarray,
    times: np.ndarray,
    arrival: np.ndarray,
    early_end: np.ndarray,
    at_arrival: np.ndarray,
    at_early_end: np.ndarray,
) -> np.ndarray:
    """Maximum of each curve over ``[arrival, early_end]``, interpolated end points included."""
    in_phase = (times >= arrival[:, np.newaxis]) & (times <= early_end[:, np.newaxis])
    sampled = np.max(np.where(in_phase, curves, -np.inf), axis=1)
    return np.maximum(sampled, np.maximum(at_arrival, at_early_end))


def _late_slope(curves: np.ndarray, times: np.ndarray, early_end: np.ndarray) -> np.ndarray:
    """Least-squares slope (curve units per s) over the frames after ``early_end``; NaN if < 2 frames."""
    weights = (times > early_end[:, np.newaxis]).astype(float)
    count = np.sum(weights, axis=1)
    mean_time = np.sum(weights * times, axis=1) / count
    mean_value = np.sum(weights * curves, axis=1) / count
    centred_time = (times - mean_time[:, np.newaxis]) * weights
    slope = np.sum(centred_time * (curves - mean_value[:, np.newaxis]), axis=1) / np.sum(
        centred_time**2, axis=1
    )
    return np.where(count >= 2, slope, np.nan)


def _curve_type(late_change: np.ndarray, early_peak: np.ndarray, threshold: float) -> np.ndarray:
    """Curve type 1/2/3 from the relative late change; NaN where the early peak is not positive."""
    curve_type = np.where(
        late_change > threshold, PERSISTENT, np.where(late_change < -threshold, WASHOUT, PLATEAU)
    ).astype(float)
    return np.where((early_peak > 0) & np.isfinite(late_change), curve_type, np.nan)
