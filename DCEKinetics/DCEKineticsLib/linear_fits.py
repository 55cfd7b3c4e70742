"""Linear least-squares solutions of tracer-kinetic models, all voxels at once.

Integrating a model's differential equations turns it into an equation that is linear in a few
combinations of its parameters; the running integrals are taken with the trapezoid rule. With ``I``
a running integral from the first frame (``II`` a double one), ``C`` the tissue and ``Ca`` the plasma
concentration, and rates per second:

* standard Tofts (Murase, MRM 2004;51:858): ``C = Ktrans I[Ca] - kep I[C]``;
* extended Tofts (Murase 2004): ``C = vp Ca + (Ktrans + kep vp) I[Ca] - kep I[C]``;
* Patlak (Patlak et al., JCBFM 1983;3:1): ``C = vp Ca + Ktrans I[Ca]``;
* 2CXM (Flouri, Lesnic & Sourbron, MRM 2016;76:998):
  ``C = -(k+ + k-) I[C] - k+ k- II[C] + Fp I[Ca] + Fp q II[Ca]``, ``q = PS (vp + ve) / (vp ve)``;
* 2CUM (Flouri et al. 2016): ``C = -kp I[C] + Fp I[Ca] + (Fp PS / vp) II[Ca]``,
  ``kp = (Fp + PS) / vp``.

Each voxel has its own design matrix (it contains the voxel's own integrals), so the normal
equations are built for every voxel with numpy reductions over time and solved together by a
vectorised, Jacobi-scaled Cholesky factorisation. The kernels here are time-major ``(T, N)``, like
those in :mod:`DCEKineticsLib.models`; :func:`linear_fit` is the ``(..., T)`` entry point.

The solutions are unbiased only for fine sampling; they serve as starting values of the nonlinear
fit in :mod:`DCEKineticsLib.fitting`. Parameters are returned as computed, possibly outside their
physical range, and NaN where the algebra is undefined.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from .models import (
    FLOW_UNIT_PER_SECOND,
    SECONDS_PER_MINUTE,
    SampledAIF,
    cumulative_integral,
    get_model,
    validated_concentration,
    validated_single_aif,
    validated_times,
)

_PIVOT_TOLERANCE = 1e-13


def solve_symmetric(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve many small symmetric positive-definite systems at once.

    Parameters
    ----------
    matrix : ndarray, shape (P, P, N)
        One P x P system per voxel (voxel axis last).
    rhs : ndarray, shape (P, N)
        Right-hand sides.

    Returns
    -------
    ndarray, shape (P, N)
        Solutions; NaN for voxels whose matrix is not numerically positive definite.
    """
    size = rhs.shape[0]
    diagonal = np.stack([matrix[i, i] for i in range(size)])
    usable = np.all(diagonal > 0, axis=0) & np.all(np.isfinite(diagonal), axis=0)
    scale = np.sqrt(np.where(usable, diagonal, 1.0))
    factor = np.zeros((size, size, *rhs.shape[1:]))
    for j in range(size):
        pivot = matrix[j, j] / (scale[j] * scale[j]) - np.sum(factor[j, :j] ** 2, axis=0)
        usable &= pivot > _PIVOT_TOLERANCE
        factor[j, j] = np.sqrt(np.where(usable, pivot, 1.0))
        for i in range(j + 1, size):
            scaled = matrix[i, j] / (scale[i] * scale[j])
            factor[i, j] = (scaled - np.sum(factor[i, :j] * factor[j, :j], axis=0)) / factor[j, j]
    forward = np.zeros_like(rhs, dtype=float)
    for i in range(size):
        forward[i] = (rhs[i] / scale[i] - np.sum(factor[i, :i] * forward[:i], axis=0)) / factor[i, i]
    solution = np.zeros_like(forward)
    for i in reversed(range(size)):
        solution[i] = (forward[i] - np.sum(factor[i + 1:, i] * solution[i + 1:], axis=0)) / factor[i, i]
    return np.where(usable, solution / scale, np.nan)


