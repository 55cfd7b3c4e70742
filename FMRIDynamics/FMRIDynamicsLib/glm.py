"""First-level general linear model (GLM) for BOLD fMRI, with AR(1) prewhitening and HRF shape maps.

The design matrix holds, in this order, one block per trial type (the event boxcars, oversampled
every ``tr / oversampling`` s, convolved with the HRF basis of `FMRIDynamicsLib.hrf` and sampled
at the frame times ``(n + reference_time / tr) * tr``), optional confounds, a discrete cosine drift
basis for high-pass filtering (SPM convention: ``floor(2 n_frames tr / cutoff)`` cosines) and an
intercept. Derivative regressors are orthogonalised with respect to the preceding regressors of
their trial type, as in SPM and nilearn.

The fit follows the two-pass scheme of SPM/fMRIstat/nilearn (Worsley et al. 2002): ordinary least
squares (OLS); a voxel-wise AR(1) coefficient from the Yule-Walker estimate on the OLS residuals,
truncated to multiples of ``ar_bin_width`` (0.01, as nilearn does); then generalised least squares
per bin of voxels sharing one coefficient, with the Prais-Winsten AR(1) whitening (the first frame
is scaled by ``sqrt(1 - rho**2)``, so the whitened noise is exactly white). t statistics of linear
contrasts are turned into z scores through the exact t distribution, in log space in the tails so
that |t| up to ~1e300 keeps a finite, monotone z.

Voxel-wise HRF shape (peak latency and full width at half maximum) is read from either a finite
impulse response (FIR) fit or a canonical HRF + derivatives fit reconstructed on the fine grid
(Henson et al. 2002; Lindquist et al. 2009).

References
----------
Friston KJ, Holmes AP, Worsley KJ, Poline JP, Frith CD, Frackowiak RSJ. Statistical parametric maps
in functional imaging: a general linear approach. Hum Brain Mapp 1995;2:189-210.
Worsley KJ, Liao CH, Aston J, Petre V, Duncan GH, Morales F, Evans AC. A general statistical analysis
for fMRI data. NeuroImage 2002;15:1-15.
Henson RNA, Price CJ, Rugg MD, Turner R, Friston KJ. Detecting latency differences in event-related
BOLD responses. NeuroImage 2002;15:83-97.
Lindquist MA, Loh JM, Atlas LY, Wager TD. Modeling the hemodynamic response function in fMRI:
efficiency, bias and mis-modeling. NeuroImage 2009;45:S187-S198.
Gorgolewski KJ et al. The brain imaging data structure (BIDS). Sci Data 2016;3:160044.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import check_tr
from FMRIDynamicsLib.hrf import (
    basis_names,
    canonical_kernels,
    check_hrf_model,
    fir_kernel_onset,
    fir_kernels,
    hrf_times,
)
from FMRIDynamicsLib.latency import parabolic_peak

DEFAULT_TRIAL_TYPE = "event"
MISSING_VALUE = "n/a"
PEAK_CHUNK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Events:
    """Experimental events, one entry per event.

    Attributes
    ----------
    onset : numpy.ndarray
        Onsets in s from the acquisition start of the first frame.
    duration : numpy.ndarray
        Durations in s (0 for impulse events).
    trial_type : numpy.ndarray
        Condition name of each event (str).
    modulation : numpy.ndarray
        Amplitude of each event (1 unless modulated).
    """

    onset: np.ndarray
    duration: np.ndarray
    trial_type: np.ndarray
    modulation: np.ndarray

    def __post_init__(self) -> None:
        n_events = np.size(self.onset)
        for name in ("duration", "trial_type", "modulation"):
            if np.size(getattr(self, name)) != n_events:
                raise InputError(
                    f"events have {n_events} onsets but {np.size(getattr(self, name))} {name} values: "
                    "give one value per event"
                )
        if not np.all(np.isfinite(self.onset)):
            raise InputError("an event onset is missing or not a number: give every onset in seconds")
        if not np.all(np.isfinite(self.duration)) or np.any(self.duration < 0):
            raise InputError(
                "an event duration is missing or negative: give durations >= 0 s (0 for impulses)"
            )
        if not np.all(np.isfinite(self.modulation)):
            raise InputError(
                "an event modulation is not a finite number: give finite amplitudes (1 by default)"
            )

    @property
    def trial_types(self) -> tuple[str, ...]:
        """Sorted distinct condition names."""
        return tuple(sorted(set(self.trial_type.tolist())))


def make_events(
    onset: Sequence[float],
    duration: Sequence[float],
    trial_type: Sequence[str] | None = None,
    modulation: Sequence[float] | None = None,
) -> Events:
    """Build validated `Events` from sequences.

    Parameters
    ----------
    onset : sequence of float
        Onsets in s from the acquisition start of the first frame.
    duration : sequence of float
        Durations in s (0 for impulse events).
    trial_type : sequence of str, optional
        Condition of each event; ``"event"`` for all when omitted.
    modulation : sequence of float, optional
        Amplitude of each event; 1 when omitted.

    Returns
    -------
    Events
    """
    onset_array = np.asarray(onset, dtype=float).ravel()
    n_events = onset_array.size
    if n_events == 0:
        raise InputError("there are no events: give at least one onset and duration")
    types = np.full(n_events, DEFAULT_TRIAL_TYPE) if trial_type is None else np.asarray(trial_type, dtype=str)
    amplitudes = np.ones(n_events) if modulation is None else np.asarray(modulation, dtype=float).ravel()
    return Events(onset_array, np.asarray(duration, dtype=float).ravel(), types.ravel(), amplitudes)


def _parse_number(text: str, column: str, row: int, path: Path) -> float:
    if text.strip() == MISSING_VALUE:
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"{path.name} row {row}: {column} {text!r} is not a number: write {column} in seconds"
        ) from None


def read_events_tsv(path: str | Path) -> Events:
    """Read a BIDS ``*_events.tsv`` file.

    Parameters
    ----------
    path : str or pathlib.Path
        Tab-separated file with a header row holding at least ``onset`` and ``duration`` (s);
        optional ``trial_type`` (default ``"event"``) and ``modulation`` (default 1) columns.

    Returns
    -------
    Events

    Raises
    ------
    InputError
        When the file is missing, a required column is absent, or a value is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"events file {path} does not exist: give the path of a BIDS *_events.tsv file")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
        header = rows[0].keys() if rows else []
    missing = [name for name in ("onset", "duration") if name not in header]
    if missing:
        raise InputError(
            f"{path.name} lacks the column(s) {', '.join(missing)}: a BIDS events file needs tab-separated "
            "'onset' and 'duration' columns in seconds"
        )
    numbers = {
        column: [_parse_number(row[column], column, index + 2, path) for index, row in enumerate(rows)]
        for column in ("onset", "duration")
    }
    if "modulation" in header:
        numbers["modulation"] = [
            _parse_number(row["modulation"], "modulation", index + 2, path) for index, row in enumerate(rows)
        ]
    trial_type = [row["trial_type"] for row in rows] if "trial_type" in header else None
    return make_events(numbers["onset"], numbers["duration"], trial_type, numbers.get("modulation"))


