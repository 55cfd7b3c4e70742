"""Forward tracer-kinetic models of DCE-MRI and the model registry.

Every model predicts the tissue concentration ``C_t(t)`` (mM) from the arterial plasma
concentration ``C_p(t)`` (mM), both sampled at the same times (s). Parameters are given in the units
the field reports: Ktrans and PS in /min, Fp in ml/100ml/min, ve and vp as volume fractions.

Models and impulse responses ``R(t)`` (``C_t = R * C_p``, lower-case rates in /s):

* standard Tofts: ``R = Ktrans exp(-kep t)``, ``kep = Ktrans / ve`` (Tofts et al., JMRI 1999;10:223);
* extended Tofts: ``vp delta(t) + Ktrans exp(-kep t)`` (Tofts et al. 1999);
* Patlak: ``vp delta(t) + Ktrans`` (Patlak et al., JCBFM 1983;3:1);
* two-compartment exchange (2CXM): ``Fp [a+ exp(-k+ t) + a- exp(-k- t)]`` with
  ``k+ k- = Fp PS / (vp ve)``, ``k+ + k- = (Fp + PS) / vp + PS / ve`` (Brix et al., MRM 2004;52:420;
  Sourbron & Buckley, MRM 2011;66:735);
* two-compartment uptake (2CUM): ``Fp [E + (1 - E) exp(-(Fp + PS) t / vp)]``,
  ``E = PS / (Fp + PS)`` (Sourbron & Buckley, NMR Biomed 2013;26:1004);
* adiabatic approximation to tissue homogeneity (AATH): ``Fp`` for ``0 <= t < Tc`` and
  ``E Fp exp(-E Fp (t - Tc) / ve)`` after, ``Tc = vp / Fp``, ``E = 1 - exp(-PS / Fp)``
  (St Lawrence & Lee, JCBFM 1998;18:1365).

Convolution. The plasma curve is taken as piecewise linear between its samples, and every model is a
sum of terms ``b C_p(t) + g I(t) + sum_j A_j X_j(t)`` with ``I(t)`` the running integral of ``C_p`` and
``X_j(t) = int_{t0}^{t} C_p(u) exp(-k_j (t - u)) du``. For a linear ``C_p`` on ``[t_i, t_i + h]`` the
exponential integral is exact:

    X(t_i + h) = exp(-k h) X(t_i) + h [g0(kh) C_p(t_i) + g1(kh) C_p(t_i + h)],
    g0(x) = (1 - (1 + x) e^-x) / x^2,   g1(x) = (x - 1 + e^-x) / x^2,

and its derivative with respect to ``k`` follows the same recursion. So the models are exact for
the interpolated input at any (also non-uniform, coarse) sampling, and the recursion runs over time
with numpy operations over all voxels at once. Arrays inside the evaluation kernels are time-major
``(T, N)`` (voxel axis last) so that each recursion step touches one contiguous row; the public
forward functions take and return ``(..., T)`` arrays.

Delay. Tissue that enhances ``d`` seconds after the AIF is the model evaluated at ``t - d``; the
kernels evaluate every term exactly there (advancing it from the start of the sampling interval that
holds ``t - d``), so a fitted delay does not smooth the AIF. :func:`delay_aif` instead resamples the
AIF itself by linear interpolation.

Derivatives. A model's Jacobian is a combination of a few basis curves (``C_p``, ``I``, ``X_j``,
``dX_j/dk_j``) with per-voxel weights (:class:`FactoredJacobian`); the weights, derivatives of the
term coefficients with respect to the parameters, are computed by complex-step differentiation
(Squire & Trapp, SIAM Rev 1998;40:110), exact to rounding error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter
from SpatioTemporalCommonLib.errors import InputError

SECONDS_PER_MINUTE = 60.0
"""Conversion of rate constants given per minute (Ktrans, PS) to per second."""

FLOW_UNIT_PER_SECOND = 6000.0
"""Conversion of Fp in ml/100ml/min to ml/ml/s (divide by this)."""

_SERIES_LIMIT = 0.1
_SERIES_TERMS = 8
_COMPLEX_STEP = 1e-20
_STEP_DECIMALS = 9
_FILTER_VOXELS_PER_STEP = 4


# ---------------------------------------------------------------------------------------------------
# Sampled arterial input
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampledAIF:
    """A plasma input function sampled at the acquisition times, in the layout of the kernels.

    Attributes
    ----------
    times_s : ndarray, shape (T,)
        Strictly increasing sample times (s).
    samples : ndarray, shape (T, 1) or (T, N)
        Plasma concentration (mM), shared by all voxels (one column) or one column per voxel.
    cumulative : ndarray, same shape as ``samples``
        Running integral of the piecewise-linear input from ``times_s[0]`` (mM s).
    step_group : ndarray of int, shape (T - 1,)
        Index into ``group_steps_s`` of each sampling interval.
    group_steps_s : ndarray, shape (G,)
        The distinct sampling intervals (s); one value for a uniform grid.
    """

    times_s: np.ndarray
    samples: np.ndarray
    cumulative: np.ndarray
    step_group: np.ndarray
    group_steps_s: np.ndarray

    @classmethod
    def from_samples(cls, times_s: np.ndarray, samples: np.ndarray) -> SampledAIF:
        """Build from validated times (T,) and samples (T,) or time-major (T, N), in mM."""
        times = np.asarray(times_s, dtype=float)
        values = np.asarray(samples, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        steps = np.diff(times)
        group_steps, step_group = np.unique(np.round(steps, _STEP_DECIMALS), return_inverse=True)
        return cls(times, values, cumulative_integral(values, times), step_group.ravel(), group_steps)

    @property
    def steps_s(self) -> np.ndarray:
        """Sampling intervals (s), shape (T - 1,)."""
        return np.diff(self.times_s)

    def shifted(self, delay_s: np.ndarray) -> SampledAIF:
        """Samples of ``C_p(t - delay)`` by linear interpolation, zero before the first sample.

        ``delay_s`` (s, >= 0) has shape (N,); the result has one column per delay.
        """
        at = InputAtLag.of(self, np.asarray(delay_s, dtype=float))
        return SampledAIF.from_samples(self.times_s, at.plasma)


def _take_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows[t, n], n]`` for time-major values with one shared or N columns."""
    if values.shape[1] == 1:
        return values[rows, 0]
    return np.take_along_axis(values, rows, axis=0)


