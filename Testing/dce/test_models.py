"""Forward tracer-kinetic models against direct numerical convolution and analytic limits."""

from __future__ import annotations

import numpy as np
import pytest
from DCEKineticsLib import models
from DCEKineticsLib.models import MODELS, SampledAIF, exponential_convolution
from scipy.signal import fftconvolve
from SpatioTemporalCommonLib.errors import InputError

FINE_STEP_S = 0.01
UNIFORM_TIMES_S = np.arange(0.0, 240.0, 3.0)
MIXED_TIMES_S = np.concatenate([np.arange(0.0, 60.0, 2.5), np.arange(60.0, 240.0, 6.0), [240.0]])

# Parameter sets (field units) and the impulse response of each model (per second, t in s).
# AATH: Fp = 40 ml/100ml/min and vp = 0.05 give Tc = 7.5 s, a multiple of the fine step.
CASES = {
    "tofts": (0.25, 0.3),
    "extended-tofts": (0.25, 0.3, 0.05),
    "patlak": (0.05, 0.1),
    "2cxm": (40.0, 0.15, 0.2, 0.05),
    "2cum": (40.0, 0.15, 0.05),
    "aath": (40.0, 0.15, 0.2, 0.05),
}


def gamma_variate_aif(times_s: np.ndarray) -> np.ndarray:
    """A first pass (gamma variate, peak 6 mM at 18 s) plus a slow recirculation, in mM."""
    s = np.clip(np.asarray(times_s) - 10.0, 0.0, None)
    first_pass = 6.0 * (s / 8.0) ** 2 * np.exp(2.0 * (1.0 - s / 8.0))
    return first_pass + 1.5 * (1.0 - np.exp(-s / 30.0)) * np.exp(-s / 400.0)