def frame_times(n_frames: int, tr: float, reference_time: float = 0.0) -> np.ndarray:
    """Times at which the frames are modelled.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    tr : float
        Repetition time, in s.
    reference_time : float
        Time within each TR that the data represent, in s (0 for the first acquired slice, the
        slice-timing reference time when slice-timing correction was applied).

    Returns
    -------
    numpy.ndarray
        ``n * tr + reference_time`` for ``n = 0 .. n_frames - 1``, in s.
    """
    check_tr(tr)
    if not 0 <= reference_time < tr:
        raise InputError(f"reference time {reference_time} s is outside [0, TR={tr} s): give it in seconds")
    if int(n_frames) != n_frames or n_frames < 2:
        raise InputError(f"{n_frames} frames cannot be modelled: give a series of at least 2 frames")
    return np.arange(int(n_frames)) * tr + reference_time


def check_events_in_scan(events: Events, n_frames: int, tr: float, hrf_length: float = 32.0) -> None:
    """Raise `InputError` for events that cannot influence the scan.

    Events must start before the end of the scan (``n_frames * tr``) and no earlier than one HRF
    length before its start.
    """
    scan_end = n_frames * tr
    late = events.onset >= scan_end
    early = events.onset < -hrf_length
    if np.any(late | early):
        first = float(events.onset[late | early][0])
        raise InputError(
            f"{int(np.sum(late | early))} event(s) (first onset {first:g} s) lie outside the scan "
            f"[0, {scan_end:g}) s: give onsets in seconds from the first frame and check TR and frame count"
        )