def cumulative_integral(values: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Running trapezoid integral along the first (time) axis, zero at the first sample.

    Exact for piecewise-linear curves. ``values`` is time-major ``(T, ...)``; returns the same shape
    in value units times seconds.
    """
    steps = np.diff(times_s).reshape((-1,) + (1,) * (values.ndim - 1))
    result = np.empty(values.shape, dtype=float)
    result[0] = 0.0
    np.cumsum(0.5 * (values[1:] + values[:-1]) * steps, axis=0, out=result[1:])
    return result


class InputAtLag(NamedTuple):
    """The piecewise-linear input at the shifted times ``t - lag`` (all arrays time-major (T, N)).

    ``segment`` is the sampling interval holding each shifted time and ``offset`` (s) its distance
    from the interval start; ``slope`` is ``dC_p/dt`` there (mM/s). Values before the first sample
    are zero (``before``).
    """

    segment: np.ndarray
    offset: np.ndarray
    before: np.ndarray
    plasma: np.ndarray
    slope: np.ndarray
    integral: np.ndarray

    @classmethod
    def of(cls, aif: SampledAIF, lag_s: np.ndarray) -> InputAtLag:
        """Locate ``t - lag`` for per-voxel lags (N,) (s, >= 0) and interpolate the input there."""
        times = aif.times_s
        positions = times[:, None] - lag_s[None, :]
        segment = np.clip(np.searchsorted(times, positions, side="right") - 1, 0, times.size - 2)
        before = positions < times[0]
        offset = np.where(before, 0.0, positions - times[segment])
        start = _take_rows(aif.samples, segment)
        rise = _take_rows(aif.samples, segment + 1) - start
        slope = np.where(before, 0.0, rise / aif.steps_s[segment])
        plasma = np.where(before, 0.0, start + slope * offset)
        area = _take_rows(aif.cumulative, segment) + 0.5 * (start + plasma) * offset
        integral = np.where(before, 0.0, area)
        return cls(segment, offset, before, plasma, slope, integral)


# ---------------------------------------------------------------------------------------------------
# Exact convolution of a piecewise-linear input with exponentials
# ---------------------------------------------------------------------------------------------------


class StepWeights(NamedTuple):
    """Weights of one recursion step of length ``h`` for decay rate ``k`` (see module docstring)."""

    decay: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_rate_derivative: np.ndarray | None
    end_rate_derivative: np.ndarray | None


def _series(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """Evaluate ``sum_n coefficients[n] x**n`` by Horner's rule."""
    result = np.full(np.shape(x), coefficients[-1])
    for coefficient in coefficients[-2::-1]:
        result = result * x + coefficient
    return result


_G0 = [(-1) ** n * (n + 1) / factorial(n + 2) for n in range(_SERIES_TERMS)]
_G1 = [(-1) ** n / factorial(n + 2) for n in range(_SERIES_TERMS)]
_G0_DERIVATIVE = [(-1) ** n * n * (n + 1) / factorial(n + 2) for n in range(1, _SERIES_TERMS + 1)]
_G1_DERIVATIVE = [(-1) ** n * n / factorial(n + 2) for n in range(1, _SERIES_TERMS + 1)]


def step_weights(rate_per_s: np.ndarray, step_s: np.ndarray, derivative: bool) -> StepWeights:
    """Recursion weights for rates ``k`` (/s, >= 0) and step lengths ``h`` (s), broadcast together.

    Returns ``exp(-k h)``, ``h g0(k h)``, ``h g1(k h)`` and, when ``derivative`` is true, their
    ``k``-derivatives ``h^2 g0'(k h)``, ``h^2 g1'(k h)``. Small ``k h`` use the Taylor series, so
    ``k = 0`` gives the trapezoid rule.
    """
    x = rate_per_s * step_s
    small = x < _SERIES_LIMIT
    xs = np.where(small, 1.0, x)
    exp_neg = np.exp(-xs)
    decay = np.exp(-x)
    g0 = np.where(small, _series(x, _G0), (-np.expm1(-xs) - xs * exp_neg) / xs**2)
    g1 = np.where(small, _series(x, _G1), (xs + np.expm1(-xs)) / xs**2)
    if not derivative:
        return StepWeights(decay, step_s * g0, step_s * g1, None, None)
    g0_prime = np.where(small, _series(x, _G0_DERIVATIVE), ((xs**2 + 2 * xs + 2) * exp_neg - 2) / xs**3)
    g1_prime = np.where(small, _series(x, _G1_DERIVATIVE), (2 - xs - (2 + xs) * exp_neg) / xs**3)
    step_squared = step_s * step_s
    return StepWeights(decay, step_s * g0, step_s * g1, step_squared * g0_prime, step_squared * g1_prime)


def _run_recursion(decay_rows: np.ndarray, step_group: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Solve ``Y[i+1] = decay[group[i]] * Y[i] + source[i]``, ``Y[0] = 0``, time-major.

    Many voxels: one vectorised update per time step. Few voxels on a uniform grid: one first-order
    recursive filter per voxel (``scipy.signal.lfilter``), which avoids a Python step per sample.
    """
    n_steps, n_voxels = source.shape
    result = np.empty((n_steps + 1, n_voxels))
    result[0] = 0.0
    if decay_rows.shape[0] == 1 and n_voxels * _FILTER_VOXELS_PER_STEP < n_steps:
        for n in range(n_voxels):
            result[1:, n] = lfilter([1.0], [1.0, -decay_rows[0, n]], source[:, n])
        return result
    scratch = np.empty(n_voxels)
    for i in range(n_steps):
        np.multiply(decay_rows[step_group[i]], result[i], out=scratch)
        np.add(scratch, source[i], out=result[i + 1])
    return result


def exponential_convolution(aif: SampledAIF, rate_per_s: np.ndarray,
                            derivative: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``X(t) = int C_p(u) exp(-k (t - u)) du`` from the first sample, exact for piecewise-linear input.

    Parameters
    ----------
    aif : SampledAIF
        Plasma input (mM), shared or per voxel.
    rate_per_s : ndarray, shape (N,)
        Decay rate ``k`` of each voxel (/s, >= 0).
    derivative : bool
        Also return ``dX/dk``.

    Returns
    -------
    convolution : ndarray, shape (T, N)
        ``X`` in mM s.
    rate_derivative : ndarray, shape (T, N), or None
        ``dX/dk`` in mM s^2.
    """
    rate = np.asarray(rate_per_s, dtype=float)
    weights = step_weights(rate[None, :], aif.group_steps_s[:, None], derivative)
    group = aif.step_group
    rows = slice(None) if aif.group_steps_s.size == 1 else group
    samples = aif.samples
    source = weights.start[rows] * samples[:-1] + weights.end[rows] * samples[1:]
    convolution = _run_recursion(weights.decay, group, source)
    if not derivative:
        return convolution, None
    step = aif.group_steps_s[:, None]
    source = (weights.start_rate_derivative[rows] * samples[:-1]
              + weights.end_rate_derivative[rows] * samples[1:]
              - (step * weights.decay)[rows] * convolution[:-1])
    return convolution, _run_recursion(weights.decay, group, source)


def convolution_at_lag(aif: SampledAIF, rate_per_s: np.ndarray, at: InputAtLag,
                       derivative: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``X_k`` (and ``dX_k/dk``) of :func:`exponential_convolution` at the shifted times ``t - lag``.

    Exact for piecewise-linear input: from the start of the interval holding ``t - lag`` the
    convolution is advanced by the step formula over the remaining ``offset``. Zero before the
    first sample. Shapes (T, N).
    """
    rate = np.asarray(rate_per_s, dtype=float)
    grid, grid_derivative = exponential_convolution(aif, rate, derivative)
    start = _take_rows(aif.samples, at.segment)
    weights = step_weights(rate[None, :], at.offset, derivative)
    grid_start = np.take_along_axis(grid, at.segment, axis=0)
    convolution = weights.decay * grid_start + weights.start * start + weights.end * at.plasma
    convolution[at.before] = 0.0
    if not derivative:
        return convolution, None
    rate_derivative = (weights.decay * (np.take_along_axis(grid_derivative, at.segment, axis=0)
                                        - at.offset * grid_start)
                       + weights.start_rate_derivative * start + weights.end_rate_derivative * at.plasma)
    rate_derivative[at.before] = 0.0
    return convolution, rate_derivative


# ---------------------------------------------------------------------------------------------------
# Models as sums of exponential terms
# ---------------------------------------------------------------------------------------------------


class ExponentialTerms(NamedTuple):
    """``C_t = plasma C_p + integral I + sum_j amplitudes[j] X_{rates[j]}`` (see module docstring).

    ``plasma`` is dimensionless, ``integral``, amplitudes and rates are in /s; ``None`` marks an
    absent term. Arrays have shape (N,) (or (P, N) for derivatives).
    """

    plasma: np.ndarray | None
    integral: np.ndarray | None
    amplitudes: tuple[np.ndarray, ...]
    rates: tuple[np.ndarray, ...]


def _tofts_terms(theta: np.ndarray) -> ExponentialTerms:
    """Standard Tofts, theta = (Ktrans, ve): one exponential, rate kep."""
    ktrans, ve = theta[0] / SECONDS_PER_MINUTE, theta[1]
    return ExponentialTerms(None, None, (ktrans,), (ktrans / ve,))


def _extended_tofts_terms(theta: np.ndarray) -> ExponentialTerms:
    """Extended Tofts, theta = (Ktrans, ve, vp): plasma term plus one exponential."""
    ktrans, ve, vp = theta[0] / SECONDS_PER_MINUTE, theta[1], theta[2]
    return ExponentialTerms(vp, None, (ktrans,), (ktrans / ve,))


def _patlak_terms(theta: np.ndarray) -> ExponentialTerms:
    """Patlak, theta = (Ktrans, vp): plasma term plus the running integral."""
    return ExponentialTerms(theta[1], theta[0] / SECONDS_PER_MINUTE, (), ())


def _exchange_terms(theta: np.ndarray) -> ExponentialTerms:
    """2CXM, theta = (Fp, PS, ve, vp): two exponentials (the slow rate written to avoid cancellation)."""
    fp, ps = theta[0] / FLOW_UNIT_PER_SECOND, theta[1] / SECONDS_PER_MINUTE
    ve, vp = theta[2], theta[3]
    rate_sum = (fp + ps) / vp + ps / ve
    rate_product = fp * ps / (vp * ve)
    root = np.sqrt(rate_sum * rate_sum - 4.0 * rate_product)
    fast = 0.5 * (rate_sum + root)
    slow = 2.0 * rate_product / (rate_sum + root)
    backflux = ps / ve + ps / vp
    fast_fraction = (fast - backflux) / root
    return ExponentialTerms(None, None, (fp * fast_fraction, fp * (1.0 - fast_fraction)), (fast, slow))


def _uptake_terms(theta: np.ndarray) -> ExponentialTerms:
    """2CUM, theta = (Fp, PS, vp): running integral (uptake E Fp) plus one exponential."""
    fp, ps, vp = theta[0] / FLOW_UNIT_PER_SECOND, theta[1] / SECONDS_PER_MINUTE, theta[2]
    return ExponentialTerms(None, fp * ps / (fp + ps), (fp * fp / (fp + ps),), ((fp + ps) / vp,))


def _complex_step(function: Callable[[np.ndarray], object], theta: np.ndarray, p: int) -> object:
    """``function`` evaluated at ``theta`` plus an imaginary step in parameter ``p`` (complex-step
    differentiation: the imaginary part divided by the step is the derivative to machine precision)."""
    direction = np.zeros((theta.shape[0], 1))
    direction[p] = _COMPLEX_STEP
    return function(theta + 1j * direction)


def _derivative(value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Real derivative from a complex-step evaluation (an absent term has derivative zero)."""
    if value is None:
        return np.zeros(shape)
    return np.broadcast_to(np.imag(value) / _COMPLEX_STEP, shape)


def _time_sum(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``sum_t first[t, n] second[t, n]`` for time-major arrays with one shared or N columns."""
    return np.einsum("tn,tn->n", first, second)


class FactoredJacobian(NamedTuple):
    """Jacobian of a prediction as ``J[p] = sum_b coefficients[p, b] * bases[b]``.

    The models' derivatives are combinations of a few curves (the input, its integral, the
    exponential convolutions and their rate derivatives), so the normal equations of a least-squares
    step need only the small Gram matrix of those curves, and ``J`` itself is never formed.

    Attributes
    ----------
    bases : tuple of ndarray, each (T, 1) or (T, N)
        Time-major basis curves, shared by all voxels (one column) or per voxel.
    coefficients : ndarray, shape (P, B, N)
        Weight of basis ``b`` in the derivative with respect to parameter ``p``.
    """

    bases: tuple[np.ndarray, ...]
    coefficients: np.ndarray

    def dense(self) -> np.ndarray:
        """The Jacobian as an array (P, T, N)."""
        size, _, n_voxels = self.coefficients.shape
        result = np.zeros((size, self.bases[0].shape[0], n_voxels))
        for p in range(size):
            for basis, weight in zip(self.bases, self.coefficients[p], strict=True):
                result[p] += weight * basis
        return result

    def normal_equations(self, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``J^T J`` (P, P, N) and ``J^T residual`` (P, N) for a time-major residual (T, N)."""
        count, n_voxels = len(self.bases), residual.shape[1]
        gram = np.empty((count, count, n_voxels))
        for b in range(count):
            for c in range(b + 1):
                gram[b, c] = gram[c, b] = _time_sum(self.bases[b], self.bases[c])
        projections = np.stack([_time_sum(basis, residual) for basis in self.bases])
        weights = self.coefficients
        normal = np.einsum("pbn,bcn,qcn->pqn", weights, gram, weights)
        return normal, np.einsum("pbn,bn->pn", weights, projections)


def _add_scaled(target: np.ndarray, coefficient: np.ndarray | None, basis: np.ndarray) -> None:
    """``target += coefficient * basis`` unless the term is absent."""
    if coefficient is not None:
        target += coefficient * basis


def _exponential_sum_evaluator(terms_function: Callable[[np.ndarray], ExponentialTerms]) -> Callable:
    """Build the time-major kernel of a model given as a sum of exponential terms."""

    def evaluate(theta: np.ndarray, aif: SampledAIF, jacobian: bool,
                 lag_s: np.ndarray | None = None) -> tuple[np.ndarray, FactoredJacobian | None]:
        terms = terms_function(theta)
        shape = theta.shape[1:]
        rates = [np.broadcast_to(rate, shape) for rate in terms.rates]
        lagged = lag_s is not None
        if lagged:
            at = InputAtLag.of(aif, lag_s)
            plasma, integral, slope = at.plasma, at.integral, at.slope
            convolutions = [convolution_at_lag(aif, rate, at, jacobian) for rate in rates]
        else:
            plasma, integral, slope = aif.samples, aif.cumulative, None
            convolutions = [exponential_convolution(aif, rate, jacobian) for rate in rates]
        prediction = np.zeros((aif.times_s.size, *shape))
        _add_scaled(prediction, terms.plasma, plasma)
        _add_scaled(prediction, terms.integral, integral)
        for amplitude, (convolution, _) in zip(terms.amplitudes, convolutions, strict=True):
            prediction += amplitude * convolution
        if not jacobian:
            return prediction, None
        steps = [_complex_step(terms_function, theta, p) for p in range(theta.shape[0])]

        def column(derivatives: list, lag_weight: np.ndarray | float = 0.0) -> np.ndarray:
            rows = [_derivative(value, shape) for value in derivatives]
            return np.stack([*rows, np.broadcast_to(lag_weight, shape)] if lagged else rows)

        bases, columns = [], []
        if terms.plasma is not None or lagged:
            outflow = sum(terms.amplitudes, np.zeros(shape))
            if terms.integral is not None:
                outflow = outflow + terms.integral
            bases.append(plasma)
            columns.append(column([s.plasma for s in steps], -outflow))
        if terms.integral is not None:
            bases.append(integral)
            columns.append(column([s.integral for s in steps]))
        if lagged and terms.plasma is not None:
            bases.append(slope)
            columns.append(column([None] * len(steps), -terms.plasma))
        for j, (convolution, rate_derivative) in enumerate(convolutions):
            bases.append(convolution)
            columns.append(column([s.amplitudes[j] for s in steps], terms.amplitudes[j] * rates[j]))
            bases.append(rate_derivative)
            columns.append(column([s.rates[j] for s in steps]) * terms.amplitudes[j])
        return prediction, FactoredJacobian(tuple(bases), np.stack(columns, axis=1))

    return evaluate


def _aath_terms(theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """AATH flow (/s), capillary transit time Tc (s), amplitude E Fp (/s) and rate E Fp / ve (/s)."""
    fp, ps = theta[0] / FLOW_UNIT_PER_SECOND, theta[1] / SECONDS_PER_MINUTE
    ve, vp = theta[2], theta[3]
    extraction = -np.expm1(-ps / fp)
    return fp, vp / fp, extraction * fp, extraction * fp / ve


def _evaluate_aath(theta: np.ndarray, aif: SampledAIF, jacobian: bool,
                   lag_s: np.ndarray | None = None) -> tuple[np.ndarray, FactoredJacobian | None]:
    """Time-major AATH kernel: ``Fp [I(t) - I(t - Tc)] + E Fp X_k(t - Tc)``, at ``t - lag`` if given.

    Derivatives (``Cp`` and ``X`` taken at ``t - lag - Tc``): ``dC/dFp = box``,
    ``dC/dTc = (Fp - E Fp) Cp + E Fp k X``, ``dC/d(E Fp) = X``, ``dC/dk = E Fp dX/dk`` and
    ``dC/dlag = -Fp Cp(t - lag) + (Fp - E Fp) Cp + E Fp k X``.
    """
    flow, transit, amplitude, rate = _aath_terms(theta)
    shape = theta.shape[1:]
    delay = np.zeros(shape) if lag_s is None else lag_s
    outflow = InputAtLag.of(aif, delay + transit)
    convolution, rate_derivative = convolution_at_lag(aif, rate, outflow, jacobian)
    arrival = None if lag_s is None else InputAtLag.of(aif, lag_s)
    box = (aif.cumulative if arrival is None else arrival.integral) - outflow.integral
    prediction = flow * box + amplitude * convolution
    if not jacobian:
        return prediction, None
    steps = [_complex_step(_aath_terms, theta, p) for p in range(theta.shape[0])]
    d_flow, d_transit, d_amplitude, d_rate = (np.stack([_derivative(step[i], shape) for step in steps])
                                              for i in range(4))
    columns = [d_flow, d_transit * (flow - amplitude), d_transit * amplitude * rate + d_amplitude,
               d_rate * amplitude]
    bases = [box, outflow.plasma, convolution, rate_derivative]
    if arrival is not None:
        lag_weights = (np.zeros(shape), flow - amplitude, amplitude * rate, np.zeros(shape))
        columns = [np.vstack([c, lag[None]]) for c, lag in zip(columns, lag_weights, strict=True)]
        bases.append(arrival.plasma)
        columns.append(np.vstack([np.zeros((theta.shape[0], *shape)), -flow[None]]))
    return prediction, FactoredJacobian(tuple(bases), np.stack(columns, axis=1))


# ---------------------------------------------------------------------------------------------------
# Public forward functions ((..., T) layout, field units)
# ---------------------------------------------------------------------------------------------------


def validated_times(times_s: np.ndarray) -> np.ndarray:
    """Return the sample times as a float array after checking they are usable (raises InputError)."""
    times = np.asarray(times_s, dtype=float)
    if times.ndim != 1 or times.size < 2:
        raise InputError(f"times_s has shape {times.shape}: give a 1-D array of at least 2 frame times in s")
    if not np.all(np.isfinite(times)):
        raise InputError("times_s contains NaN or infinite values: give finite frame times in s")
    if np.any(np.diff(times) <= 0):
        raise InputError("times_s is not strictly increasing: sort the frames by acquisition time (s)")
    return times


def validated_aif(aif_plasma_mM: np.ndarray, n_times: int) -> np.ndarray:
    """Return the plasma AIF as a float array after checking length and finiteness (raises InputError)."""
    aif = np.asarray(aif_plasma_mM, dtype=float)
    if aif.ndim < 1 or aif.shape[-1] != n_times:
        raise InputError(f"the AIF has shape {aif.shape} but there are {n_times} frame times: give one "
                         "plasma concentration (mM) per frame, time on the last axis")
    if not np.all(np.isfinite(aif)):
        raise InputError("the AIF contains NaN or infinite values: give finite plasma concentrations in mM")
    return aif


def validated_single_aif(aif_plasma_mM: np.ndarray, n_times: int) -> np.ndarray:
    """Like :func:`validated_aif` but require one curve of shape (T,) (raises InputError)."""
    aif = validated_aif(aif_plasma_mM, n_times)
    if aif.ndim != 1:
        raise InputError(f"the AIF has shape {aif.shape}: give one plasma curve of shape (T,)")
    return aif


def validated_concentration(concentration: np.ndarray, n_times: int) -> np.ndarray:
    """Return tissue curves ``(..., T)`` as an array of real numbers, dtype kept (raises InputError)."""
    data = np.asarray(concentration)
    if data.ndim < 1 or data.shape[-1] != n_times:
        raise InputError(f"concentration has shape {data.shape} but there are {n_times} frame times: "
                         "put time on the last axis, one sample per frame")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"concentration has dtype {data.dtype}: give real concentrations in mM")
    return data


def _forward(kernel: Callable, times_s: np.ndarray, aif_plasma_mM: np.ndarray,
             *parameters: np.ndarray) -> np.ndarray:
    """Evaluate a time-major kernel on broadcast field-unit parameters; return ``(..., T)``."""
    times = validated_times(times_s)
    aif = validated_aif(aif_plasma_mM, times.size)
    values = [np.asarray(p, dtype=float) for p in parameters]
    batch = np.broadcast_shapes(aif.shape[:-1], *(v.shape for v in values))
    theta = np.stack([np.broadcast_to(v, batch).reshape(-1) for v in values])
    if aif.ndim > 1:
        aif = np.broadcast_to(aif, (*batch, times.size)).reshape(-1, times.size).T
    sampled = SampledAIF.from_samples(times, aif)
    prediction, _ = kernel(theta, sampled, False)
    return np.ascontiguousarray(prediction.T).reshape((*batch, times.size))


_evaluate_tofts = _exponential_sum_evaluator(_tofts_terms)
_evaluate_extended_tofts = _exponential_sum_evaluator(_extended_tofts_terms)
_evaluate_patlak = _exponential_sum_evaluator(_patlak_terms)
_evaluate_exchange = _exponential_sum_evaluator(_exchange_terms)
_evaluate_uptake = _exponential_sum_evaluator(_uptake_terms)


def tofts(times_s: np.ndarray, aif_plasma_mM: np.ndarray, ktrans: np.ndarray, ve: np.ndarray) -> np.ndarray:
    """Standard Tofts model.

    Parameters
    ----------
    times_s : ndarray, shape (T,)
        Frame times (s), strictly increasing.
    aif_plasma_mM : ndarray, shape (T,) or (..., T)
        Arterial plasma concentration (mM).
    ktrans : array_like
        Volume transfer constant (/min).
    ve : array_like
        Extravascular extracellular volume fraction.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM); the leading shape broadcasts parameters and AIF.
    """
    return _forward(_evaluate_tofts, times_s, aif_plasma_mM, ktrans, ve)


def extended_tofts(times_s: np.ndarray, aif_plasma_mM: np.ndarray, ktrans: np.ndarray, ve: np.ndarray,
                   vp: np.ndarray) -> np.ndarray:
    """Extended Tofts model (Tofts plus plasma volume ``vp`` times the AIF).

    Parameters
    ----------
    times_s, aif_plasma_mM
        As in :func:`tofts` (s, mM).
    ktrans : array_like
        Volume transfer constant (/min).
    ve, vp : array_like
        Extravascular extracellular and plasma volume fractions.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM).
    """
    return _forward(_evaluate_extended_tofts, times_s, aif_plasma_mM, ktrans, ve, vp)


def patlak(times_s: np.ndarray, aif_plasma_mM: np.ndarray, ktrans: np.ndarray, vp: np.ndarray) -> np.ndarray:
    """Patlak model: ``vp C_p(t) + Ktrans int C_p`` (irreversible uptake).

    Parameters
    ----------
    times_s, aif_plasma_mM
        As in :func:`tofts` (s, mM).
    ktrans : array_like
        Unidirectional transfer constant (/min).
    vp : array_like
        Plasma volume fraction.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM).
    """
    return _forward(_evaluate_patlak, times_s, aif_plasma_mM, ktrans, vp)


def two_compartment_exchange(times_s: np.ndarray, aif_plasma_mM: np.ndarray, fp: np.ndarray, ps: np.ndarray,
                             ve: np.ndarray, vp: np.ndarray) -> np.ndarray:
    """Two-compartment exchange model (2CXM).

    Parameters
    ----------
    times_s, aif_plasma_mM
        As in :func:`tofts` (s, mM).
    fp : array_like
        Plasma flow (ml/100ml/min).
    ps : array_like
        Permeability-surface area product (/min).
    ve, vp : array_like
        Extravascular extracellular and plasma volume fractions.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM).
    """
    return _forward(_evaluate_exchange, times_s, aif_plasma_mM, fp, ps, ve, vp)


def two_compartment_uptake(times_s: np.ndarray, aif_plasma_mM: np.ndarray, fp: np.ndarray, ps: np.ndarray,
                           vp: np.ndarray) -> np.ndarray:
    """Two-compartment uptake model (2CUM; no backflux from the interstitium).

    Parameters
    ----------
    times_s, aif_plasma_mM
        As in :func:`tofts` (s, mM).
    fp : array_like
        Plasma flow (ml/100ml/min).
    ps : array_like
        Permeability-surface area product (/min).
    vp : array_like
        Plasma volume fraction.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM).
    """
    return _forward(_evaluate_uptake, times_s, aif_plasma_mM, fp, ps, vp)


def aath(times_s: np.ndarray, aif_plasma_mM: np.ndarray, fp: np.ndarray, ps: np.ndarray, ve: np.ndarray,
         vp: np.ndarray) -> np.ndarray:
    """Adiabatic approximation to the tissue homogeneity model (AATH).

    Parameters
    ----------
    times_s, aif_plasma_mM
        As in :func:`tofts` (s, mM).
    fp : array_like
        Plasma flow (ml/100ml/min).
    ps : array_like
        Permeability-surface area product (/min); extraction ``E = 1 - exp(-PS/Fp)``.
    ve, vp : array_like
        Extravascular extracellular and plasma volume fractions; capillary transit ``Tc = vp/Fp``.

    Returns
    -------
    ndarray, shape (..., T)
        Tissue concentration (mM).
    """
    return _forward(_evaluate_aath, times_s, aif_plasma_mM, fp, ps, ve, vp)


def delay_aif(times_s: np.ndarray, aif_plasma_mM: np.ndarray, delay_s: np.ndarray) -> np.ndarray:
    """Delay an AIF by a (fractional) time by linear interpolation, zero before the first sample.

    Parameters
    ----------
    times_s : ndarray, shape (T,)
        Frame times (s).
    aif_plasma_mM : ndarray, shape (T,)
        Plasma concentration (mM).
    delay_s : array_like
        Delays (s, >= 0); any shape.

    Returns
    -------
    ndarray, shape (delay_s.shape + (T,))
        ``C_p(t - delay)`` in mM.
    """
    times = validated_times(times_s)
    aif = validated_single_aif(aif_plasma_mM, times.size)
    delays = np.asarray(delay_s, dtype=float)
    if not np.all(np.isfinite(delays)) or np.any(delays < 0):
        raise InputError("delay_s must be finite and >= 0 s: give the arrival delay of tissue after the AIF")
    delayed = SampledAIF.from_samples(times, aif).shifted(delays.reshape(-1))
    return np.ascontiguousarray(delayed.samples.T).reshape((*delays.shape, times.size))


# ---------------------------------------------------------------------------------------------------
# Derived quantities
# ---------------------------------------------------------------------------------------------------


def _tofts_derived(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """kep = Ktrans/ve (/min); MTT = ve/Ktrans, mean transit time of the interstitium (s)."""
    ktrans, ve = parameters["Ktrans"], parameters["ve"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"kep": ktrans / ve, "MTT": SECONDS_PER_MINUTE * ve / ktrans}


def _patlak_derived(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Patlak has no outflow, hence no transit time and no further quantities."""
    return {}


def _exchange_derived(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """E = PS/(PS+Fp); Ktrans = E Fp (/min); MTT = (vp+ve)/Fp, whole-tissue mean transit time (s)."""
    fp, ps = parameters["Fp"] / 100.0, parameters["PS"]
    with np.errstate(divide="ignore", invalid="ignore"):
        extraction = ps / (ps + fp)
        mtt = SECONDS_PER_MINUTE * (parameters["vp"] + parameters["ve"]) / fp
    return {"E": extraction, "Ktrans": extraction * fp, "MTT": mtt}


def _uptake_derived(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """E = PS/(PS+Fp); Ktrans = E Fp (/min); MTT = vp/(Fp+PS), plasma mean transit time (s)."""
    fp, ps = parameters["Fp"] / 100.0, parameters["PS"]
    with np.errstate(divide="ignore", invalid="ignore"):
        extraction = ps / (ps + fp)
        mtt = SECONDS_PER_MINUTE * parameters["vp"] / (fp + ps)
    return {"E": extraction, "Ktrans": extraction * fp, "MTT": mtt}


def _aath_derived(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """E = 1 - exp(-PS/Fp); Ktrans = E Fp (/min); Tc = vp/Fp (s); MTT = (vp+ve)/Fp (s)."""
    fp, ps = parameters["Fp"] / 100.0, parameters["PS"]
    with np.errstate(divide="ignore", invalid="ignore"):
        extraction = -np.expm1(-ps / fp)
        transit = SECONDS_PER_MINUTE * parameters["vp"] / fp
        mtt = SECONDS_PER_MINUTE * (parameters["vp"] + parameters["ve"]) / fp
    return {"E": extraction, "Ktrans": extraction * fp, "Tc": transit, "MTT": mtt}


# ---------------------------------------------------------------------------------------------------
# Further starting points for models with local minima
# ---------------------------------------------------------------------------------------------------

_AATH_START_TRANSIT_TIMES_S = (2.0, 6.0, 18.0, 54.0)


def _exchange_alternative_starts(primary: np.ndarray) -> list[np.ndarray]:
    """2CXM: also start from typical tissue values, in case the linear solution is far off."""
    return [np.broadcast_to(MODELS["2cxm"].typical_values[:, None], primary.shape).copy()]


def _aath_alternative_starts(primary: np.ndarray) -> list[np.ndarray]:
    """AATH: the residual is multimodal in the capillary transit time ``Tc = vp/Fp``.

    Start also from Tc = 2, 6, 18 and 54 s (vp set from the primary Fp), with a typical PS where the
    primary start has none (a 2CXM linear start gives PS = 0 for long transit times).
    """
    spec = MODELS["aath"]
    starts = []
    for transit in _AATH_START_TRANSIT_TIMES_S:
        start = primary.copy()
        start[1] = np.where(primary[1] > 0, primary[1], spec.typical_values[1])
        plasma_volume = transit * primary[0] / FLOW_UNIT_PER_SECOND
        start[3] = np.clip(plasma_volume, spec.lower_bounds[3], spec.upper_bounds[3])
        starts.append(start)
    return starts


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSpec:
    """One fitted parameter: name, unit, bounds, a typical value and whether a bound means failure.

    ``typical`` is a tissue-like value (used as a fallback starting value and as the parameter's
    scale). A parameter on a bound flagged as failing (e.g. ve = 1, Fp at its maximum) says the data
    did not determine it; ``Ktrans = 0`` or ``vp = 0`` are meaningful answers and are not flagged.
    """

    name: str
    unit: str
    lower: float
    upper: float
    typical: float
    description: str
    lower_bound_fails: bool
    upper_bound_fails: bool = True


@dataclass(frozen=True)
class KineticModel:
    """A registered model.

    Attributes
    ----------
    name : str
        Registry key.
    description : str
        One line for users.
    parameters : tuple of ParameterSpec
        Fitted parameters, in the order of ``forward`` and ``evaluate``.
    forward : callable
        ``forward(times_s, aif_plasma_mM, *parameters) -> (..., T)`` in field units.
    evaluate : callable
        Time-major kernel ``evaluate(theta (P, N), aif: SampledAIF, jacobian: bool, lag_s=None)``
        returning the prediction (T, N) and, when asked, its :class:`FactoredJacobian` with respect
        to ``theta``. With per-voxel ``lag_s`` (N,) (s) the whole prediction is delayed exactly,
        ``C_t(t - lag)``, and the Jacobian gets a last row, the derivative with respect to the lag.
    derived : callable
        Maps a dict of fitted parameter maps to a dict of derived maps (documented per model).
    derived_units : dict
        Unit of every derived quantity.
    has_linear_solution : bool
        Whether a linear least-squares solution exists (see ``linear_fits``).
    alternative_starts : callable or None
        For models with known local minima: maps the primary starting values (P, N) to a list of
        further starting points; the fit keeps the lowest residual.
    """

    name: str
    description: str
    parameters: tuple[ParameterSpec, ...]
    forward: Callable[..., np.ndarray]
    evaluate: Callable[..., tuple[np.ndarray, FactoredJacobian | None]]
    derived: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    derived_units: dict[str, str]
    has_linear_solution: bool
    alternative_starts: Callable[[np.ndarray], list[np.ndarray]] | None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the fitted parameters in order."""
        return tuple(p.name for p in self.parameters)

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds (field units), shape (P,)."""
        return np.array([p.lower for p in self.parameters])

    @property
    def upper_bounds(self) -> np.ndarray:
        """Upper bounds (field units), shape (P,)."""
        return np.array([p.upper for p in self.parameters])

    @property
    def typical_values(self) -> np.ndarray:
        """Typical values (field units), shape (P,)."""
        return np.array([p.typical for p in self.parameters])


_KTRANS = ParameterSpec("Ktrans", "/min", 0.0, 5.0, 0.1, "volume transfer constant", False)
_VE = ParameterSpec("ve", "", 1e-3, 1.0, 0.2, "extravascular extracellular volume fraction", True)
_VP = ParameterSpec("vp", "", 0.0, 1.0, 0.02, "plasma volume fraction", False)
_FP = ParameterSpec("Fp", "ml/100ml/min", 0.1, 1000.0, 30.0, "plasma flow", True)
_PS = ParameterSpec("PS", "/min", 0.0, 10.0, 0.1, "permeability-surface area product", False)
_VP_POSITIVE = ParameterSpec("vp", "", 1e-3, 1.0, 0.02, "plasma volume fraction", True)

MODELS: dict[str, KineticModel] = {
    "tofts": KineticModel(
        "tofts", "standard Tofts", (_KTRANS, _VE), tofts, _evaluate_tofts, _tofts_derived,
        {"kep": "/min", "MTT": "s"}, True, None),
    "extended-tofts": KineticModel(
        "extended-tofts", "extended Tofts", (_KTRANS, _VE, _VP), extended_tofts, _evaluate_extended_tofts,
        _tofts_derived, {"kep": "/min", "MTT": "s"}, True, None),
    "patlak": KineticModel(
        "patlak", "Patlak (irreversible uptake)", (_KTRANS, _VP), patlak, _evaluate_patlak, _patlak_derived,
        {}, True, None),
    "2cxm": KineticModel(
        "2cxm", "two-compartment exchange", (_FP, _PS, _VE, _VP_POSITIVE), two_compartment_exchange,
        _evaluate_exchange, _exchange_derived, {"E": "", "Ktrans": "/min", "MTT": "s"}, True,
        _exchange_alternative_starts),
    "2cum": KineticModel(
        "2cum", "two-compartment uptake", (_FP, _PS, _VP_POSITIVE), two_compartment_uptake, _evaluate_uptake,
        _uptake_derived, {"E": "", "Ktrans": "/min", "MTT": "s"}, True, None),
    "aath": KineticModel(
        "aath", "adiabatic approximation to tissue homogeneity", (_FP, _PS, _VE, _VP_POSITIVE), aath,
        _evaluate_aath, _aath_derived, {"E": "", "Ktrans": "/min", "Tc": "s", "MTT": "s"}, False,
        _aath_alternative_starts),
}
"""The registered models by name."""


def get_model(name: str) -> KineticModel:
    """Look up a model by registry name (raises InputError naming the valid choices)."""
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown kinetic model {name!r}: choose one of {', '.join(MODELS)}") from None
