"""T1 mapping from variable-flip-angle (VFA) spoiled gradient-echo acquisitions.

Signals acquired with the same TR and several flip angles ``a_i`` follow the SPGR equation
``S_i = M0 sin(a_i) (1 - E1) / (1 - cos(a_i) E1)`` with ``E1 = exp(-TR / T1)``.

``method="linear"`` (DESPOT1; Fram et al. 1987, Deoni et al. 2003) uses the rearrangement

    S_i / sin(a_i) = E1 * S_i / tan(a_i) + M0 (1 - E1),

a straight line whose slope is ``E1`` and whose intercept gives ``M0``; every voxel is fitted in
closed form at once.

``method="nonlinear"`` minimises the sum of squared signal residuals over ``(M0, T1)`` directly
with a Levenberg-Marquardt iteration run on all voxels together (2 x 2 normal equations solved in
closed form per voxel), started from the linear estimate (or from T1 = 1000 ms where that failed).
T1 is parameterised by ``log R1`` so that it stays positive.

References: Fram EK et al. Rapid calculation of T1 using variable flip angle gradient refocused
imaging. Magn Reson Imaging 1987;5:201-208. Deoni SCL, Rutt BK, Peters TM. Rapid combined T1 and T2
mapping using gradient recalled acquisition in the steady state. Magn Reson Med 2003;49:515-526.
Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters. J Soc Ind Appl Math
1963;11:431-441.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from .signal_model import check_flip_angle, check_repetition_time

METHODS = ("linear", "nonlinear")
"""Accepted values of ``method`` in :func:`t1_from_vfa`."""

FALLBACK_T1_MS = 1000.0
"""Starting T1 of the nonlinear fit in voxels where the linear estimate failed."""


class VFAResult(NamedTuple):
    """Result of a variable-flip-angle T1 fit."""

    t1_ms: np.ndarray
    """T1 in milliseconds, shape (...); NaN where the fit failed."""
    m0: np.ndarray
    """Equilibrium signal M0 (signal units), shape (...); NaN where the fit failed."""
    failed: np.ndarray
    """True where the fit failed, shape (...)."""


def t1_from_vfa(
    signals: np.ndarray,
    flip_angles_deg: np.ndarray,
    tr_ms: float,
    method: str = "linear",
    *,
    max_iterations: int = 100,
    step_tolerance: float = 1e-10,
) -> VFAResult:
    """Fit T1 and M0 to variable-flip-angle spoiled gradient-echo signals.

    Parameters
    ----------
    signals : array_like, shape (..., N_fa)
        Signal of each voxel at each flip angle, flip angles on the last axis.
    flip_angles_deg : array_like, shape (N_fa,) or broadcastable to ``signals``
        Flip angles in degrees, in (0, 90]; a per-voxel array (e.g. nominal angles scaled by a B1
        map) is accepted.
    tr_ms : float
        Repetition time in milliseconds, the same for all flip angles.
    method : {"linear", "nonlinear"}, optional
        DESPOT1 linear regression, or nonlinear least squares on the signals started from it.
    max_iterations : int, optional
        Iteration limit of the nonlinear fit; voxels not converged by then are marked failed.
    step_tolerance : float, optional
        Convergence threshold on the relative parameter step of the nonlinear fit.

    Returns
    -------
    VFAResult
        ``t1_ms``, ``m0`` and the ``failed`` mask, each of shape (...).
        The linear fit fails where the slope ``E1`` is not in (0, 1) (no positive finite T1) or a
        signal is not finite; the nonlinear fit fails where it did not converge or gave a
        non-finite or non-positive result.

    Raises
    ------
    InputError
        If the flip angles or TR are invalid, fewer than two distinct flip angles are given, the
        angles do not match the signals, or ``method`` is unknown.
    """
    signals = np.asarray(signals, dtype=float)
    angles = _check_vfa_angles(flip_angles_deg, signals.shape)
    tr_s = check_repetition_time(tr_ms)
    if method not in METHODS:
        raise InputError(f"method {method!r} is not known: choose one of {', '.join(METHODS)}")
    linear = _despot1(signals, angles, tr_s)
    if method == "linear":
        return linear
    return _nonlinear_vfa(signals, angles, tr_s, linear, int(max_iterations), float(step_tolerance))


def _check_vfa_angles(flip_angles_deg: np.ndarray, signal_shape: tuple[int, ...]) -> np.ndarray:
    """Validate VFA flip angles (degrees) against the signals; return them in radians."""
    angles = check_flip_angle(flip_angles_deg)
    if len(signal_shape) == 0 or angles.ndim == 0 or angles.shape[-1] != signal_shape[-1]:
        raise InputError(
            f"{angles.shape[-1] if angles.ndim else 1} flip angles were given for signals of shape "
            f"{signal_shape}: give one flip angle per entry of the signals' last axis"
        )
    try:
        angles = np.broadcast_to(angles, signal_shape)
    except ValueError:
        raise InputError(
            f"flip angles of shape {angles.shape} do not fit signals of shape {signal_shape}: give "
            "(N_fa,) angles or a per-voxel array with the signals' shape"
        ) from None
    if np.any(np.ptp(angles, axis=-1) <= 0):
        raise InputError(
            "all flip angles are equal: T1 needs at least two different flip angles (e.g. 2 and 15 deg)"
        )
    return angles


def _despot1(signals: np.ndarray, angles: np.ndarray, tr_s: float) -> VFAResult:
    """Closed-form DESPOT1 regression of S/sin(a) on S/tan(a) for every voxel."""
    ordinate = signals / np.sin(angles)
    abscissa = signals * np.cos(angles) / np.sin(angles)
    centred_x = abscissa - np.mean(abscissa, axis=-1, keepdims=True)
    centred_y = ordinate - np.mean(ordinate, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.sum(centred_x * centred_y, axis=-1) / np.sum(centred_x**2, axis=-1)
        intercept = np.mean(ordinate, axis=-1) - e1 * np.mean(abscissa, axis=-1)
        t1_ms = -1000.0 * tr_s / np.log(e1)
        m0 = intercept / (1.0 - e1)
    failed = ~((e1 > 0) & (e1 < 1) & np.isfinite(m0) & (m0 > 0) & np.isfinite(t1_ms))
    return VFAResult(np.where(failed, np.nan, t1_ms), np.where(failed, np.nan, m0), failed)


def _nonlinear_vfa(
    signals: np.ndarray,
    angles: np.ndarray,
    tr_s: float,
    start: VFAResult,
    max_iterations: int,
    step_tolerance: float,
) -> VFAResult:
    """Batched Levenberg-Marquardt fit of (M0, log R1) to the SPGR signals of every voxel."""
    finite = np.all(np.isfinite(signals), axis=-1)
    data = np.where(finite[..., np.newaxis], signals, 0.0)
    log_r1 = np.log(1000.0 / np.where(start.failed, FALLBACK_T1_MS, start.t1_ms))
    m0 = np.where(start.failed, _best_m0(data, angles, tr_s, log_r1), start.m0)
    damping = np.full(m0.shape, 1e-3)
    converged = np.zeros(m0.shape, dtype=bool)
    cost = _sum_of_squares(data, angles, tr_s, m0, log_r1)
    for _ in range(max_iterations):
        step_m0, step_log_r1 = _damped_step(data, angles, tr_s, m0, log_r1, damping)
        trial_m0 = m0 + step_m0
        trial_log_r1 = log_r1 + step_log_r1
        trial_cost = _sum_of_squares(data, angles, tr_s, trial_m0, trial_log_r1)
        better = (trial_cost < cost) & ~converged
        with np.errstate(divide="ignore", invalid="ignore"):
            relative_step = np.maximum(np.abs(step_m0) / np.abs(m0), np.abs(step_log_r1))
        small_step = relative_step < step_tolerance
        m0 = np.where(better, trial_m0, m0)
        log_r1 = np.where(better, trial_log_r1, log_r1)
        cost = np.where(better, trial_cost, cost)
        damping = np.where(better, damping / 10.0, damping * 10.0)
        converged |= small_step | ~finite
        if np.all(converged):
            break
    t1_ms = 1000.0 * np.exp(-log_r1)
    failed = ~(converged & finite & np.isfinite(t1_ms) & (t1_ms > 0) & np.isfinite(m0) & (m0 > 0))
    return VFAResult(np.where(failed, np.nan, t1_ms), np.where(failed, np.nan, m0), failed)


def _signal_shape(angles: np.ndarray, tr_s: float, log_r1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPGR signal per unit M0 and its derivative with respect to log R1, shape (..., N_fa)."""
    e1 = np.exp(-tr_s * np.exp(log_r1))[..., np.newaxis]
    cos_a = np.cos(angles)
    denominator = 1.0 - cos_a * e1
    shape = np.sin(angles) * (1.0 - e1) / denominator
    d_shape_d_e1 = np.sin(angles) * (cos_a - 1.0) / denominator**2
    d_e1_d_log_r1 = -tr_s * np.exp(log_r1)[..., np.newaxis] * e1
    return shape, d_shape_d_e1 * d_e1_d_log_r1


