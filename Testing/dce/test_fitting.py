"""The linear solutions and the batched nonlinear fitting engine on synthetic curves with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from DCEKineticsLib import linear_fits
from DCEKineticsLib.fitting import FailureReason, fit_model, levenberg_marquardt
from DCEKineticsLib.models import MODELS, SampledAIF, delay_aif
from scipy.optimize import least_squares
from SpatioTemporalCommonLib.errors import InputError

CLINICAL_TIMES_S = np.concatenate([np.arange(0.0, 60.0, 1.5), np.arange(60.0, 360.0, 4.0)])
UNIFORM_TIMES_S = np.arange(0.0, 300.0, 2.0)

# Noise-free recovery cases (field units), chosen where every parameter is identifiable; the last
# AATH case has a long capillary transit (Tc = 30 s), where a single start ends in a local minimum.
TRUTH = {
    "tofts": [(0.05, 0.1), (0.3, 0.5), (0.8, 0.3), (0.02, 0.4)],
    "extended-tofts": [(0.05, 0.1, 0.01), (0.3, 0.5, 0.05), (0.8, 0.3, 0.1), (0.1, 0.2, 0.0)],
    "patlak": [(0.0, 0.05), (0.05, 0.1), (0.2, 0.02)],
    "2cxm": [(10.0, 0.05, 0.1, 0.02), (40.0, 0.3, 0.3, 0.05), (120.0, 0.8, 0.2, 0.1),
             (60.0, 0.2, 0.25, 0.08)],
    "2cum": [(10.0, 0.05, 0.02), (40.0, 0.3, 0.05), (120.0, 0.8, 0.1)],
    "aath": [(10.0, 0.05, 0.1, 0.02), (40.0, 0.3, 0.3, 0.05), (120.0, 0.8, 0.2, 0.1), (20.0, 0.1, 0.2, 0.1)],
}


def biexponential_aif(times_s: np.ndarray) -> np.ndarray:
    """Bolus arriving at 12 s: difference of exponentials plus a slowly washing-out plateau, in mM."""
    s = np.clip(np.asarray(times_s) - 12.0, 0.0, None)
    bolus = 7.0 * (np.exp(-s / 9.0) - np.exp(-s / 3.0)) / 0.385
    return bolus + 1.2 * (1.0 - np.exp(-s / 25.0)) * np.exp(-s / 500.0)


def truth_array(model: str) -> np.ndarray:
    """Truth of a model as (N, P)."""
    return np.array(TRUTH[model], dtype=float)


def assert_recovered(result_parameters: dict, model: str, truth: np.ndarray, rtol: float) -> None:
    for p, name in enumerate(MODELS[model].parameter_names):
        np.testing.assert_allclose(result_parameters[name], truth[:, p], rtol=rtol, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("model", list(TRUTH))
def test_noise_free_recovery(model: str) -> None:
    truth = truth_array(model)
    curves = MODELS[model].forward(CLINICAL_TIMES_S, biexponential_aif(CLINICAL_TIMES_S), *truth.T)
    result = fit_model(curves, CLINICAL_TIMES_S, biexponential_aif(CLINICAL_TIMES_S), model)
    assert result.n_fitted == len(truth) and result.n_failed == 0
    assert_recovered(result.parameters, model, truth, rtol=0.005)
    np.testing.assert_allclose(result.r_squared, 1.0, atol=1e-9)


@pytest.mark.parametrize("model", list(TRUTH))
def test_noise_free_recovery_with_delay(model: str) -> None:
    truth = truth_array(model)
    aif = biexponential_aif(UNIFORM_TIMES_S)
    curves = MODELS[model].forward(UNIFORM_TIMES_S, delay_aif(UNIFORM_TIMES_S, aif, 4.0), *truth.T)
    result = fit_model(curves, UNIFORM_TIMES_S, aif, model, fit_delay=True, max_delay_s=10.0)
    assert result.n_failed == 0
    assert_recovered(result.parameters, model, truth, rtol=0.005)
    np.testing.assert_allclose(result.parameters["delay"], 4.0, atol=0.02)
    assert result.units["delay"] == "s"


@pytest.mark.parametrize("model", list(linear_fits.LINEAR_SOLUTIONS))
def test_linear_solutions_recover_finely_sampled_truth(model: str) -> None:
    times = np.arange(0.0, 360.0, 0.5)
    truth = truth_array(model)
    curves = MODELS[model].forward(times, biexponential_aif(times), *truth.T)
    estimates = linear_fits.linear_fit(curves, times, biexponential_aif(times), model)
    for p, name in enumerate(MODELS[model].parameter_names):
        np.testing.assert_allclose(estimates[name], truth[:, p], rtol=0.01, atol=2e-4, err_msg=name)


def test_linear_fit_rejects_models_without_linear_solution() -> None:
    with pytest.raises(InputError, match="no linear solution"):
        linear_fits.linear_fit(np.zeros((2, 5)), np.arange(5.0), np.zeros(5), "aath")


def test_solve_symmetric_matches_dense_solver_and_flags_singular_systems() -> None:
    rng = np.random.default_rng(5)
    factors = rng.normal(size=(6, 4, 4))
    matrices = factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(4)
    matrices[5] = np.outer(factors[5, 0], factors[5, 0])
    rhs = rng.normal(size=(6, 4))
    solution = linear_fits.solve_symmetric(np.moveaxis(matrices, 0, -1), rhs.T)
    dense = np.linalg.solve(matrices[:5], rhs[:5, :, None])[..., 0]
    np.testing.assert_allclose(solution[:, :5].T, dense, rtol=1e-8)
    assert np.all(np.isnan(solution[:, 5]))


@pytest.mark.parametrize("model", ["extended-tofts", "2cxm"])
def test_noisy_fit_reaches_the_least_squares_minimum(model: str) -> None:
    rng = np.random.default_rng(7)
    spec = MODELS[model]
    truth = truth_array(model)
    aif = biexponential_aif(CLINICAL_TIMES_S)
    clean = spec.forward(CLINICAL_TIMES_S, aif, *truth.T)
    noisy = clean + rng.normal(size=clean.shape) * clean.max(axis=1, keepdims=True) / 20.0
    result = fit_model(noisy, CLINICAL_TIMES_S, aif, model)
    ours = np.stack([result.parameters[name] for name in spec.parameter_names], axis=1)
    for curve, start, estimate in zip(noisy, truth, ours, strict=True):
        def residual(theta: np.ndarray, y: np.ndarray = curve) -> np.ndarray:
            return spec.forward(CLINICAL_TIMES_S, aif, *theta) - y

        reference = least_squares(residual, start, bounds=(spec.lower_bounds, spec.upper_bounds),
                                  x_scale=spec.typical_values, xtol=1e-12, ftol=1e-12, gtol=1e-12)
        our_cost = np.sum((spec.forward(CLINICAL_TIMES_S, aif, *estimate) - curve) ** 2)
        assert our_cost <= 2 * reference.cost * (1 + 1e-5)


def test_levenberg_marquardt_reports_non_convergence() -> None:
    spec = MODELS["tofts"]
    aif = SampledAIF.from_samples(UNIFORM_TIMES_S, biexponential_aif(UNIFORM_TIMES_S))
    data, _ = spec.evaluate(np.array([[0.3, 0.05], [0.4, 0.2]]), aif, False)

    def evaluate(theta: np.ndarray, jacobian: bool):
        return spec.evaluate(theta, aif, jacobian)

    start = np.array([[4.0, 4.0], [0.01, 0.9]])
    _, _, converged = levenberg_marquardt(evaluate, data, start, spec.lower_bounds, spec.upper_bounds,
                                          spec.typical_values, max_iterations=1)
    assert not np.any(converged)
    theta, cost, converged = levenberg_marquardt(evaluate, data, start, spec.lower_bounds, spec.upper_bounds,
                                                 spec.typical_values)
    assert np.all(converged)
    np.testing.assert_allclose(theta, [[0.3, 0.05], [0.4, 0.2]], rtol=1e-6)
    assert np.all(cost < 1e-16)


def volume_with_problem_voxels() -> tuple[np.ndarray, np.ndarray]:
    """A (2, 3) volume of Tofts curves: NaN, all-zero and unidentifiable (ve beyond 1) voxels included."""
    times = CLINICAL_TIMES_S
    aif = biexponential_aif(times)
    curves = MODELS["tofts"].forward(times, aif, np.array([0.2, 0.1, 0.3, 0.05, 0.2, 0.1]),
                                     np.array([0.3, 0.2, 0.4, 3.0, 0.3, 0.2])).reshape(2, 3, -1)
    curves[0, 1, 5] = np.nan
    curves[1, 1] = 0.0
    return curves, aif


def test_failures_are_nan_coded_and_counted() -> None:
    curves, aif = volume_with_problem_voxels()
    mask = np.ones((2, 3), dtype=bool)
    mask[1, 2] = False
    result = fit_model(curves, CLINICAL_TIMES_S, aif, "tofts", mask=mask)
    expected = np.array([[FailureReason.OK, FailureReason.NON_FINITE_DATA, FailureReason.OK],
                         [FailureReason.AT_BOUND, FailureReason.NO_SIGNAL, FailureReason.OUTSIDE_MASK]])
    np.testing.assert_array_equal(result.failure_reason, expected)
    np.testing.assert_array_equal(result.failed, [[False, True, False], [True, True, False]])
    assert (result.n_fitted, result.n_failed) == (2, 3)
    for name in ("Ktrans", "ve", "kep", "MTT"):
        assert result.parameters[name].shape == (2, 3)
        assert np.all(np.isnan(result.parameters[name][result.failure_reason != FailureReason.OK]))
    assert np.all(np.isnan(result.r_squared[result.failed])) and np.all(np.isnan(result.residual_rms[1]))
    np.testing.assert_allclose(result.parameters["Ktrans"][0, [0, 2]], [0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(result.parameters["kep"][0, 0], 0.2 / 0.3, rtol=1e-6)


def test_chunks_threads_and_dtype_do_not_change_the_result() -> None:
    rng = np.random.default_rng(11)
    aif = biexponential_aif(CLINICAL_TIMES_S)
    truth = np.stack([rng.uniform(0.02, 0.6, 40), rng.uniform(0.05, 0.6, 40), rng.uniform(0.0, 0.1, 40)])
    curves = MODELS["extended-tofts"].forward(CLINICAL_TIMES_S, aif, *truth)
    curves = (curves + 0.02 * rng.normal(size=curves.shape)).astype(np.float32)
    reference = fit_model(curves, CLINICAL_TIMES_S, aif, "extended-tofts")
    chunked = fit_model(curves, CLINICAL_TIMES_S, aif, "extended-tofts", chunk_voxels=7, workers=2)
    for name, values in reference.parameters.items():
        np.testing.assert_array_equal(chunked.parameters[name], values)
    np.testing.assert_array_equal(chunked.failure_reason, reference.failure_reason)


def test_progress_is_reported_per_chunk_and_may_cancel() -> None:
    curves, aif = volume_with_problem_voxels()
    reports = []
    fit_model(curves, CLINICAL_TIMES_S, aif, "tofts", chunk_voxels=2, progress=lambda f, m: reports.append(f))
    np.testing.assert_allclose(reports, [2 / 6, 4 / 6, 1.0])

    class Cancelled(Exception):
        pass

    def cancel(fraction: float, message: str) -> None:
        raise Cancelled(message)

    with pytest.raises(Cancelled, match="fitting tofts"):
        fit_model(curves, CLINICAL_TIMES_S, aif, "tofts", chunk_voxels=2, progress=cancel, workers=2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": "kety"}, "unknown kinetic model"),
        ({"mask": np.ones(4, dtype=bool)}, "mask has shape"),
        ({"concentration": np.zeros((3, 7))}, "frame times"),
        ({"times_s": np.arange(3.0), "aif_plasma_mM": np.zeros(3), "concentration": np.zeros((2, 3)),
          "model": "2cxm"}, "cannot determine"),
        ({"aif_plasma_mM": np.zeros((2, CLINICAL_TIMES_S.size))}, "one plasma curve"),
        ({"fit_delay": True, "max_delay_s": -1.0}, "max_delay_s"),
        ({"chunk_voxels": 0}, "positive integers"),
        ({"concentration": np.full((2, CLINICAL_TIMES_S.size), "a")}, "real concentrations"),
    ],
)
def test_fit_model_rejects_bad_input(arguments: dict, message: str) -> None:
    call = {"concentration": np.zeros((2, CLINICAL_TIMES_S.size)), "times_s": CLINICAL_TIMES_S,
            "aif_plasma_mM": biexponential_aif(CLINICAL_TIMES_S), "model": "tofts"}
    call.update(arguments)
    keywords = ("fit_delay", "max_delay_s", "chunk_voxels", "mask")
    options = {key: call.pop(key) for key in keywords if key in call}
    with pytest.raises(InputError, match=message):
        fit_model(call["concentration"], call["times_s"], call["aif_plasma_mM"], call["model"], **options)
