"""Voxel-wise fitting of tracer-kinetic models to DCE-MRI concentration curves.

The voxels are processed in chunks (bounded memory); inside a chunk every step works on all voxels
at once:

1. screening: voxels outside the mask, with non-finite samples, or with no signal (all samples
   zero) are not fitted and get a :class:`FailureReason`;
2. starting values: the linear least-squares solution (:mod:`DCEKineticsLib.linear_fits`) moved
   into the bounds. With delay fitting the linear fit is repeated for a grid of AIF delays and the
   delay whose linear parameters predict the data best is kept. Models with known local minima
   (2CXM, AATH) are also started from further points and the lowest residual wins;
3. refinement: bounded Levenberg-Marquardt (Levenberg, Q Appl Math 1944;2:164; Marquardt, J SIAM
   1963;11:431) with the models' analytic Jacobians, per-voxel damping and convergence tests, bounds
   enforced by projecting every trial point onto the box and holding a parameter on its bound while
   the descent direction points outwards (Kelley, Iterative Methods for Optimization, SIAM 1999,
   ch. 5). The delay, when fitted, is refined with the kinetic parameters, the model being evaluated
   exactly at ``t - delay``. Converged voxels leave the working set;
4. quality and failures: R^2, residual RMS, and NaN parameters with a reason code for every voxel
   that could not be fitted. Nothing is set to zero.

Chunks can run in parallel threads. The result is deterministic and independent of the chunk size
and the number of threads: there is no random sampling anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from .linear_fits import STARTING_SOLUTIONS, solve_symmetric
from .models import (
    FactoredJacobian,
    KineticModel,
    ParameterSpec,
    SampledAIF,
    get_model,
    validated_concentration,
    validated_single_aif,
    validated_times,
)

_MAX_ITERATIONS = 200
_INITIAL_DAMPING = 1e-3
_DAMPING_DECREASE = 0.2
_DAMPING_INCREASE = 10.0
_MIN_DAMPING = 1e-12
_MAX_DAMPING = 1e10
_COST_TOLERANCE = 1e-6
_STEP_TOLERANCE = 1e-8
_COST_FLOOR = 1e-24
_BOUND_TOLERANCE = 1e-6
_WORKING_BYTES = 128 * 2**20
_DELAY_TYPICAL_S = 1.0


class FailureReason(IntEnum):
    """Why a voxel has no parameter values (``FitResult.failure_reason``)."""

    OK = 0
    """Fitted."""
    OUTSIDE_MASK = 1
    """Not fitted because it is outside the mask; not counted as a failure."""
    NON_FINITE_DATA = 2
    """The concentration curve contains NaN or infinite values."""
    NO_SIGNAL = 3
    """Every sample of the concentration curve is zero."""
    NOT_CONVERGED = 4
    """The iteration limit was reached before convergence."""
    AT_BOUND = 5
    """A parameter ended on a bound where that means the data do not determine it."""
    NON_FINITE_RESULT = 6
    """The fit produced non-finite values."""


@dataclass
class FitResult:
    """Parameter maps and fit quality of :func:`fit_model`.

    Attributes
    ----------
    model : str
        Registry name of the fitted model.
    parameters : dict of str to ndarray
        Maps of shape ``concentration.shape[:-1]``: the fitted parameters, the model's derived
        quantities and, with delay fitting, ``delay``. NaN where the voxel was not fitted.
    units : dict of str to str
        Unit of every entry of ``parameters`` ("" for fractions).
    r_squared : ndarray
        Coefficient of determination of the fit.
    residual_rms : ndarray
        Root-mean-square residual (mM).
    failed : ndarray of bool
        Voxels that were to be fitted but have no result.
    failure_reason : ndarray of uint8
        :class:`FailureReason` code of every voxel.
    n_fitted : int
        Voxels fitted successfully.
    n_failed : int
        Voxels that failed (``failed.sum()``).
    """

    model: str
    parameters: dict[str, np.ndarray]
    units: dict[str, str]
    r_squared: np.ndarray
    residual_rms: np.ndarray
    failed: np.ndarray
    failure_reason: np.ndarray
    n_fitted: int
    n_failed: int


# ---------------------------------------------------------------------------------------------------
# Batched Levenberg-Marquardt
# ---------------------------------------------------------------------------------------------------

Evaluator = Callable[[np.ndarray, bool], tuple[np.ndarray, FactoredJacobian | None]]


def _sum_of_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_t a[t, n] b[t, n]`` for time-major arrays."""
    return np.einsum("tn,tn->n", a, b)