# ----------------------------------------------------------------------------------------------
# Design matrix
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesignMatrix:
    """Regressors sampled at the frame times.

    Attributes
    ----------
    matrix : numpy.ndarray
        Array ``(n_frames, n_regressors)``.
    names : tuple of str
        Regressor names: trial types (with ``_derivative``, ``_dispersion`` or ``_delay_<d>``
        suffixes), confound names, ``drift_<k>``, ``constant``.
    frame_times : numpy.ndarray
        Frame times, in s.
    """

    matrix: np.ndarray
    names: tuple[str, ...]
    frame_times: np.ndarray

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Indices of the named regressors; `InputError` lists the known names for an unknown one."""
        return column_indices(self.names, names)


def column_indices(names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Positions of ``wanted`` regressor names among ``names``.

    Raises
    ------
    InputError
        Naming the unknown trial types or regressors and listing the known ones.
    """
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise InputError(
            f"{', '.join(map(repr, unknown))} are not trial types or regressors of the design: "
            f"use names among {', '.join(names)}"
        )
    return np.array([list(names).index(name) for name in wanted], dtype=int)


def cosine_drift(n_frames: int, tr: float, high_pass_cutoff: float | None = 128.0) -> np.ndarray:
    """Discrete cosine (DCT-II) drift basis of a high-pass filter, without the constant.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    tr : float
        Repetition time, in s.
    high_pass_cutoff : float or None
        Cutoff period in s (SPM's 128 s by default); None for no drift regressors.

    Returns
    -------
    numpy.ndarray
        Array ``(n_frames, floor(2 * n_frames * tr / high_pass_cutoff))`` of cosines
        ``sqrt(2 / n) cos(pi k (n + 1/2) / n_frames)``, ``k = 1, 2, ...``.
    """
    if high_pass_cutoff is None:
        return np.zeros((n_frames, 0))
    if not np.isfinite(high_pass_cutoff) or high_pass_cutoff <= 2 * tr:
        raise InputError(
            f"high-pass cutoff {high_pass_cutoff} s is not longer than two TRs: give the cutoff period in "
            "seconds (e.g. 128) or None"
        )
    order = min(n_frames - 1, int(np.floor(2 * n_frames * tr / high_pass_cutoff)))
    samples = np.arange(n_frames)[:, None] + 0.5
    orders = np.arange(1, order + 1)[None, :]
    return np.sqrt(2.0 / n_frames) * np.cos(np.pi * samples * orders / n_frames)


def _oversampled_stimulus(events: Events, grid: np.ndarray) -> np.ndarray:
    """Boxcars of the events on the oversampled grid; an impulse fills one grid sample."""
    start = np.minimum(np.searchsorted(grid, events.onset), grid.size - 1)
    stop = np.searchsorted(grid, events.onset + events.duration)
    stop = np.where(stop == start, start + 1, stop)
    steps = np.zeros(grid.size + 1)
    np.add.at(steps, start, events.modulation)
    np.add.at(steps, np.minimum(stop, grid.size), -events.modulation)
    return np.cumsum(steps[:-1])


def _orthogonalize_columns(block: np.ndarray) -> np.ndarray:
    """Each column minus its projection on the preceding columns (Gram-Schmidt, not normalised)."""
    block = block.copy()
    for column in range(1, block.shape[1]):
        previous = block[:, :column]
        block[:, column] -= previous @ np.linalg.lstsq(previous, block[:, column], rcond=None)[0]
    return block


def condition_regressors(
    events: Events,
    times: np.ndarray,
    tr: float,
    kernels: np.ndarray,
    oversampling: int = 50,
    hrf_length: float = 32.0,
    kernel_onset: float = 0.0,
) -> np.ndarray:
    """Events of one condition convolved with HRF kernels and sampled at the frame times.

    Parameters
    ----------
    events : Events
        Events of one condition.
    times : numpy.ndarray
        Frame times, in s.
    tr : float
        Repetition time, in s.
    kernels : numpy.ndarray
        Array ``(n_basis, n_samples)`` of kernels sampled every ``tr / oversampling`` s.
    oversampling : int
        Kernel samples per TR.
    hrf_length : float
        How long before the first frame events are still modelled, in s.
    kernel_onset : float
        Lag represented by the first kernel sample, in s (0 for HRFs, `fir_kernel_onset` for FIR).

    Returns
    -------
    numpy.ndarray
        Array ``(n_frames, n_basis)``.
    """
    dt = tr / oversampling
    grid = np.arange(times[0] - hrf_length, times[-1] + tr + dt, dt)
    stimulus = _oversampled_stimulus(events, grid)
    convolved = [np.convolve(stimulus, kernel)[: grid.size] for kernel in kernels]
    return np.stack([np.interp(times - kernel_onset, grid, values) for values in convolved], axis=1)