def _best_m0(signals: np.ndarray, angles: np.ndarray, tr_s: float, log_r1: np.ndarray) -> np.ndarray:
    """Least-squares M0 for fixed R1 (the model is linear in M0)."""
    shape, _ = _signal_shape(angles, tr_s, log_r1)
    return np.sum(shape * signals, axis=-1) / np.sum(shape**2, axis=-1)


def _sum_of_squares(
    signals: np.ndarray, angles: np.ndarray, tr_s: float, m0: np.ndarray, log_r1: np.ndarray
) -> np.ndarray:
    """Residual sum of squares of the SPGR model per voxel."""
    shape, _ = _signal_shape(angles, tr_s, log_r1)
    with np.errstate(invalid="ignore", over="ignore"):
        cost = np.sum((signals - m0[..., np.newaxis] * shape) ** 2, axis=-1)
    return np.where(np.isfinite(cost), cost, np.inf)


def _damped_step(
    signals: np.ndarray,
    angles: np.ndarray,
    tr_s: float,
    m0: np.ndarray,
    log_r1: np.ndarray,
    damping: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt step ``(J^T J + lambda diag(J^T J)) delta = J^T r`` for every voxel.

    The step is NaN where the damped normal matrix is singular; such a step is never accepted.
    """
    shape, d_shape = _signal_shape(angles, tr_s, log_r1)
    jac_m0 = shape
    jac_log_r1 = m0[..., np.newaxis] * d_shape
    residual = signals - m0[..., np.newaxis] * shape
    a11 = np.sum(jac_m0**2, axis=-1)
    a22 = np.sum(jac_log_r1**2, axis=-1)
    a12 = np.sum(jac_m0 * jac_log_r1, axis=-1)
    g1 = np.sum(jac_m0 * residual, axis=-1)
    g2 = np.sum(jac_log_r1 * residual, axis=-1)
    a11 = a11 * (1.0 + damping)
    a22 = a22 * (1.0 + damping)
    with np.errstate(divide="ignore", invalid="ignore"):
        determinant = a11 * a22 - a12**2
        return (a22 * g1 - a12 * g2) / determinant, (a11 * g2 - a12 * g1) / determinant
