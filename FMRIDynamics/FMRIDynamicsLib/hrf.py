"""Haemodynamic response functions (HRF) and their derivatives, sampled on an oversampled grid.

The canonical responses are differences of two gamma densities:

``h(t) = g(t; delay / dispersion, dispersion) - ratio * g(t; undershoot / u_dispersion, u_dispersion)``

where ``g(t; k, theta)`` is the gamma density of shape ``k`` and scale ``theta``. The SPM canonical HRF
(Friston et al. 1998) uses ``delay = 6 s``, ``undershoot = 16 s``, unit dispersions and
``ratio = 1/6`` (its peak is at 5 s, the undershoot minimum near 15 s). The Glover HRF (Glover 1999)
uses ``delay = 6 s``, ``undershoot = 12 s``, dispersions of 0.9 and ``ratio = 0.48``, the values
nilearn uses for its ``glover`` model, so that design matrices agree with nilearn's.

Every kernel is sampled every ``dt = tr / oversampling`` seconds and normalised to unit sum, so that
convolving an oversampled stimulus with it is the integral of the stimulus weighted by the response
(a boxcar longer than the response reaches a plateau equal to its amplitude). The time derivative
is the backward difference over 0.1 s and the dispersion derivative the difference for a 0.01
change of the peak dispersion, as in SPM (Friston et al. 1998; Henson et al. 2002). The finite
impulse response (FIR) basis averages the stimulus over one repetition time centred on each delay.

References
----------
Friston KJ, Fletcher P, Josephs O, Holmes A, Rugg MD, Turner R. Event-related fMRI: characterizing
differential responses. NeuroImage 1998;7:30-40.
Glover GH. Deconvolution of impulse response in event-related BOLD fMRI. NeuroImage 1999;9:416-429.
Henson RNA, Price CJ, Rugg MD, Turner R, Friston KJ. Detecting latency differences in event-related
BOLD responses: application to words versus nonwords and initial versus repeated face presentations.
NeuroImage 2002;15:83-97.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import gamma
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import check_tr

TIME_DERIVATIVE_STEP_S = 0.1
DISPERSION_DERIVATIVE_STEP = 0.01


@dataclass(frozen=True)
class GammaDifferenceShape:
    """Parameters of a difference-of-gammas HRF.

    Attributes
    ----------
    delay : float
        Delay parameter of the response gamma, in s (its mode is ``delay - dispersion``).
    undershoot : float
        Delay parameter of the undershoot gamma, in s.
    dispersion : float
        Scale of the response gamma, in s.
    undershoot_dispersion : float
        Scale of the undershoot gamma, in s.
    ratio : float
        Weight of the undershoot density relative to the response density.
    """

    delay: float
    undershoot: float
    dispersion: float
    undershoot_dispersion: float
    ratio: float


SPM_SHAPE = GammaDifferenceShape(
    delay=6.0, undershoot=16.0, dispersion=1.0, undershoot_dispersion=1.0, ratio=1.0 / 6.0
)
GLOVER_SHAPE = GammaDifferenceShape(
    delay=6.0, undershoot=12.0, dispersion=0.9, undershoot_dispersion=0.9, ratio=0.48
)
CANONICAL_SHAPES = {"spm": SPM_SHAPE, "glover": GLOVER_SHAPE}

HRF_MODELS = (
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
    "fir",
)


def _check_sampling(tr: float, oversampling: int, time_length: float) -> None:
    check_tr(tr)
    if int(oversampling) != oversampling or oversampling < 1:
        raise InputError(f"oversampling {oversampling} is not a positive integer: use e.g. 50")
    if not np.isfinite(time_length) or time_length < tr:
        raise InputError(
            f"HRF length {time_length} s is shorter than one TR ({tr} s): use a length of about 32 s"
        )


def hrf_times(tr: float, oversampling: int = 50, time_length: float = 32.0) -> np.ndarray:
    """Sample times of an HRF kernel.

    Parameters
    ----------
    tr : float
        Repetition time, in s.
    oversampling : int
        Number of kernel samples per repetition time.
    time_length : float
        Kernel length, in s.

    Returns
    -------
    numpy.ndarray
        Times ``0, dt, 2 dt, ...`` in s, with ``dt = tr / oversampling``, covering ``time_length``.
    """
    _check_sampling(tr, oversampling, time_length)
    dt = tr / oversampling
    return np.arange(int(np.rint(time_length / dt))) * dt


def gamma_difference_hrf(
    tr: float,
    shape: GammaDifferenceShape,
    oversampling: int = 50,
    time_length: float = 32.0,
    onset: float = 0.0,
) -> np.ndarray:
    """Difference-of-gammas HRF sampled every ``tr / oversampling`` s and normalised to unit sum.

    Parameters
    ----------
    tr : float
        Repetition time, in s.
    shape : GammaDifferenceShape
        Gamma parameters (delays and dispersions in s).
    oversampling : int
        Number of kernel samples per repetition time.
    time_length : float
        Kernel length, in s.
    onset : float
        Delay of the whole response, in s.

    Returns
    -------
    numpy.ndarray
        Kernel of shape ``(round(time_length * oversampling / tr),)``, summing to 1.
    """
    times = hrf_times(tr, oversampling, time_length) - onset
    response = gamma.pdf(times, shape.delay / shape.dispersion, scale=shape.dispersion)
    undershoot = gamma.pdf(
        times, shape.undershoot / shape.undershoot_dispersion, scale=shape.undershoot_dispersion
    )
    kernel = response - shape.ratio * undershoot
    return kernel / kernel.sum()


def spm_hrf(tr: float, oversampling: int = 50, time_length: float = 32.0, onset: float = 0.0) -> np.ndarray:
    """SPM canonical HRF (peak delay 6 s, undershoot 16 s, ratio 1/6); see `gamma_difference_hrf`."""
    return gamma_difference_hrf(tr, SPM_SHAPE, oversampling, time_length, onset)


def glover_hrf(
    tr: float, oversampling: int = 50, time_length: float = 32.0, onset: float = 0.0
) -> np.ndarray:
    """Glover HRF (delay 6 s, undershoot 12 s, dispersions 0.9, ratio 0.48); see `gamma_difference_hrf`."""
    return gamma_difference_hrf(tr, GLOVER_SHAPE, oversampling, time_length, onset)


def time_derivative(
    tr: float, shape: GammaDifferenceShape, oversampling: int = 50, time_length: float = 32.0
) -> np.ndarray:
    """Temporal derivative of an HRF, ``(h(t) - h(t - 0.1 s)) / 0.1 s``, in 1/s.

    Parameters
    ----------
    tr, shape, oversampling, time_length
        As in `gamma_difference_hrf`.

    Returns
    -------
    numpy.ndarray
        Kernel of the same length as the HRF. A response delayed by a small ``s`` seconds is
        approximately ``h - s * time_derivative``.
    """
    base = gamma_difference_hrf(tr, shape, oversampling, time_length)
    delayed = gamma_difference_hrf(tr, shape, oversampling, time_length, onset=TIME_DERIVATIVE_STEP_S)
    return (base - delayed) / TIME_DERIVATIVE_STEP_S


def dispersion_derivative(
    tr: float, shape: GammaDifferenceShape, oversampling: int = 50, time_length: float = 32.0
) -> np.ndarray:
    """Derivative of an HRF with respect to the dispersion of its response gamma (step 0.01).

    Parameters
    ----------
    tr, shape, oversampling, time_length
        As in `gamma_difference_hrf`.

    Returns
    -------
    numpy.ndarray
        ``(h(dispersion) - h(dispersion + 0.01)) / 0.01``, same length as the HRF.
    """
    wider = GammaDifferenceShape(
        shape.delay,
        shape.undershoot,
        shape.dispersion + DISPERSION_DERIVATIVE_STEP,
        shape.undershoot_dispersion,
        shape.ratio,
    )
    base = gamma_difference_hrf(tr, shape, oversampling, time_length)
    return (base - gamma_difference_hrf(tr, wider, oversampling, time_length)) / DISPERSION_DERIVATIVE_STEP


def fir_kernels(tr: float, delays: np.ndarray, oversampling: int = 50) -> np.ndarray:
    """Finite impulse response kernels: the stimulus averaged over one TR centred on each delay.

    Parameters
    ----------
    tr : float
        Repetition time, in s.
    delays : array of int
        Delays in repetition times (0, 1, 2, ...).
    oversampling : int
        Number of kernel samples per repetition time.

    Returns
    -------
    numpy.ndarray
        Array ``(n_delays, (max(delays) + 1) * oversampling)``. Sample ``s`` stands for the lag
        ``s * tr / oversampling + fir_kernel_onset(tr)``; kernel ``d`` is ``1 / oversampling`` on the
        lags ``[(d - 1/2) tr, (d + 1/2) tr)`` and zero elsewhere, so its coefficient is the response
        at ``d * tr`` (exactly for onsets on frame times, averaged over +/- tr/2 otherwise).
    """
    _check_sampling(tr, oversampling, tr)
    delays = np.asarray(delays)
    if delays.ndim != 1 or delays.size == 0 or np.any(delays < 0) or np.any(delays != np.round(delays)):
        raise InputError(f"FIR delays {delays} are not non-negative integers: give delays in TRs, e.g. 0..12")
    delays = delays.astype(int)
    kernels = np.zeros((delays.size, (delays.max() + 1) * oversampling))
    for row, delay in enumerate(delays):
        kernels[row, delay * oversampling : (delay + 1) * oversampling] = 1.0 / oversampling
    return kernels


def fir_kernel_onset(tr: float) -> float:
    """Lag of the first sample of the `fir_kernels`, in s (-tr / 2: windows are centred on delays)."""
    return -0.5 * tr


def basis_names(hrf_model: str) -> tuple[str, ...]:
    """Suffixes of the regressors a canonical HRF model produces for one condition.

    Parameters
    ----------
    hrf_model : str
        One of `HRF_MODELS` other than ``"fir"``.

    Returns
    -------
    tuple of str
        ``("",)``, ``("", "_derivative")`` or ``("", "_derivative", "_dispersion")``.
    """
    check_hrf_model(hrf_model)
    return ("", "_derivative", "_dispersion")[: 1 + hrf_model.count("+")]


def check_hrf_model(hrf_model: str) -> None:
    """Raise `InputError` unless ``hrf_model`` is one of `HRF_MODELS`."""
    if hrf_model not in HRF_MODELS:
        raise InputError(f"HRF model {hrf_model!r} is unknown: use one of {', '.join(HRF_MODELS)}")


def canonical_kernels(
    hrf_model: str, tr: float, oversampling: int = 50, time_length: float = 32.0
) -> np.ndarray:
    """Kernels of a canonical HRF model (the HRF, then its derivatives when asked).

    Parameters
    ----------
    hrf_model : str
        ``"spm"``, ``"glover"``, optionally followed by ``" + derivative"`` and
        ``" + derivative + dispersion"``.
    tr, oversampling, time_length
        As in `gamma_difference_hrf`.

    Returns
    -------
    numpy.ndarray
        Array ``(n_basis, n_samples)``, one kernel per row, sampled every ``tr / oversampling`` s.
    """
    check_hrf_model(hrf_model)
    if hrf_model == "fir":
        raise InputError("the FIR model has no canonical kernels: use fir_kernels with delays in TRs")
    shape = CANONICAL_SHAPES[hrf_model.split(" ")[0]]
    builders = (gamma_difference_hrf, time_derivative, dispersion_derivative)
    n_basis = len(basis_names(hrf_model))
    return np.stack([build(tr, shape, oversampling, time_length) for build in builders[:n_basis]])
