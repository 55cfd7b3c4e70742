"""Spoiled gradient-echo signal model: conversion between DCE-MRI signal and contrast concentration.

The steady-state signal of a spoiled gradient-echo (SPGR / FLASH) sequence is

    S = M0 sin(a) (1 - E1) / (1 - cos(a) E1),      E1 = exp(-TR R1),

and the contrast agent shortens T1 linearly with its concentration C (fast water exchange),

    R1(t) = R10 + r1 C(t),      R10 = 1 / T10.

Given the pre-contrast T1 and the mean signal of the baseline (pre-contrast) frames, ``M0`` follows
from the first equation; each post-contrast signal is then inverted exactly for ``E1``:

    y = S / (M0 sin a),      E1 = (1 - y) / (1 - y cos a),      C = (-ln(E1) / TR - R10) / r1.

The inversion exists only for ``0 < S < M0 sin(a)``: a signal at or above ``M0 sin(a)`` would need an
infinite R1, a signal at or below zero a non-positive R1. Such samples, and whole curves whose baseline
or T1 is unusable, become NaN and are reported with a :class:`ConversionFailure` code per voxel.

References: Haase A. Snapshot FLASH MRI. Magn Reson Med 1990;13:77-89 (SPGR steady-state signal);
Tofts PS. Modeling tracer kinetics in dynamic Gd-DTPA MR imaging. J Magn Reson Imaging 1997;7:91-101
(linear relaxivity and signal-to-concentration conversion).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.series import validate_frame_times

from .bolus_arrival import bolus_arrival_time

DEFAULT_RELAXIVITY_PER_MM_PER_S = 4.5
"""Longitudinal relaxivity r1 used when none is given (/mM/s), typical of gadolinium chelates."""


class ConversionFailure(enum.IntFlag):
    """Why (part of) a voxel's curve could not be converted to concentration.

    The codes are bit flags: a voxel's code is the bitwise OR of every reason met by its samples,
    and 0 means the whole curve was converted.
    """

    NONE = 0
    BASELINE_NOT_POSITIVE = 1
    """Mean baseline signal is zero, negative, NaN, or there is no baseline frame: curve all NaN."""
    T1_UNKNOWN = 2
    """Pre-contrast T1 of the voxel is NaN (for example a failed T1 fit): curve all NaN."""
    SIGNAL_NOT_FINITE = 4
    """Some samples are NaN or infinite: those samples are NaN."""
    SIGNAL_NOT_POSITIVE = 8
    """Some samples are <= 0, which would need R1 <= 0: those samples are NaN."""
    SIGNAL_ABOVE_LIMIT = 16
    """Some samples are >= M0 sin(a), which would need an infinite R1: those samples are NaN."""


class ConcentrationResult(NamedTuple):
    """Concentration curves and the per-voxel failure codes of the conversion."""

    concentration_mM: np.ndarray
    """Contrast-agent concentration in mM, shape (..., T); NaN where not convertible."""
    failure: np.ndarray
    """:class:`ConversionFailure` flags per voxel (uint8), shape (...); 0 where fully converted."""


def check_flip_angle(flip_angle_deg: np.ndarray | float) -> np.ndarray:
    """Validate flip angles in degrees and return them in radians.

    Parameters
    ----------
    flip_angle_deg : float or array_like
        Excitation flip angle(s) in degrees.

    Returns
    -------
    numpy.ndarray
        The flip angle(s) in radians.

    Raises
    ------
    InputError
        If an angle is not finite or lies outside (0, 90] degrees.
    """
    angles = np.asarray(flip_angle_deg, dtype=float)
    bad = ~(np.isfinite(angles) & (angles > 0) & (angles <= 90))
    if np.any(bad):
        value = angles[bad].flat[0]
        raise InputError(
            f"flip angle {value:g} deg is outside (0, 90]: give the excitation flip angle in degrees"
        )
    return np.deg2rad(angles)


def check_repetition_time(tr_ms: float) -> float:
    """Validate a repetition time in milliseconds and return it in seconds.

    Raises
    ------
    InputError
        If TR is not a finite positive number.
    """
    tr = float(tr_ms)
    if not (np.isfinite(tr) and tr > 0):
        raise InputError(f"TR {tr_ms} ms is not positive: give the repetition time in milliseconds, e.g. 4.5")
    return tr / 1000.0


def spgr_signal(
    m0: np.ndarray | float,
    r1_per_s: np.ndarray | float,
    flip_angle_deg: np.ndarray | float,
    tr_ms: float,
) -> np.ndarray:
    """Steady-state spoiled gradient-echo signal.

    Parameters
    ----------
    m0 : float or array_like
        Equilibrium magnetisation (signal units, includes receiver gain and proton density).
    r1_per_s : float or array_like
        Longitudinal relaxation rate R1 in 1/s.
    flip_angle_deg : float or array_like
        Flip angle in degrees, in (0, 90].
    tr_ms : float
        Repetition time in milliseconds.

    Returns
    -------
    numpy.ndarray
        ``M0 sin(a) (1 - E1) / (1 - cos(a) E1)`` with ``E1 = exp(-TR R1)``, broadcast over the inputs.
    """
    angle = check_flip_angle(flip_angle_deg)
    e1 = np.exp(-check_repetition_time(tr_ms) * np.asarray(r1_per_s, dtype=float))
    return np.asarray(m0, dtype=float) * np.sin(angle) * (1.0 - e1) / (1.0 - np.cos(angle) * e1)


def baseline_signal(
    signal: np.ndarray,
    baseline_frames: int | slice | np.ndarray | None,
    *,
    times_s: np.ndarray | None = None,
) -> np.ndarray:
    """Mean of each curve over its baseline (pre-contrast) frames.

    Parameters
    ----------
    signal : array_like, shape (..., T)
        Curves with time on the last axis.
    baseline_frames : int, slice, bool array or None
        Which frames are baseline: an int ``n`` means the first ``n`` frames; a slice selects frames
        of the time axis (e.g. ``slice(1, 5)`` to skip a first frame that is not in steady state); a
        boolean array broadcastable to ``signal.shape`` selects frames per voxel (see
        :func:`DCEKineticsLib.bolus_arrival.baseline_frames_from_arrival`); ``None`` takes the frames
        before the bolus arrival found on the mean curve of all voxels.
    times_s : array_like, shape (T,), optional
        Frame times in seconds, used only when ``baseline_frames`` is None; without them the frames
        are assumed equally spaced.

    Returns
    -------
    numpy.ndarray, shape (...)
        Baseline mean per voxel; NaN where a voxel has no baseline frame.

    Raises
    ------
    InputError
        If the frame selection is empty, out of range or of the wrong shape, or if no bolus arrival
        can be found when ``baseline_frames`` is None.
    """
    signal = np.asarray(signal, dtype=float)
    if signal.ndim == 0:
        raise InputError("signal is a single number: give curves with time on the last axis")
    selection = _baseline_selection(signal, baseline_frames, times_s)
    counts = np.sum(selection, axis=-1)
    total = np.sum(np.where(selection, signal, 0.0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, total / counts, np.nan)


def concentration_from_signal(
    signal: np.ndarray,
    t1_pre_ms: np.ndarray | float,
    flip_angle_deg: float,
    tr_ms: float,
    r1_per_mM_per_s: float = DEFAULT_RELAXIVITY_PER_MM_PER_S,
    baseline_frames: int | slice | np.ndarray | None = None,
    *,
    times_s: np.ndarray | None = None,
) -> ConcentrationResult:
    """Convert spoiled gradient-echo DCE signal to contrast-agent concentration.

    Parameters
    ----------
    signal : array_like, shape (..., T)
        Signal curves (any positive scale), time on the last axis.
    t1_pre_ms : float or array_like, shape (...)
        Pre-contrast T1 in milliseconds, one value or a map; NaN marks voxels without a T1.
    flip_angle_deg : float
        Excitation flip angle in degrees, in (0, 90].
    tr_ms : float
        Repetition time in milliseconds.
    r1_per_mM_per_s : float, optional
        Contrast-agent longitudinal relaxivity in 1/(mM s).
    baseline_frames : int, slice, bool array or None, optional
        Baseline frames, as in :func:`baseline_signal`.
    times_s : array_like, shape (T,), optional
        Frame times in seconds, used only to find the baseline when ``baseline_frames`` is None.

    Returns
    -------
    ConcentrationResult
        ``concentration_mM`` of shape (..., T) (NaN where not convertible) and ``failure``, the
        :class:`ConversionFailure` flags per voxel.

    Raises
    ------
    InputError
        If T1 <= 0, the flip angle is outside (0, 90], TR or the relaxivity is not positive, the T1
        map does not match the signal, or the baseline selection is invalid.
    """
    signal = np.asarray(signal, dtype=float)
    angle = check_flip_angle(flip_angle_deg)
    tr_s = check_repetition_time(tr_ms)
    relaxivity = _check_relaxivity(r1_per_mM_per_s)
    t1_ms = _check_t1_map(t1_pre_ms, signal.shape[:-1] if signal.ndim else ())
    baseline = baseline_signal(signal, baseline_frames, times_s=times_s)

    r10 = 1000.0 / t1_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        m0_sin = baseline / spgr_signal(1.0, r10, flip_angle_deg, tr_ms) * np.sin(angle)
        ratio = signal / m0_sin[..., np.newaxis]
        e1 = (1.0 - ratio) / (1.0 - ratio * np.cos(angle))
        concentration = (-np.log(e1) / tr_s - r10[..., np.newaxis]) / relaxivity

    bad_baseline = ~(baseline > 0)
    unknown_t1 = np.isnan(t1_ms)
    not_finite = ~np.isfinite(signal)
    not_positive = signal <= 0
    above_limit = ratio >= 1
    unusable_curve = (bad_baseline | unknown_t1)[..., np.newaxis]
    concentration = np.where(unusable_curve | not_finite | not_positive | above_limit, np.nan, concentration)

    failure = (
        bad_baseline * ConversionFailure.BASELINE_NOT_POSITIVE
        | unknown_t1 * ConversionFailure.T1_UNKNOWN
        | np.any(not_finite, axis=-1) * ConversionFailure.SIGNAL_NOT_FINITE
        | np.any(not_positive, axis=-1) * ConversionFailure.SIGNAL_NOT_POSITIVE
        | np.any(above_limit & ~unusable_curve, axis=-1) * ConversionFailure.SIGNAL_ABOVE_LIMIT
    )
    return ConcentrationResult(concentration, np.asarray(failure, dtype=np.uint8))


def signal_from_concentration(
    concentration_mM: np.ndarray,
    t1_pre_ms: np.ndarray | float,
    flip_angle_deg: float,
    tr_ms: float,
    m0: np.ndarray | float = 1.0,
    r1_per_mM_per_s: float = DEFAULT_RELAXIVITY_PER_MM_PER_S,
) -> np.ndarray:
    """Spoiled gradient-echo signal produced by given concentration curves (forward model).

    Parameters
    ----------
    concentration_mM : array_like, shape (..., T)
        Contrast-agent concentration in mM, time on the last axis.
    t1_pre_ms : float or array_like, shape (...)
        Pre-contrast T1 in milliseconds.
    flip_angle_deg : float
        Excitation flip angle in degrees, in (0, 90].
    tr_ms : float
        Repetition time in milliseconds.
    m0 : float or array_like, shape (...), optional
        Equilibrium magnetisation (signal scale) per voxel.
    r1_per_mM_per_s : float, optional
        Contrast-agent longitudinal relaxivity in 1/(mM s).

    Returns
    -------
    numpy.ndarray, shape (..., T)
        Signal in the units of ``m0``.

    Raises
    ------
    InputError
        For the same invalid acquisition parameters as :func:`concentration_from_signal`.
    """
    concentration = np.asarray(concentration_mM, dtype=float)
    relaxivity = _check_relaxivity(r1_per_mM_per_s)
    t1_ms = _check_t1_map(t1_pre_ms, concentration.shape[:-1] if concentration.ndim else ())
    r1 = 1000.0 / t1_ms[..., np.newaxis] + relaxivity * concentration
    return spgr_signal(np.asarray(m0, dtype=float)[..., np.newaxis], r1, flip_angle_deg, tr_ms)


def _check_relaxivity(r1_per_mM_per_s: float) -> float:
    """Validate the relaxivity (1/(mM s))."""
    relaxivity = float(r1_per_mM_per_s)
    if not (np.isfinite(relaxivity) and relaxivity > 0):
        raise InputError(
            f"relaxivity {r1_per_mM_per_s} /mM/s is not positive: give the contrast agent's r1 in "
            f"1/(mM s), e.g. {DEFAULT_RELAXIVITY_PER_MM_PER_S}"
        )
    return relaxivity


def _check_t1_map(t1_pre_ms: np.ndarray | float, voxel_shape: tuple[int, ...]) -> np.ndarray:
    """Validate pre-contrast T1 (ms) and broadcast it to the voxel shape; NaN entries are kept."""
    t1 = np.asarray(t1_pre_ms, dtype=float)
    if np.any(t1 <= 0) or np.any(np.isinf(t1)):
        value = t1[(t1 <= 0) | np.isinf(t1)].flat[0]
        raise InputError(
            f"pre-contrast T1 {value:g} ms is not a positive finite value: give T1 in milliseconds "
            "(e.g. 1400), and mark voxels without a T1 with NaN"
        )
    try:
        return np.broadcast_to(t1, voxel_shape)
    except ValueError:
        raise InputError(
            f"the T1 map has shape {t1.shape} but the curves have voxel shape {voxel_shape}: give one "
            "T1 value, or a map with the curves' shape without the time axis"
        ) from None


def _baseline_selection(
    signal: np.ndarray, baseline_frames: int | slice | np.ndarray | None, times_s: np.ndarray | None
) -> np.ndarray:
    """Boolean selection of baseline frames, broadcastable to ``signal.shape``."""
    n_frames = signal.shape[-1]
    frame_index = np.arange(n_frames)
    if baseline_frames is None:
        return frame_index < _frames_before_mean_arrival(signal, times_s)
    if isinstance(baseline_frames, slice):
        selected = frame_index[baseline_frames]
        if selected.size == 0:
            raise InputError(
                f"baseline_frames={baseline_frames} selects no frame of {n_frames}: give a slice of "
                "the pre-contrast frames, e.g. slice(0, 5)"
            )
        return np.isin(frame_index, selected)
    if isinstance(baseline_frames, (int, np.integer)) and not isinstance(baseline_frames, bool):
        if not 1 <= baseline_frames <= n_frames:
            raise InputError(
                f"baseline_frames={baseline_frames} is not between 1 and the {n_frames} frames: give "
                "the number of pre-contrast frames at the start of the series"
            )
        return frame_index < baseline_frames
    mask = np.asarray(baseline_frames)
    if mask.dtype != bool:
        raise InputError(
            f"baseline_frames of type {type(baseline_frames).__name__} is not understood: give a number "
            "of frames, a slice, a boolean mask (..., T) or None"
        )
    try:
        np.broadcast_shapes(mask.shape, signal.shape)
    except ValueError:
        raise InputError(
            f"the baseline mask has shape {mask.shape}, which does not fit the signal shape "
            f"{signal.shape}: give a boolean mask with the signal's shape (time last)"
        ) from None
    return mask


def _frames_before_mean_arrival(signal: np.ndarray, times_s: np.ndarray | None) -> int:
    """Number of frames before the bolus arrival on the mean curve of all voxels."""
    n_frames = signal.shape[-1]
    times = np.arange(n_frames, dtype=float) if times_s is None else validate_frame_times(times_s, n_frames)
    flat = signal.reshape(-1, n_frames)
    usable = np.all(np.isfinite(flat), axis=1)
    if not np.any(usable):
        raise InputError(
            "no curve is free of NaN, so the baseline cannot be found automatically: give "
            "baseline_frames explicitly"
        )
    arrival = bolus_arrival_time(np.mean(flat[usable], axis=0), times)
    n_baseline = int(np.sum(times < arrival)) if np.isfinite(arrival) else 0
    if n_baseline == 0:
        raise InputError(
            "no bolus arrival was found on the mean curve, so the baseline cannot be chosen "
            "automatically: give baseline_frames (the number of pre-contrast frames)"
        )
    return n_baseline