def impulse_response(model: str, parameters: tuple, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Impulse response R(t) (/s) sampled at ``t`` and the coefficient of the AIF itself (vp)."""
    if model in ("tofts", "extended-tofts"):
        ktrans, ve = parameters[0] / 60.0, parameters[1]
        vp = parameters[2] if model == "extended-tofts" else 0.0
        return ktrans * np.exp(-ktrans / ve * t), vp
    if model == "patlak":
        return np.full_like(t, parameters[0] / 60.0), parameters[1]
    fp, ps = parameters[0] / 6000.0, parameters[1] / 60.0
    if model == "2cum":
        vp = parameters[2]
        extraction = ps / (fp + ps)
        return fp * (extraction + (1.0 - extraction) * np.exp(-(fp + ps) / vp * t)), 0.0
    ve, vp = parameters[2], parameters[3]
    if model == "2cxm":
        rates = np.roots([1.0, (fp + ps) / vp + ps / ve, fp * ps / (vp * ve)])
        fast, slow = -np.sort(rates)
        backflux = ps / ve + ps / vp
        fast_fraction = (fast - backflux) / (fast - slow)
        return fp * (fast_fraction * np.exp(-fast * t) + (1 - fast_fraction) * np.exp(-slow * t)), 0.0
    transit, extraction = vp / fp, 1.0 - np.exp(-ps / fp)
    response = np.where(t < transit, fp, fp * extraction * np.exp(-extraction * fp / ve * (t - transit)))
    response[np.isclose(t, transit)] = 0.5 * fp * (1.0 + extraction)
    return response, 0.0


def fine_convolution(model: str, parameters: tuple, times_s: np.ndarray) -> np.ndarray:
    """Trapezoid convolution on a 0.01 s grid of the piecewise-linear AIF through the coarse samples."""
    fine = np.arange(0.0, times_s[-1] + FINE_STEP_S / 2, FINE_STEP_S)
    aif = np.interp(fine, times_s, gamma_variate_aif(times_s))
    response, vp = impulse_response(model, parameters, fine)
    convolution = FINE_STEP_S * (fftconvolve(aif, response)[:fine.size] - 0.5 * aif * response[0])
    return np.interp(times_s, fine, convolution + vp * aif)


@pytest.mark.parametrize("times_s", [UNIFORM_TIMES_S, MIXED_TIMES_S], ids=["uniform", "mixed-steps"])
@pytest.mark.parametrize("model", list(CASES))
def test_forward_matches_fine_numerical_convolution(model: str, times_s: np.ndarray) -> None:
    parameters = CASES[model]
    predicted = MODELS[model].forward(times_s, gamma_variate_aif(times_s), *parameters)
    reference = fine_convolution(model, parameters, times_s)
    assert predicted.shape == times_s.shape
    np.testing.assert_allclose(predicted, reference, rtol=0, atol=2e-6 * np.max(np.abs(reference)))


def test_exponential_convolution_rate_derivative_and_zero_rate() -> None:
    aif = SampledAIF.from_samples(MIXED_TIMES_S, gamma_variate_aif(MIXED_TIMES_S))
    rates = np.array([0.0, 1e-4, 0.02, 3.0])
    values, derivative = exponential_convolution(aif, rates, derivative=True)
    np.testing.assert_allclose(values[:, 0], aif.cumulative[:, 0], rtol=1e-14, atol=1e-14)
    step = 1e-7
    upper, _ = exponential_convolution(aif, rates + step)
    lower, _ = exponential_convolution(aif, np.maximum(rates - step, 0.0))
    numeric = (upper - lower) / (rates + step - np.maximum(rates - step, 0.0))
    np.testing.assert_allclose(derivative, numeric, rtol=1e-5, atol=1e-6 * np.max(np.abs(derivative)))


def typical_parameters(model: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Parameter sets (P, count) drawn around each parameter's typical value."""
    typical = MODELS[model].typical_values[:, None]
    return typical * rng.uniform(0.5, 2.0, (typical.shape[0], count))


@pytest.mark.parametrize("with_lag", [False, True], ids=["no-lag", "lag"])
@pytest.mark.parametrize("model", list(CASES))
def test_factored_jacobian_matches_central_differences(model: str, with_lag: bool) -> None:
    rng = np.random.default_rng(3)
    spec = MODELS[model]
    aif = SampledAIF.from_samples(MIXED_TIMES_S, gamma_variate_aif(MIXED_TIMES_S))
    theta = typical_parameters(model, 4, rng)
    lag = rng.uniform(0.3, 4.7, 4) if with_lag else None
    _, linearisation = spec.evaluate(theta, aif, True, lag)
    analytic = linearisation.dense()
    point = theta if lag is None else np.vstack([theta, lag])
    assert analytic.shape == (point.shape[0], MIXED_TIMES_S.size, 4)

    def predict(values: np.ndarray) -> np.ndarray:
        if lag is None:
            return spec.evaluate(values, aif, False)[0]
        return spec.evaluate(values[:-1], aif, False, values[-1])[0]

    for p in range(point.shape[0]):
        step = np.zeros_like(point)
        step[p] = 1e-6 * np.abs(point[p])
        numeric = (predict(point + step) - predict(point - step)) / (2 * step[p])
        np.testing.assert_allclose(analytic[p], numeric, rtol=0, atol=1e-5 * np.max(np.abs(numeric)) + 1e-12)


def test_factored_normal_equations_match_dense_jacobian() -> None:
    rng = np.random.default_rng(4)
    spec = MODELS["2cxm"]
    aif = SampledAIF.from_samples(UNIFORM_TIMES_S, gamma_variate_aif(UNIFORM_TIMES_S))
    theta = typical_parameters("2cxm", 5, rng)
    lag = rng.uniform(0.0, 3.0, 5)
    _, linearisation = spec.evaluate(theta, aif, True, lag)
    residual = rng.normal(size=(UNIFORM_TIMES_S.size, 5))
    normal, gradient = linearisation.normal_equations(residual)
    dense = linearisation.dense()
    np.testing.assert_allclose(normal, np.einsum("ptn,qtn->pqn", dense, dense), rtol=1e-10)
    np.testing.assert_allclose(gradient, np.einsum("ptn,tn->pn", dense, residual), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", list(CASES))
def test_lag_delays_the_whole_prediction_exactly(model: str) -> None:
    spec = MODELS[model]
    aif_samples = gamma_variate_aif(MIXED_TIMES_S)
    theta = np.array(CASES[model], dtype=float)[:, None]
    lag = np.array([2.7])
    lagged, _ = spec.evaluate(theta, SampledAIF.from_samples(MIXED_TIMES_S, aif_samples), False, lag)
    fine = np.union1d(np.arange(0.0, MIXED_TIMES_S[-1], FINE_STEP_S), MIXED_TIMES_S)
    on_fine_grid = spec.forward(fine, np.interp(fine, MIXED_TIMES_S, aif_samples), *CASES[model])
    reference = np.interp(MIXED_TIMES_S - lag[0], fine, on_fine_grid, left=0.0)
    np.testing.assert_allclose(lagged[:, 0], reference, rtol=0, atol=1e-5 * np.max(np.abs(reference)))


def test_exchange_model_limits() -> None:
    times = UNIFORM_TIMES_S
    aif = gamma_variate_aif(times)
    scale = np.max(MODELS["2cxm"].forward(times, aif, 30.0, 0.1, 0.2, 0.05))
    uptake = models.two_compartment_uptake(times, aif, 30.0, 0.1, 0.05)
    no_backflux = models.two_compartment_exchange(times, aif, 30.0, 0.1, 1e6, 0.05)
    np.testing.assert_allclose(no_backflux, uptake, rtol=0, atol=1e-6 * scale)
    high_flow = models.two_compartment_exchange(times, aif, 1e7, 0.1, 0.2, 0.05)
    tofts = models.extended_tofts(times, aif, 0.1, 0.2, 0.05)
    np.testing.assert_allclose(high_flow, tofts, rtol=0, atol=1e-4 * scale)
    aath_high_flow = models.aath(times, aif, 1e7, 0.1, 0.2, 0.05)
    np.testing.assert_allclose(aath_high_flow, tofts, rtol=0, atol=1e-4 * scale)


def test_forward_broadcasts_parameters_and_aifs() -> None:
    times = UNIFORM_TIMES_S
    aif = gamma_variate_aif(times)
    ktrans = np.array([[0.1], [0.2]])
    ve = np.array([0.2, 0.3, 0.4])
    curves = models.tofts(times, aif, ktrans, ve)
    assert curves.shape == (2, 3, times.size)
    np.testing.assert_allclose(curves[1, 2], models.tofts(times, aif, 0.2, 0.4), rtol=1e-13)
    per_voxel = models.tofts(times, np.stack([aif, 2 * aif]), 0.1, 0.2)
    np.testing.assert_allclose(per_voxel[1], 2 * per_voxel[0], rtol=1e-13)


def test_delay_aif_shifts_by_linear_interpolation() -> None:
    times = UNIFORM_TIMES_S
    aif = gamma_variate_aif(times)
    shifted = models.delay_aif(times, aif, [0.0, 6.0, 4.5])
    np.testing.assert_allclose(shifted[0], aif)
    np.testing.assert_allclose(shifted[1], np.concatenate([[0.0, 0.0], aif[:-2]]))
    np.testing.assert_allclose(shifted[2], np.interp(times - 4.5, times, aif, left=0.0))
    with pytest.raises(InputError, match="delay"):
        models.delay_aif(times, aif, -1.0)


def test_registry_names_units_and_bounds() -> None:
    expected = {
        "tofts": ("Ktrans", "ve"),
        "extended-tofts": ("Ktrans", "ve", "vp"),
        "patlak": ("Ktrans", "vp"),
        "2cxm": ("Fp", "PS", "ve", "vp"),
        "2cum": ("Fp", "PS", "vp"),
        "aath": ("Fp", "PS", "ve", "vp"),
    }
    assert {name: spec.parameter_names for name, spec in MODELS.items()} == expected
    assert [name for name, spec in MODELS.items() if not spec.has_linear_solution] == ["aath"]
    for spec in MODELS.values():
        assert np.all(spec.lower_bounds < spec.typical_values)
        assert np.all(spec.typical_values < spec.upper_bounds)
        units = {p.name: p.unit for p in spec.parameters}
        assert units.get("Ktrans", "/min") == "/min" and units.get("Fp", "ml/100ml/min") == "ml/100ml/min"
    with pytest.raises(InputError, match="choose one of"):
        models.get_model("kety")


def test_derived_quantities() -> None:
    tofts = MODELS["tofts"].derived({"Ktrans": np.array(0.2), "ve": np.array(0.4)})
    assert tofts["kep"] == pytest.approx(0.5) and tofts["MTT"] == pytest.approx(120.0)
    exchange = MODELS["2cxm"].derived({"Fp": np.array(30.0), "PS": np.array(0.1), "ve": np.array(0.2),
                                       "vp": np.array(0.05)})
    assert exchange["E"] == pytest.approx(0.25)
    assert exchange["Ktrans"] == pytest.approx(0.075)
    assert exchange["MTT"] == pytest.approx(60.0 * 0.25 / 0.3)
    uptake = MODELS["2cum"].derived({"Fp": np.array(30.0), "PS": np.array(0.1), "vp": np.array(0.05)})
    assert uptake["MTT"] == pytest.approx(60.0 * 0.05 / 0.4)
    aath = MODELS["aath"].derived({"Fp": np.array(30.0), "PS": np.array(0.3), "ve": np.array(0.2),
                                   "vp": np.array(0.05)})
    assert aath["E"] == pytest.approx(1.0 - np.exp(-1.0))
    assert aath["Tc"] == pytest.approx(10.0) and aath["MTT"] == pytest.approx(50.0)
    assert MODELS["patlak"].derived({"Ktrans": np.array(0.1), "vp": np.array(0.1)}) == {}


@pytest.mark.parametrize(
    ("times", "aif", "message"),
    [
        (np.array([0.0, 2.0, 1.0]), np.zeros(3), "strictly increasing"),
        (np.array([[0.0, 1.0]]), np.zeros(2), "1-D"),
        (np.array([0.0, np.nan]), np.zeros(2), "NaN"),
        (np.arange(4.0), np.zeros(3), "frame times"),
        (np.arange(3.0), np.array([0.0, np.inf, 1.0]), "finite"),
    ],
)
def test_forward_rejects_bad_input(times: np.ndarray, aif: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        models.tofts(times, aif, 0.1, 0.2)