def design_matrix(
    events: Events,
    n_frames: int,
    tr: float,
    hrf_model: str = "spm",
    reference_time: float = 0.0,
    high_pass_cutoff: float | None = 128.0,
    confounds: np.ndarray | None = None,
    confound_names: Sequence[str] | None = None,
    n_fir_delays: int = 12,
    oversampling: int = 50,
    hrf_length: float = 32.0,
    orthogonalize: bool = True,
) -> DesignMatrix:
    """First-level design matrix: convolved events, confounds, cosine drifts and an intercept.

    Parameters
    ----------
    events : Events
        Experimental events (onsets and durations in s).
    n_frames : int
        Number of frames in the series.
    tr : float
        Repetition time, in s.
    hrf_model : str
        One of `FMRIDynamicsLib.hrf.HRF_MODELS` (``"spm"`` by default).
    reference_time : float
        Time within each TR that the frames represent, in s (slice-timing reference).
    high_pass_cutoff : float or None
        Cosine drift cutoff period, in s (128 s by default); None for intercept only.
    confounds : numpy.ndarray, optional
        Array ``(n_frames, n_confounds)`` of nuisance regressors (e.g. motion parameters).
    confound_names : sequence of str, optional
        Their names (``confound_<i>`` by default).
    n_fir_delays : int
        Number of FIR delays (0 .. n - 1 TRs) when ``hrf_model == "fir"``.
    oversampling : int
        Samples per TR of the stimulus and kernels.
    hrf_length : float
        HRF kernel length, in s.
    orthogonalize : bool
        Orthogonalise derivative regressors against the HRF regressor of their trial type.

    Returns
    -------
    DesignMatrix

    Raises
    ------
    InputError
        Unknown HRF model, events outside the scan, confounds of the wrong length or non-finite.
    """
    check_hrf_model(hrf_model)
    times = frame_times(n_frames, tr, reference_time)
    check_events_in_scan(events, n_frames, tr, hrf_length)
    if hrf_model == "fir":
        kernels = fir_kernels(tr, np.arange(n_fir_delays), oversampling)
        suffixes = tuple(f"_delay_{delay}" for delay in range(n_fir_delays))
        kernel_onset = fir_kernel_onset(tr)
    else:
        kernels = canonical_kernels(hrf_model, tr, oversampling, hrf_length)
        suffixes = basis_names(hrf_model)
        kernel_onset = 0.0
    blocks, names = [], []
    for trial_type in events.trial_types:
        selected = events.trial_type == trial_type
        subset = Events(
            events.onset[selected],
            events.duration[selected],
            events.trial_type[selected],
            events.modulation[selected],
        )
        block = condition_regressors(subset, times, tr, kernels, oversampling, hrf_length, kernel_onset)
        blocks.append(_orthogonalize_columns(block) if orthogonalize and hrf_model != "fir" else block)
        names += [f"{trial_type}{suffix}" for suffix in suffixes]
    if confounds is not None:
        confounds = _check_confounds(confounds, n_frames)
        blocks.append(confounds)
        names += list(confound_names or [f"confound_{index}" for index in range(confounds.shape[1])])
    drift = cosine_drift(n_frames, tr, high_pass_cutoff)
    blocks += [drift, np.ones((n_frames, 1))]
    names += [f"drift_{order}" for order in range(1, drift.shape[1] + 1)] + ["constant"]
    if len(set(names)) != len(names):
        raise InputError(f"regressor names {names} repeat: give confounds names distinct from trial types")
    return DesignMatrix(np.hstack(blocks), tuple(names), times)


def _check_confounds(confounds: np.ndarray, n_frames: int) -> np.ndarray:
    confounds = np.asarray(confounds, dtype=float)
    if confounds.ndim == 1:
        confounds = confounds[:, None]
    if confounds.ndim != 2 or confounds.shape[0] != n_frames:
        raise InputError(
            f"confounds of shape {confounds.shape} do not match {n_frames} frames: "
            "give (n_frames, n_confounds)"
        )
    if not np.all(np.isfinite(confounds)):
        raise InputError("confounds contain NaN or infinity: fill or drop those regressors")
    return confounds


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GLMResults:
    """Voxel-wise GLM estimates.

    Attributes
    ----------
    beta : numpy.ndarray
        Parameter estimates ``(..., n_regressors)`` in data units per regressor unit.
    residual_variance : numpy.ndarray
        Variance of the whitened residuals, ``(...)``, in squared data units; 0 where the series is
        fitted exactly (e.g. constant), to rounding error.
    ar_coefficient : numpy.ndarray
        Binned AR(1) coefficient used for whitening, ``(...)`` (0 for OLS).
    dof : int
        Residual degrees of freedom (frames minus design rank).
    names : tuple of str
        Regressor names.
    bin_covariances : numpy.ndarray
        ``(n_bins, n_regressors, n_regressors)``: ``pinv(Xw.T Xw)`` of each AR bin.
    bin_index : numpy.ndarray
        Bin of each voxel, ``(...)``; -1 where the voxel could not be fitted.
    n_failed : int
        Voxels with non-finite samples or zero residual variance (their statistics are NaN).
    """

    beta: np.ndarray
    residual_variance: np.ndarray
    ar_coefficient: np.ndarray
    dof: int
    names: tuple[str, ...]
    bin_covariances: np.ndarray = field(repr=False)
    bin_index: np.ndarray = field(repr=False)
    n_failed: int