def _damped_step(normal: np.ndarray, gradient: np.ndarray, damping: np.ndarray, theta: np.ndarray,
                 lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Solve ``(J^T J + damping diag(J^T J)) step = J^T r`` for every voxel (P, N).

    A parameter on a bound whose descent direction points out of the box is held fixed (its row
    and column are decoupled and its step is zero), so the other parameters get a true descent step.
    """
    size = gradient.shape[0]
    held = ((theta <= lower) & (gradient < 0)) | ((theta >= upper) & (gradient > 0))
    damped = np.where(held[:, None] | held[None, :], 0.0, normal)
    diagonal = np.stack([normal[i, i] for i in range(size)])
    floor = 1e-12 * np.max(diagonal, axis=0) + np.finfo(float).tiny
    for i in range(size):
        damped[i, i] = np.where(held[i], 1.0, diagonal[i] + damping * (diagonal[i] + floor))
    return solve_symmetric(damped, np.where(held, 0.0, gradient))


def _residual_state(evaluate: Evaluator, theta: np.ndarray,
                    data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost (N,), ``J^T J`` (P, P, N) and ``J^T r`` (P, N) of parameters (P, N)."""
    prediction, linearisation = evaluate(theta, True)
    residual = data - prediction
    normal, gradient = linearisation.normal_equations(residual)
    return _sum_of_products(residual, residual), normal, gradient


def levenberg_marquardt(evaluate: Evaluator, data: np.ndarray, start: np.ndarray, lower: np.ndarray,
                        upper: np.ndarray, scale: np.ndarray,
                        max_iterations: int = _MAX_ITERATIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounded least-squares fit of many curves at once (time-major).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(theta (P, N), jacobian: bool) -> (prediction (T, N), FactoredJacobian or None)``.
        Must not depend on which voxels are passed (the working set shrinks as voxels converge).
    data : ndarray, shape (T, N)
        Curves to fit.
    start : ndarray, shape (P, N)
        Starting values (projected onto the bounds).
    lower, upper : ndarray, shape (P,)
        Bounds.
    scale : ndarray, shape (P,)
        Typical magnitude of each parameter, for the step-size convergence test.
    max_iterations : int
        Iteration limit.

    Returns
    -------
    theta : ndarray, shape (P, N)
        Estimates.
    cost : ndarray, shape (N,)
        Residual sum of squares at the estimates.
    converged : ndarray of bool, shape (N,)
        False where the iteration limit was reached.
    """
    low, high = lower[:, None], upper[:, None]
    theta = np.clip(start, low, high)
    cost, normal, gradient = _residual_state(evaluate, theta, data)
    floor = _COST_FLOOR * _sum_of_products(data, data)
    damping = np.full(data.shape[1], _INITIAL_DAMPING)
    active = np.arange(data.shape[1])
    result, result_cost = theta.copy(), cost.copy()
    converged = np.zeros(data.shape[1], dtype=bool)
    for _ in range(max_iterations):
        step = _damped_step(normal, gradient, damping, theta, low, high)
        valid = np.all(np.isfinite(step), axis=0)
        trial = np.clip(theta + np.where(valid, step, 0.0), low, high)
        trial_cost, trial_normal, trial_gradient = _residual_state(evaluate, trial, data)
        improved = valid & (trial_cost < cost)
        with np.errstate(invalid="ignore", divide="ignore"):
            decrease = (cost - trial_cost) / cost
        step_limit = _STEP_TOLERANCE * (np.abs(theta) + scale[:, None])
        small_step = valid & np.all(np.abs(trial - theta) <= step_limit, axis=0)
        theta = np.where(improved, trial, theta)
        cost = np.where(improved, trial_cost, cost)
        normal = np.where(improved, trial_normal, normal)
        gradient = np.where(improved, trial_gradient, gradient)
        damping = np.where(improved, np.maximum(damping * _DAMPING_DECREASE, _MIN_DAMPING),
                           damping * _DAMPING_INCREASE)
        done = ((improved & (decrease < _COST_TOLERANCE)) | small_step | (damping > _MAX_DAMPING)
                | (cost <= floor))
        if np.any(done):
            finished = active[done]
            result[:, finished], result_cost[finished], converged[finished] = theta[:, done], cost[done], True
            keep = ~done
            active, theta, cost, damping = active[keep], theta[:, keep], cost[keep], damping[keep]
            data, normal, gradient, floor = data[:, keep], normal[:, :, keep], gradient[:, keep], floor[keep]
            if active.size == 0:
                break
    result[:, active], result_cost[active] = theta, cost
    return result, result_cost, converged


# ---------------------------------------------------------------------------------------------------
# The fitting problem of one call
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """Model, input and fit options shared by every chunk of one :func:`fit_model` call."""

    model: KineticModel
    aif: SampledAIF
    parameters: tuple[ParameterSpec, ...]
    delay_grid_s: np.ndarray | None

    @property
    def fits_delay(self) -> bool:
        """Whether the last parameter is the arrival delay."""
        return self.delay_grid_s is not None

    def bounds_and_scale(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower bounds, upper bounds and typical values of all fitted parameters, each (P,)."""
        keys = ("lower", "upper", "typical")
        return tuple(np.array([getattr(p, key) for p in self.parameters]) for key in keys)

    def evaluate(self, theta: np.ndarray, jacobian: bool) -> tuple[np.ndarray, FactoredJacobian | None]:
        """Prediction (and Jacobian) for parameters (P, N), the last row the delay when it is fitted."""
        if not self.fits_delay:
            return self.model.evaluate(theta, self.aif, jacobian)
        return self.model.evaluate(theta[:-1], self.aif, jacobian, theta[-1])

    def linear_start(self, data: np.ndarray, aif: SampledAIF) -> np.ndarray:
        """Linear solution (P_model, N) made usable as a start: undefined or impossible values are
        replaced by typical ones, the rest is projected onto the bounds."""
        spec = self.model
        values = STARTING_SOLUTIONS[spec.name](data, aif)
        lower, upper = spec.lower_bounds[:, None], spec.upper_bounds[:, None]
        failing_lower = np.array([p.lower_bound_fails for p in spec.parameters])[:, None]
        usable = np.isfinite(values) & ~(failing_lower & (values <= lower))
        return np.clip(np.where(usable, values, spec.typical_values[:, None]), lower, upper)

    def primary_start(self, data: np.ndarray) -> np.ndarray:
        """Linear start, with the best delay of the grid appended when the delay is fitted."""
        if not self.fits_delay:
            return self.linear_start(data, self.aif)
        best = np.full((len(self.parameters), data.shape[1]), np.nan)
        best_cost = np.full(data.shape[1], np.inf)
        for delay in self.delay_grid_s:
            theta = self.linear_start(data, self.aif.shifted(np.array([delay])))
            prediction, _ = self.model.evaluate(theta, self.aif, False, np.full(data.shape[1], delay))
            residual = data - prediction
            cost = _sum_of_products(residual, residual)
            better = cost < best_cost
            best[:-1] = np.where(better, theta, best[:-1])
            best[-1] = np.where(better, delay, best[-1])
            best_cost = np.where(better, cost, best_cost)
        return best

    @property
    def n_starts(self) -> int:
        """Number of starting points per voxel."""
        if self.model.alternative_starts is None:
            return 1
        return 1 + len(self.model.alternative_starts(self.model.typical_values[:, None]))

    def starts(self, data: np.ndarray) -> list[np.ndarray]:
        """Starting points (each (P, N)); several for models with known local minima."""
        primary = self.primary_start(data)
        if self.model.alternative_starts is None:
            return [primary]
        size = len(self.model.parameters)
        alternatives = self.model.alternative_starts(primary[:size])
        return [primary] + [np.vstack([start, primary[size:]]) for start in alternatives]

    def fit(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit time-major curves (T, N); return parameters (P, N), cost (N,) and convergence (N,)."""
        starts = self.starts(data)
        count = len(starts)
        tiled = data if count == 1 else np.tile(data, (1, count))
        theta, cost, converged = levenberg_marquardt(self.evaluate, tiled, np.concatenate(starts, axis=1),
                                                     *self.bounds_and_scale())
        if count == 1:
            return theta, cost, converged
        ranked = np.where(np.isfinite(cost), cost, np.inf).reshape(count, -1)
        choice = np.argmin(ranked, axis=0) * data.shape[1] + np.arange(data.shape[1])
        return theta[:, choice], cost[choice], converged[choice]

    def at_failing_bound(self, theta: np.ndarray) -> np.ndarray:
        """Voxels (N,) with a parameter on a bound that marks the fit as undetermined."""
        flagged = np.zeros(theta.shape[1], dtype=bool)
        for row, spec in zip(theta, self.parameters, strict=True):
            tolerance = _BOUND_TOLERANCE * max(abs(spec.typical), 1e-12)
            if spec.lower_bound_fails:
                flagged |= row <= spec.lower + tolerance
            if spec.upper_bound_fails:
                flagged |= row >= spec.upper - tolerance
        return flagged


def _delay_grid(times: np.ndarray, max_delay_s: float) -> np.ndarray:
    """Candidate delays from 0 to ``max_delay_s`` at half the median frame interval (at most 1 s)."""
    spacing = min(0.5 * float(np.median(np.diff(times))), 1.0)
    count = int(np.ceil(max_delay_s / spacing - 1e-9)) + 1
    return np.linspace(0.0, max_delay_s, count)


def _default_chunk(n_times: int, n_parameters: int, n_starts: int) -> int:
    """Voxels per chunk so that the working arrays stay near ``_WORKING_BYTES``."""
    per_voxel = 8 * n_times * (2 * n_parameters + 12) * n_starts
    return int(np.clip(_WORKING_BYTES // per_voxel, 256, 65536))


# ---------------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------------


def _validated_inputs(concentration: np.ndarray, times_s: np.ndarray, aif_plasma_mM: np.ndarray,
                      mask: np.ndarray | None, n_parameters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray | None]:
    """Concentration (dtype kept), times, plasma AIF and boolean mask, checked (raises InputError)."""
    times = validated_times(times_s)
    aif = validated_single_aif(aif_plasma_mM, times.size)
    data = validated_concentration(concentration, times.size)
    if times.size <= n_parameters:
        raise InputError(f"{times.size} frames cannot determine {n_parameters} parameters: "
                         "use more frames or a model with fewer parameters")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != data.shape[:-1]:
            raise InputError(f"mask has shape {mask.shape} but the concentration volume is "
                             f"{data.shape[:-1]}: give one mask value per voxel")
        mask = mask.astype(bool)
    return data, times, aif, mask


def _screen(block: np.ndarray, mask_block: np.ndarray | None) -> np.ndarray:
    """Failure reasons of voxels that cannot be fitted (``OK`` for the others)."""
    reason = np.full(block.shape[0], FailureReason.OK, dtype=np.uint8)
    finite = np.all(np.isfinite(block), axis=1)
    reason[~finite] = FailureReason.NON_FINITE_DATA
    reason[finite & ~np.any(block != 0, axis=1)] = FailureReason.NO_SIGNAL
    if mask_block is not None:
        reason[~mask_block] = FailureReason.OUTSIDE_MASK
    return reason


def _failure_after_fit(problem: _Problem, theta: np.ndarray, cost: np.ndarray,
                       converged: np.ndarray) -> np.ndarray:
    """Failure reasons (N,) of fitted voxels, in order of precedence."""
    reason = np.full(cost.shape, FailureReason.OK, dtype=np.uint8)
    reason[problem.at_failing_bound(theta)] = FailureReason.AT_BOUND
    reason[~converged] = FailureReason.NOT_CONVERGED
    reason[~(np.all(np.isfinite(theta), axis=0) & np.isfinite(cost))] = FailureReason.NON_FINITE_RESULT
    return reason


@dataclass
class _Outputs:
    """Flat output arrays filled chunk by chunk (disjoint slices, so chunks may run in threads)."""

    estimates: np.ndarray
    r_squared: np.ndarray
    residual_rms: np.ndarray
    reason: np.ndarray

    @classmethod
    def empty(cls, n_parameters: int, n_voxels: int) -> _Outputs:
        """NaN maps and OK reasons for ``n_voxels`` voxels."""
        return cls(np.full((n_parameters, n_voxels), np.nan), np.full(n_voxels, np.nan),
                   np.full(n_voxels, np.nan), np.zeros(n_voxels, dtype=np.uint8))

    def fill(self, problem: _Problem, curves: np.ndarray, mask: np.ndarray | None, first: int) -> None:
        """Fit the voxel curves (n, T) starting at flat index ``first`` and store the results."""
        block = np.asarray(curves, dtype=float)
        block_reason = _screen(block, mask)
        todo = np.flatnonzero(block_reason == FailureReason.OK)
        if todo.size:
            data = np.ascontiguousarray(block[todo].T)
            theta, cost, converged = problem.fit(data)
            fit_reason = _failure_after_fit(problem, theta, cost, converged)
            good = fit_reason == FailureReason.OK
            centred = data - data.mean(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                quality = 1.0 - cost / _sum_of_products(centred, centred)
            voxels = first + todo
            self.estimates[:, voxels] = np.where(good, theta, np.nan)
            self.r_squared[voxels] = np.where(good, quality, np.nan)
            self.residual_rms[voxels] = np.where(good, np.sqrt(cost / data.shape[0]), np.nan)
            block_reason[todo] = fit_reason
        self.reason[first:first + block.shape[0]] = block_reason


def _run_chunks(fit_chunk: Callable[[int, int], None], n_voxels: int, chunk_voxels: int, workers: int,
                report: Callable[[int], None]) -> None:
    """Call ``fit_chunk(first, last)`` over all chunks (in ``workers`` threads) and ``report(last)``
    after each, in order. An exception from either stops the remaining chunks and propagates."""
    ranges = [(first, min(first + chunk_voxels, n_voxels)) for first in range(0, n_voxels, chunk_voxels)]
    if workers == 1:
        for first, last in ranges:
            fit_chunk(first, last)
            report(last)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(fit_chunk, first, last) for first, last in ranges]
        for (_, last), future in zip(ranges, futures, strict=True):
            future.result()
            report(last)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def fit_model(concentration: np.ndarray, times_s: np.ndarray, aif_plasma_mM: np.ndarray, model: str, *,
              fit_delay: bool = False, max_delay_s: float = 10.0, chunk_voxels: int | None = None,
              mask: np.ndarray | None = None, progress: Callable[[float, str], None] | None = None,
              workers: int = 1) -> FitResult:
    """Fit a tracer-kinetic model to every voxel.

    Parameters
    ----------
    concentration : ndarray, shape (..., T)
        Tissue concentration (mM), time on the last axis; any real dtype (chunks are converted to
        float64 one at a time, so a float32 volume is never copied whole).
    times_s : ndarray, shape (T,)
        Frame times (s), strictly increasing; non-uniform sampling is allowed.
    aif_plasma_mM : ndarray, shape (T,)
        Arterial PLASMA concentration (mM) at the frame times (divide a blood curve by 1 - Hct).
    model : str
        Registry name: "tofts", "extended-tofts", "patlak", "2cxm", "2cum" or "aath".
    fit_delay : bool
        Also fit the delay (s) of tissue arrival after the AIF, in ``[0, max_delay_s]``.
    max_delay_s : float
        Largest delay considered (s); a delay on this bound marks the voxel as failed.
    chunk_voxels : int, optional
        Voxels fitted together; by default chosen so the working memory of one chunk stays near
        128 MiB.
    mask : ndarray of bool, shape (...), optional
        Voxels to fit; the others get NaN and ``FailureReason.OUTSIDE_MASK``.
    progress : callable(fraction, message), optional
        Called after every chunk; an exception it raises (e.g. to cancel) propagates.
    workers : int
        Threads fitting chunks in parallel (numpy releases the interpreter lock in its array
        operations); the result does not depend on it.

    Returns
    -------
    FitResult
        Maps in field units (Ktrans, kep, PS in /min; Fp in ml/100ml/min; ve, vp, E fractions;
        MTT, Tc and delay in s); derived quantities are defined per model in
        :mod:`DCEKineticsLib.models`.
    """
    spec = get_model(model)
    n_parameters = len(spec.parameters) + int(fit_delay)
    data, times, aif, mask = _validated_inputs(concentration, times_s, aif_plasma_mM, mask, n_parameters)
    parameters = spec.parameters
    grid = None
    if fit_delay:
        if not np.isfinite(max_delay_s) or max_delay_s <= 0:
            raise InputError(f"max_delay_s = {max_delay_s} is not a positive number of seconds: give the "
                             "largest arrival delay to consider, e.g. 10")
        parameters += (ParameterSpec("delay", "s", 0.0, float(max_delay_s), _DELAY_TYPICAL_S,
                                     "arrival delay of tissue after the AIF", False),)
        grid = _delay_grid(times, float(max_delay_s))
    problem = _Problem(spec, SampledAIF.from_samples(times, aif), parameters, grid)
    if chunk_voxels is None:
        chunk_voxels = _default_chunk(times.size, n_parameters, problem.n_starts)
    if int(chunk_voxels) < 1 or int(workers) < 1:
        raise InputError(f"chunk_voxels = {chunk_voxels} and workers = {workers}: give positive integers for "
                         "both")

    spatial_shape = data.shape[:-1]
    flat = data.reshape(-1, times.size)
    flat_mask = None if mask is None else mask.reshape(-1)
    n_voxels = flat.shape[0]
    outputs = _Outputs.empty(len(parameters), n_voxels)

    def fit_chunk(first: int, last: int) -> None:
        outputs.fill(problem, flat[first:last], None if flat_mask is None else flat_mask[first:last], first)

    def report(last: int) -> None:
        if progress is not None:
            progress(last / n_voxels, f"fitting {spec.name}: {last} of {n_voxels} voxels")

    _run_chunks(fit_chunk, n_voxels, int(chunk_voxels), int(workers), report)

    rows = zip(parameters, outputs.estimates, strict=True)
    maps = {p.name: row.reshape(spatial_shape) for p, row in rows}
    maps.update(spec.derived(maps))
    units = {p.name: p.unit for p in parameters} | spec.derived_units
    reason = outputs.reason
    failed = (reason != FailureReason.OK) & (reason != FailureReason.OUTSIDE_MASK)
    return FitResult(spec.name, maps, units, outputs.r_squared.reshape(spatial_shape),
                     outputs.residual_rms.reshape(spatial_shape), failed.reshape(spatial_shape),
                     reason.reshape(spatial_shape), int(np.count_nonzero(reason == FailureReason.OK)),
                     int(np.count_nonzero(failed)))