def least_squares(columns: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Per-voxel linear least squares ``target ~ sum_p x_p columns[p]`` (time-major).

    Parameters
    ----------
    columns : list of ndarray, each (T, 1) or (T, N)
        Regressors, shared by all voxels (one column) or per voxel.
    target : ndarray, shape (T, N)
        Data.

    Returns
    -------
    ndarray, shape (P, N)
        Coefficients (NaN where the normal equations are singular).
    """
    size, n_voxels = len(columns), target.shape[1]
    gram = np.empty((size, size, n_voxels))
    for i in range(size):
        for j in range(i + 1):
            gram[i, j] = gram[j, i] = np.sum(columns[i] * columns[j], axis=0)
    moments = np.stack([np.sum(column * target, axis=0) for column in columns])
    return solve_symmetric(gram, moments)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is zero or not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(denominator) & (denominator != 0), numerator / denominator, np.nan)


def tofts_linear(concentration: np.ndarray, aif: SampledAIF) -> np.ndarray:
    """Murase solution of the standard Tofts model; time-major (T, N) in, ``[Ktrans /min, ve]`` (2, N) out."""
    tissue_integral = cumulative_integral(concentration, aif.times_s)
    uptake, kep = least_squares([aif.cumulative, -tissue_integral], concentration)
    return np.stack([SECONDS_PER_MINUTE * uptake, _ratio(uptake, kep)])


def extended_tofts_linear(concentration: np.ndarray, aif: SampledAIF) -> np.ndarray:
    """Murase solution of the extended Tofts model; returns ``[Ktrans /min, ve, vp]`` (3, N)."""
    tissue_integral = cumulative_integral(concentration, aif.times_s)
    vp, combined, kep = least_squares([aif.samples, aif.cumulative, -tissue_integral], concentration)
    ktrans = combined - kep * vp
    return np.stack([SECONDS_PER_MINUTE * ktrans, _ratio(ktrans, kep), vp])


def patlak_linear(concentration: np.ndarray, aif: SampledAIF) -> np.ndarray:
    """Linear Patlak solution; returns ``[Ktrans /min, vp]`` (2, N)."""
    vp, ktrans = least_squares([aif.samples, aif.cumulative], concentration)
    return np.stack([SECONDS_PER_MINUTE * ktrans, vp])


def exchange_linear(concentration: np.ndarray, aif: SampledAIF) -> np.ndarray:
    """Flouri solution of the 2CXM; returns ``[Fp ml/100ml/min, PS /min, ve, vp]`` (4, N)."""
    tissue_integral = cumulative_integral(concentration, aif.times_s)
    tissue_double = cumulative_integral(tissue_integral, aif.times_s)
    aif_double = cumulative_integral(aif.cumulative, aif.times_s)
    rate_sum, rate_product, flow, flow_backflux = least_squares(
        [-tissue_integral, -tissue_double, aif.cumulative, aif_double], concentration)
    backflux = _ratio(flow_backflux, flow)
    vp = _ratio(flow, rate_sum - backflux)
    ve = _ratio(backflux * flow, rate_product) - vp
    ps = _ratio(rate_product * vp * ve, flow)
    return np.stack([FLOW_UNIT_PER_SECOND * flow, SECONDS_PER_MINUTE * ps, ve, vp])


def uptake_linear(concentration: np.ndarray, aif: SampledAIF) -> np.ndarray:
    """Flouri solution of the 2CUM; returns ``[Fp ml/100ml/min, PS /min, vp]`` (3, N)."""
    tissue_integral = cumulative_integral(concentration, aif.times_s)
    aif_double = cumulative_integral(aif.cumulative, aif.times_s)
    rate, flow, flow_extraction = least_squares([-tissue_integral, aif.cumulative, aif_double], concentration)
    ps_over_vp = _ratio(flow_extraction, flow)
    vp = _ratio(flow, rate - ps_over_vp)
    return np.stack([FLOW_UNIT_PER_SECOND * flow, SECONDS_PER_MINUTE * ps_over_vp * vp, vp])


LINEAR_SOLUTIONS: dict[str, Callable[[np.ndarray, SampledAIF], np.ndarray]] = {
    "tofts": tofts_linear,
    "extended-tofts": extended_tofts_linear,
    "patlak": patlak_linear,
    "2cxm": exchange_linear,
    "2cum": uptake_linear,
}
"""Time-major linear solutions by model name; parameters in the registry's order and units."""

STARTING_SOLUTIONS: dict[str, Callable[[np.ndarray, SampledAIF], np.ndarray]] = {
    **LINEAR_SOLUTIONS,
    "aath": exchange_linear,
}
"""Linear solutions used as starting values; the AATH (no linear form) starts from the 2CXM one,
which has the same parameters (Fp, PS, ve, vp)."""


def linear_fit(concentration: np.ndarray, times_s: np.ndarray, aif_plasma_mM: np.ndarray,
               model: str) -> dict[str, np.ndarray]:
    """Linear least-squares parameter maps of a model (no iteration, no bounds).

    Parameters
    ----------
    concentration : ndarray, shape (..., T)
        Tissue concentration (mM).
    times_s : ndarray, shape (T,)
        Frame times (s).
    aif_plasma_mM : ndarray, shape (T,)
        Arterial plasma concentration (mM).
    model : str
        One of ``LINEAR_SOLUTIONS`` ("tofts", "extended-tofts", "patlak", "2cxm", "2cum").

    Returns
    -------
    dict of str to ndarray, each of shape (...)
        The model's parameters in field units (see :data:`DCEKineticsLib.models.MODELS`); values may lie
        outside the physical range and are NaN where undefined.
    """
    spec = get_model(model)
    if model not in LINEAR_SOLUTIONS:
        choices = ", ".join(LINEAR_SOLUTIONS)
        raise InputError(f"model {model!r} has no linear solution: choose one of {choices}, "
                         "or fit it with fitting.fit_model")
    times = validated_times(times_s)
    aif = validated_single_aif(aif_plasma_mM, times.size)
    data = validated_concentration(concentration, times.size)
    time_major = np.ascontiguousarray(data.reshape(-1, times.size).T, dtype=float)
    values = LINEAR_SOLUTIONS[model](time_major, SampledAIF.from_samples(times, aif))
    names = spec.parameter_names
    return {name: row.reshape(data.shape[:-1]) for name, row in zip(names, values, strict=True)}