def ar1_coefficients(residuals: np.ndarray) -> np.ndarray:
    """Yule-Walker AR(1) coefficients of series.

    Parameters
    ----------
    residuals : numpy.ndarray
        Array ``(..., T)``.

    Returns
    -------
    numpy.ndarray
        ``(sum_t r_t r_{t+1} / (T - 1)) / (sum_t r_t^2 / T)`` after removing each series' mean,
        clipped to [-0.99, 0.99]; 0 for constant series.
    """
    centred = residuals - residuals.mean(axis=-1, keepdims=True)
    n_frames = centred.shape[-1]
    lag0 = np.einsum("...t,...t->...", centred, centred) / n_frames
    lag1 = np.einsum("...t,...t->...", centred[..., 1:], centred[..., :-1]) / (n_frames - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(lag0 > 0, lag1 / lag0, 0.0)
    return np.clip(rho, -0.99, 0.99)


def ar1_whiten(series: np.ndarray, rho: float | np.ndarray) -> np.ndarray:
    """Prais-Winsten AR(1) whitening along the last axis.

    Parameters
    ----------
    series : numpy.ndarray
        Array ``(..., T)``.
    rho : float or numpy.ndarray
        AR(1) coefficient(s), broadcastable to ``series.shape[:-1]``.

    Returns
    -------
    numpy.ndarray
        ``w_0 = sqrt(1 - rho^2) y_0`` and ``w_t = y_t - rho y_{t-1}``; AR(1) noise becomes white.
    """
    rho = np.asarray(rho, dtype=float)[..., None]
    whitened = np.empty(np.broadcast_shapes(series.shape, rho.shape))
    whitened[..., 1:] = series[..., 1:] - rho * series[..., :-1]
    whitened[..., :1] = np.sqrt(1.0 - rho**2) * series[..., :1]
    return whitened


def _fit_least_squares(design: np.ndarray, series: np.ndarray, dof: int) -> tuple[np.ndarray, ...]:
    """Betas ``(V, P)``, residual variance ``(V,)``, residuals ``(V, T)`` and ``pinv(X.T X)``."""
    pseudo_inverse = np.linalg.pinv(design)
    beta = series @ pseudo_inverse.T
    residuals = series - beta @ design.T
    variance = np.einsum("vt,vt->v", residuals, residuals) / dof
    return beta, variance, residuals, pseudo_inverse @ pseudo_inverse.T


def _fit_ar1_bins(
    design: np.ndarray, series: np.ndarray, bin_values: np.ndarray, bins: np.ndarray, dof: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prewhitened least squares for each AR(1) bin: betas, residual variances, per-bin covariances."""
    n_regressors = design.shape[1]
    beta = np.empty((series.shape[0], n_regressors))
    variance = np.empty(series.shape[0])
    covariances = np.empty((bin_values.size, n_regressors, n_regressors))
    for index, value in enumerate(bin_values):
        members = np.flatnonzero(bins == index)
        whitened_design = ar1_whiten(design.T, value).T
        beta[members], variance[members], _, covariances[index] = _fit_least_squares(
            whitened_design, ar1_whiten(series[members], value), dof
        )
    return beta, variance, covariances


def fit_glm(
    data: np.ndarray, design: DesignMatrix, noise_model: str = "ar1", ar_bin_width: float = 0.01
) -> GLMResults:
    """Fit the GLM to every voxel series.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)`` (e.g. ``(k, j, i, T)`` or ``(n_voxels, T)``).
    design : DesignMatrix
        Design with ``T`` rows.
    noise_model : {"ar1", "ols"}
        Temporal noise model.
    ar_bin_width : float
        AR(1) coefficients are truncated to multiples of this width; one GLS fit per bin.

    Returns
    -------
    GLMResults
    """
    if noise_model not in ("ar1", "ols"):
        raise InputError(f"noise model {noise_model!r} is unknown: use 'ar1' or 'ols'")
    if not 0 < ar_bin_width <= 0.5:
        raise InputError(f"AR bin width {ar_bin_width} is outside (0, 0.5]: use e.g. 0.01")
    data = np.asarray(data, dtype=float)
    X = design.matrix
    if data.shape[-1] != X.shape[0]:
        raise InputError(
            f"data have {data.shape[-1]} frames but the design has {X.shape[0]} rows: build the design "
            "with the series' frame count (time on the last axis)"
        )
    dof = X.shape[0] - np.linalg.matrix_rank(X)
    if dof < 1:
        raise InputError(f"the design has as many regressors as frames ({X.shape[0]}): use fewer regressors")
    spatial_shape = data.shape[:-1]
    series = data.reshape(-1, X.shape[0])
    finite = np.all(np.isfinite(series), axis=1)
    n_voxels, n_regressors = series.shape[0], X.shape[1]
    beta = np.full((n_voxels, n_regressors), np.nan)
    variance = np.full(n_voxels, np.nan)
    rho = np.zeros(n_voxels)
    bin_index = np.full(n_voxels, -1)
    fitted = series if np.all(finite) else series[finite]
    ols_beta, ols_variance, residuals, ols_covariance = _fit_least_squares(X, fitted, dof)
    if noise_model == "ols":
        beta[finite], variance[finite], bin_index[finite] = ols_beta, ols_variance, 0
        covariances = ols_covariance[None]
    else:
        binned = np.trunc(ar1_coefficients(residuals) / ar_bin_width) * ar_bin_width
        del residuals
        bin_values, fitted_bins = np.unique(np.round(binned, 10), return_inverse=True)
        beta[finite], variance[finite], covariances = _fit_ar1_bins(X, fitted, bin_values, fitted_bins, dof)
        bin_index[finite], rho[finite] = fitted_bins, bin_values[fitted_bins]
    numerical_floor = (X.shape[0] * np.finfo(float).eps * np.max(np.abs(series), axis=1, initial=0.0)) ** 2
    variance[finite & (variance <= numerical_floor)] = 0.0
    n_failed = int(np.sum(~finite) + np.sum(variance[finite] <= 0))
    return GLMResults(
        beta=beta.reshape(*spatial_shape, n_regressors),
        residual_variance=variance.reshape(spatial_shape),
        ar_coefficient=rho.reshape(spatial_shape),
        dof=int(dof),
        names=design.names,
        bin_covariances=covariances,
        bin_index=bin_index.reshape(spatial_shape),
        n_failed=n_failed,
    )


# ----------------------------------------------------------------------------------------------
# Contrasts
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContrastMaps:
    """Maps of one t contrast.

    Attributes
    ----------
    effect : numpy.ndarray
        Contrast of the parameter estimates, in data units.
    variance : numpy.ndarray
        Variance of the effect, in squared data units.
    t : numpy.ndarray
        t statistic (NaN where the variance is not positive or the voxel failed).
    z : numpy.ndarray
        z score with the same one-sided p-value as ``t``.
    dof : int
        Degrees of freedom of ``t``.
    """

    effect: np.ndarray
    variance: np.ndarray
    t: np.ndarray
    z: np.ndarray
    dof: int


def contrast_vector(names: Sequence[str], contrast: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """Contrast weights over the regressors.

    Parameters
    ----------
    names : sequence of str
        Regressor names of the design.
    contrast : mapping or sequence of float
        ``{regressor name: weight}`` (e.g. ``{"faces": 1, "houses": -1}``) or one weight per
        regressor.

    Returns
    -------
    numpy.ndarray
        Weights of shape ``(len(names),)``.
    """
    if isinstance(contrast, Mapping):
        weights = np.zeros(len(names))
        weights[column_indices(names, list(contrast))] = list(contrast.values())
        return weights
    weights = np.asarray(contrast, dtype=float)
    if weights.shape != (len(names),):
        raise InputError(
            f"contrast of shape {weights.shape} does not match the {len(names)} regressors: give one weight "
            "per regressor or a {name: weight} mapping"
        )
    return weights


def compute_contrast(results: GLMResults, contrast: Mapping[str, float] | Sequence[float]) -> ContrastMaps:
    """Effect, variance, t and z maps of a t contrast.

    Parameters
    ----------
    results : GLMResults
        Output of `fit_glm`.
    contrast : mapping or sequence of float
        See `contrast_vector`.

    Returns
    -------
    ContrastMaps
    """
    weights = contrast_vector(results.names, contrast)
    if not np.any(weights):
        raise InputError("the contrast weights are all zero: give at least one non-zero weight")
    effect = results.beta @ weights
    bin_scale = np.einsum("p,bpq,q->b", weights, results.bin_covariances, weights)
    scale = np.where(results.bin_index >= 0, bin_scale[np.maximum(results.bin_index, 0)], np.nan)
    variance = results.residual_variance * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(variance > 0, effect / np.sqrt(variance), np.nan)
    return ContrastMaps(effect, variance, t, t_to_z(t, results.dof), results.dof)


def _log_t_upper_tail(abs_t: np.ndarray, dof: float) -> np.ndarray:
    """log P(T_dof > abs_t) for abs_t >= 0, accurate far into the tail.

    Uses ``P = I_x(dof/2, 1/2) / 2`` with ``x = dof / (dof + t^2)`` and, where ``x < 1/2``,
    ``I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) 2F1(a + b, 1; a + 1; x)`` (DLMF 8.17.8) in logs.
    """
    a, b = dof / 2.0, 0.5
    x = dof / (dof + abs_t**2)
    tail = x < 0.5
    log_p = np.empty_like(abs_t)
    with np.errstate(divide="ignore"):
        log_p[~tail] = np.log(special.stdtr(dof, -abs_t[~tail]))
    xt = x[tail]
    log_p[tail] = (
        np.log(0.5)
        + a * np.log(xt)
        + b * np.log1p(-xt)
        - np.log(a)
        - special.betaln(a, b)
        + np.log(special.hyp2f1(a + b, 1.0, a + 1.0, xt))
    )
    return log_p


def t_to_z(t: np.ndarray, dof: float) -> np.ndarray:
    """Convert t statistics to z scores with equal one-sided p-values.

    Parameters
    ----------
    t : numpy.ndarray
        t statistics (NaN passes through).
    dof : float
        Degrees of freedom (> 0).

    Returns
    -------
    numpy.ndarray
        ``z = sign(t) * Phi^-1(1 - P(T > |t|))`` computed from the log tail probability, so it stays
        exact and finite for extreme t (e.g. t = 1e4 with 100 dof gives z ~ 46).
    """
    if not dof > 0:
        raise InputError(f"degrees of freedom {dof} are not positive: the design needs fewer regressors")
    t = np.asarray(t, dtype=float)
    finite = np.isfinite(t)
    z = np.full(t.shape, np.nan)
    z[np.isinf(t)] = np.sign(t[np.isinf(t)]) * np.inf
    abs_t = np.abs(t[finite])
    z[finite] = -np.sign(t[finite]) * special.ndtri_exp(_log_t_upper_tail(abs_t, float(dof)))
    return z


# ----------------------------------------------------------------------------------------------
# HRF shape
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HRFShape:
    """Voxel-wise shape of the estimated haemodynamic response.

    Attributes
    ----------
    peak_latency : numpy.ndarray
        Time of the response maximum after event onset, in s (NaN where not found).
    fwhm : numpy.ndarray
        Full width at half maximum of the response, in s (NaN where not found).
    peak_amplitude : numpy.ndarray
        Response maximum, in data units per regressor unit.
    times : numpy.ndarray
        Times after onset at which the response is reconstructed, in s.
    coefficients : numpy.ndarray
        Basis coefficients ``(..., n_basis)``.
    basis : numpy.ndarray
        Basis ``(n_basis, n_times)``; the response is ``coefficients @ basis``.
    n_failed : int
        Voxels whose peak or width could not be determined.
    """

    peak_latency: np.ndarray
    fwhm: np.ndarray
    peak_amplitude: np.ndarray
    times: np.ndarray
    coefficients: np.ndarray = field(repr=False)
    basis: np.ndarray = field(repr=False)
    n_failed: int


def response_peak_and_fwhm(times: np.ndarray, responses: np.ndarray) -> tuple[np.ndarray, ...]:
    """Peak time, full width at half maximum and peak value of sampled responses.

    Parameters
    ----------
    times : numpy.ndarray
        Uniformly spaced sample times ``(n,)``, in s.
    responses : numpy.ndarray
        Responses ``(..., n)``.

    Returns
    -------
    peak_time, fwhm, peak_value : numpy.ndarray
        Each of shape ``responses.shape[:-1]``. The peak is refined by parabolic interpolation of
        the maximum sample; the half-maximum crossings on each side by linear interpolation. NaN
        where the maximum is not positive, lies on the first or last sample, or the response does
        not fall below half its peak on both sides.
    """
    step = times[1] - times[0]
    n_samples = times.size
    peak_index = np.argmax(responses, axis=-1)
    interior = (peak_index > 0) & (peak_index < n_samples - 1)
    inner = np.clip(peak_index, 1, n_samples - 2)[..., None]
    neighbours = np.take_along_axis(responses, inner + np.array([-1, 0, 1]), axis=-1)
    offset, peak_value = parabolic_peak(neighbours[..., 0], neighbours[..., 1], neighbours[..., 2])
    valid = interior & (peak_value > 0)
    peak_time = times[0] + (inner[..., 0] + offset) * step
    half = (peak_value / 2.0)[..., None]
    below = responses < half
    sample = np.arange(n_samples)
    left = np.max(np.where(below & (sample < peak_index[..., None]), sample, -1), axis=-1)
    right = np.min(np.where(below & (sample > peak_index[..., None]), sample, n_samples), axis=-1)
    valid &= (left >= 0) & (right < n_samples)
    left_time = _half_crossing(times, responses, np.clip(left, 0, n_samples - 2), half[..., 0])
    right_time = _half_crossing(times, responses, np.clip(right - 1, 0, n_samples - 2), half[..., 0])
    nan = np.full(peak_time.shape, np.nan)
    return (
        np.where(valid, peak_time, nan),
        np.where(valid, right_time - left_time, nan),
        np.where(valid, peak_value, nan),
    )


def _half_crossing(
    times: np.ndarray, responses: np.ndarray, index: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Time where the response crosses ``level`` between samples ``index`` and ``index + 1``."""
    before = np.take_along_axis(responses, index[..., None], axis=-1)[..., 0]
    after = np.take_along_axis(responses, index[..., None] + 1, axis=-1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (level - before) / (after - before)
    return times[index] + fraction * (times[1] - times[0])


def estimate_hrf_shape(
    data: np.ndarray,
    events: Events,
    tr: float,
    trial_type: str,
    hrf_model: str = "fir",
    n_fir_delays: int = 12,
    reference_time: float = 0.0,
    high_pass_cutoff: float | None = 128.0,
    noise_model: str = "ols",
    oversampling: int = 50,
) -> HRFShape:
    """Voxel-wise peak latency and FWHM of the response to one trial type.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)``.
    events : Events
        Experimental events.
    tr : float
        Repetition time, in s.
    trial_type : str
        Condition whose response is measured.
    hrf_model : str
        ``"fir"`` (model-free: one coefficient per delay ``d * tr``, exact for onsets on frame
        times) or a canonical model with derivatives (e.g. ``"spm + derivative + dispersion"``),
        reconstructed every ``tr / oversampling`` s.
    n_fir_delays : int
        FIR delays 0 .. n - 1 TRs.
    reference_time, high_pass_cutoff, oversampling
        As in `design_matrix`.
    noise_model : {"ols", "ar1"}
        As in `fit_glm`.

    Returns
    -------
    HRFShape
    """
    if trial_type not in events.trial_types:
        raise InputError(
            f"trial type {trial_type!r} has no events: use one of {', '.join(events.trial_types)}"
        )
    design = design_matrix(
        events,
        data.shape[-1],
        tr,
        hrf_model,
        reference_time,
        high_pass_cutoff,
        n_fir_delays=n_fir_delays,
        oversampling=oversampling,
        orthogonalize=False,
    )
    if hrf_model == "fir":
        suffixes = [f"_delay_{delay}" for delay in range(n_fir_delays)]
        times, basis = np.arange(n_fir_delays) * tr, np.eye(n_fir_delays)
    else:
        suffixes = list(basis_names(hrf_model))
        times, basis = hrf_times(tr, oversampling), canonical_kernels(hrf_model, tr, oversampling)
    results = fit_glm(data, design, noise_model)
    coefficients = results.beta[..., design.columns([trial_type + suffix for suffix in suffixes])]
    flat = coefficients.reshape(-1, basis.shape[0])
    chunk = max(1, PEAK_CHUNK_ELEMENTS // times.size)
    measures = np.full((3, flat.shape[0]), np.nan)
    for start in range(0, flat.shape[0], chunk):
        measures[:, start : start + chunk] = response_peak_and_fwhm(
            times, flat[start : start + chunk] @ basis
        )
    peak_time, fwhm, peak_value = (values.reshape(coefficients.shape[:-1]) for values in measures)
    return HRFShape(
        peak_time,
        fwhm,
        peak_value,
        times,
        coefficients,
        basis,
        n_failed=int(np.sum(np.isnan(peak_time) | np.isnan(fwhm))),
    )
