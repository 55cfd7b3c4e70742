"""The DCE-MRI analysis on arrays: signal to concentration, AIF, model fit and curve measures.

This is the one place where the steps are put together; the MRML logic and the command line both
call :func:`analyse_dce` and only convert nodes and files to and from arrays. Arrays are
``(..., T)`` (time last); times in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.progress import Progress, as_progress

from .aif import image_derived_aif, population_aif, read_aif_csv
from .bolus_arrival import bolus_arrival_time
from .fitting import fit_model
from .models import get_model
from .parameters import POPULATION_AIF_NAMES, DCEParameters
from .semiquantitative import semiquantitative_maps
from .signal_model import concentration_from_signal

#: Threads that fit chunks of voxels in parallel (the fitting releases the GIL in numpy).
FIT_WORKERS = max(1, min(4, os.cpu_count() or 1))

#: Unit of every semi-quantitative map, by whether the curves are signal or concentration.
SEMIQUANTITATIVE_UNITS = {
    "TTP": "s", "MaxEnhancement": "{curve}", "RelativeEnhancement": "", "InitialRate": "{curve}/s",
    "MaxSlope": "{curve}/s", "WashoutSlope": "%/min", "SER": "", "CurveType": "1 persistent, 2 plateau, 3 wash-out",
}


@dataclass
class DCEAnalysis:
    """Everything a DCE analysis produces.

    Attributes
    ----------
    maps : dict of str to ndarray
        Output maps on the input's spatial shape, named as the files (``Ktrans``, ``ve``, ...,
        ``R2``, ``FitFailed``); NaN where undefined.
    units : dict of str to str
        Unit of each map.
    n_fitted, n_failed : int
        Voxels fitted and voxels that failed (inside the mask).
    times_s : ndarray
        Frame times (s).
    aif_plasma_mM : ndarray
        The AIF used (plasma, mM).
    aif_description : str
        Where the AIF came from.
    mean_concentration_mM : ndarray
        Mean concentration curve over the mask.
    mean_fit_mM : ndarray
        Model fitted to that mean curve.
    baseline_frames : int
        Pre-contrast frames used.
    arrival_s : float
        Bolus arrival time of the mean curve (s).
    """

    maps: dict[str, np.ndarray]
    units: dict[str, str]
    n_fitted: int
    n_failed: int
    times_s: np.ndarray
    aif_plasma_mM: np.ndarray
    aif_description: str
    mean_concentration_mM: np.ndarray
    mean_fit_mM: np.ndarray
    baseline_frames: int
    arrival_s: float


#: Voxels processed together by the per-voxel steps outside the fit (bounds the working memory).
CHUNK_VOXELS = 65536


def voxel_chunks(n_voxels: int, chunk: int = CHUNK_VOXELS):
    """Consecutive ``slice`` objects covering ``range(n_voxels)`` in chunks."""
    return (slice(start, min(start + chunk, n_voxels)) for start in range(0, n_voxels, chunk))


def flat_voxels(curves: np.ndarray) -> np.ndarray:
    """Curves ``(..., T)`` as ``(N, T)`` (a view for contiguous input)."""
    return curves.reshape(-1, curves.shape[-1])


def mean_curve(curves: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Mean over the voxels of ``mask`` (all voxels if None) of the finite curves ``(..., T)``."""
    flat = flat_voxels(curves)
    inside = np.ones(flat.shape[0], bool) if mask is None else np.asarray(mask).reshape(-1)
    total, count = np.zeros(flat.shape[1]), 0
    for chunk in voxel_chunks(flat.shape[0]):
        block = flat[chunk][inside[chunk]]
        finite = block[np.all(np.isfinite(block), axis=1)]
        total += finite.sum(axis=0, dtype=float)
        count += finite.shape[0]
    if count == 0:
        raise InputError("no voxel in the mask has a finite curve: check the mask and the input values")
    return total / count


def baseline_frame_count(curve: np.ndarray, times_s: np.ndarray, requested: int | None) -> tuple[int, float]:
    """Number of pre-contrast frames (given, or the frames before the bolus arrival of ``curve``).

    Returns the count and the arrival time (s) of ``curve``.
    """
    arrival = float(bolus_arrival_time(curve, times_s))
    if requested is not None:
        if requested >= times_s.size - 2:
            raise InputError(f"--baseline-frames {requested} leaves fewer than 3 frames after the baseline: "
                             "give the number of pre-contrast frames")
        return int(requested), arrival
    if not np.isfinite(arrival):
        raise InputError("the bolus arrival cannot be found in the mean curve (no enhancement?): "
                         "give the number of pre-contrast frames with --baseline-frames")
    return max(1, int(np.count_nonzero(times_s < arrival))), arrival


def to_concentration(curves: np.ndarray, times_s: np.ndarray, parameters: DCEParameters,
                     baseline_frames: int, t1_map_ms: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Concentration curves (mM): the input itself, or converted from spoiled gradient-echo signal.

    Returns the curves and, for signal input, the :class:`~DCEKineticsLib.signal_model.ConversionFailure`
    code of every voxel.
    """
    if parameters.input_kind == "concentration":
        return curves, None
    t1 = t1_map_ms if t1_map_ms is not None else parameters.t1_ms
    missing = [name for name, value in (("--t1 (ms or a T1 map)", t1), ("--flip-angle", parameters.flip_angle_deg),
                                        ("--tr", parameters.tr_ms)) if value is None]
    if missing:
        raise InputError(f"signal input needs {', '.join(missing)} to convert signal to concentration; "
                         "or pass --input-kind concentration")
    flat = flat_voxels(curves)
    t1_flat = np.broadcast_to(np.asarray(t1, dtype=float), curves.shape[:-1]).reshape(-1)
    concentration = np.empty(flat.shape, np.float32)
    failure = np.empty(flat.shape[0], np.uint8)
    for chunk in voxel_chunks(flat.shape[0]):
        converted = concentration_from_signal(flat[chunk], t1_flat[chunk], parameters.flip_angle_deg,
                                              parameters.tr_ms, parameters.r1_per_mM_per_s, baseline_frames)
        concentration[chunk], failure[chunk] = converted.concentration_mM, converted.failure
    return concentration.reshape(curves.shape), failure.reshape(curves.shape[:-1])


#: Tissue curves used to align a population AIF with the acquisition's clock.
ALIGNMENT_SAMPLE_SIZE = 2000


def alignment_sample(concentration: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Up to :data:`ALIGNMENT_SAMPLE_SIZE` finite curves ``(N, T)`` from the mask, evenly spread."""
    flat = flat_voxels(concentration)
    candidates = np.arange(flat.shape[0]) if mask is None else np.flatnonzero(np.asarray(mask).reshape(-1))
    finite = [chunk_indices[np.all(np.isfinite(flat[chunk_indices]), axis=1)]
              for chunk_indices in np.array_split(candidates, max(1, candidates.size // CHUNK_VOXELS))]
    usable = np.concatenate(finite)
    step = max(1, usable.size // ALIGNMENT_SAMPLE_SIZE)
    return np.asarray(flat[usable[::step][:ALIGNMENT_SAMPLE_SIZE]], dtype=float)


def population_aif_delay(name: str, options: dict, tissue_curves_mM: np.ndarray, times_s: np.ndarray, model: str,
                         tissue_arrival_s: float) -> float:
    """Delay (s) of a population AIF on the acquisition's clock.

    The population curves start at injection (t = 0); the acquisition's clock does not. The model is
    fitted to a sample of tissue curves with the AIF delay as an extra parameter (searched up to 30 s
    past the bolus arrival of the mean tissue curve); the median fitted delay is the AIF's delay.
    """
    reference = population_aif(name, times_s, **options)
    horizon = (tissue_arrival_s if np.isfinite(tissue_arrival_s) else times_s[0]) + 30.0
    max_delay = float(min(max(horizon - times_s[0], times_s[1] - times_s[0]), times_s[-1] - times_s[0]))
    fit = fit_model(tissue_curves_mM, times_s, reference, model, fit_delay=True, max_delay_s=max_delay)
    delays = fit.parameters["delay"][np.isfinite(fit.parameters["delay"])]
    delay = float(np.median(delays)) if delays.size else np.nan
    if not np.isfinite(delay):
        raise InputError(f"the {name} AIF cannot be aligned with the mean tissue curve (no enhancement in the mask?): "
                         "give a mask over enhancing tissue, or an AIF file with --aif FILE.csv")
    return delay


def arterial_input(concentration: np.ndarray, mask: np.ndarray | None, times_s: np.ndarray,
                   parameters: DCEParameters, tissue_arrival_s: float,
                   aif_mask: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The plasma AIF (mM) at the frame times and a description of its source.

    A population AIF is delayed to fit the tissue curves (:func:`population_aif_delay`); a CSV
    AIF is used on its own clock; ``auto`` derives it from the most arterial curves inside
    ``aif_mask``.
    """
    choice = parameters.aif.strip()
    name = choice.lower()
    if name in POPULATION_AIF_NAMES:
        options = {} if name == "weinmann" else {"hematocrit": parameters.hematocrit}
        sample = alignment_sample(concentration, mask)
        delay_s = population_aif_delay(name, options, sample, times_s, parameters.model, tissue_arrival_s)
        return population_aif(name, times_s, delay_s=delay_s, **options), f"{name} population AIF, delayed {delay_s:.2f} s"
    if name == "auto":
        if aif_mask is None:
            raise InputError("--aif auto needs an AIF mask over an artery: give --aif-mask FILE")
        derived = image_derived_aif(concentration[aif_mask], times_s, parameters.hematocrit)
        return derived.plasma_mM, f"image-derived AIF from {derived.voxel_indices.size} arterial voxels"
    if name.endswith(".csv"):
        return read_aif_csv(Path(choice), times_s), f"AIF file {Path(choice).name}"
    raise InputError(f"--aif {choice!r} is not known: choose {', '.join(POPULATION_AIF_NAMES)}, auto, or a .csv file")


def analyse_dce(series: np.ndarray, times_s: np.ndarray, parameters: DCEParameters, *,
                mask: np.ndarray | None = None, aif_mask: np.ndarray | None = None,
                t1_map_ms: np.ndarray | None = None,
                progress: Progress | Callable[[float, str], None] | None = None) -> DCEAnalysis:
    """Run the whole DCE analysis on ``series (..., T)``.

    Parameters
    ----------
    series : ndarray, shape (..., T)
        Signal or concentration (mM) curves, as ``parameters.input_kind`` says.
    times_s : ndarray, shape (T,)
        Frame times (s).
    parameters : DCEParameters
        Validated parameters.
    mask : ndarray of bool, shape (...), optional
        Voxels to fit (default: all).
    aif_mask : ndarray of bool, shape (...), optional
        Candidate arterial voxels for ``--aif auto``.
    t1_map_ms : ndarray, shape (...), optional
        Pre-contrast T1 map (ms), instead of the single ``parameters.t1_ms``.
    progress : callable(fraction, message), optional
        Progress and cancellation.
    """
    progress = as_progress(progress)
    times = np.asarray(times_s, dtype=float)
    progress(0.0, "finding the bolus arrival")
    n_baseline, arrival = baseline_frame_count(mean_curve(series, mask), times, parameters.baseline_frames)
    concentration, conversion_failure = to_concentration(series, times, parameters, n_baseline, t1_map_ms)
    tissue_mean = mean_curve(concentration, mask)
    if parameters.input_kind == "signal":
        arrival = float(bolus_arrival_time(tissue_mean, times))
    aif, aif_description = arterial_input(concentration, mask, times, parameters, arrival, aif_mask)
    progress(0.05, "fitting")
    fit = fit_model(concentration, times, aif, parameters.model, fit_delay=parameters.fit_delay,
                    max_delay_s=parameters.max_delay_s, mask=mask, progress=progress.subrange(0.05, 0.9),
                    workers=FIT_WORKERS)
    progress(0.9, "curve measures")
    curve_unit = "a.u." if parameters.input_kind == "signal" else "mM"
    semiquantitative = semiquantitative_in_chunks(series, times, n_baseline, parameters)
    if mask is not None:
        semiquantitative = {name: np.where(mask, values, np.nan) for name, values in semiquantitative.items()}
    quality = {"R2": fit.r_squared, "ResidualRMS": fit.residual_rms, "FitFailed": fit.failed.astype(np.uint8),
               "FailureReason": fit.failure_reason}
    if conversion_failure is not None:
        quality["ConversionFailure"] = conversion_failure
    maps = {**fit.parameters, **semiquantitative, **quality}
    units = {**fit.units, "R2": "", "ResidualRMS": "mM", "FitFailed": "1 = fit failed",
             "FailureReason": "code (see README)", "ConversionFailure": "bit flags (see README)"}
    units.update({name: SEMIQUANTITATIVE_UNITS.get(name, f"{curve_unit} s").format(curve=curve_unit)
                  for name in semiquantitative})
    mean_fit = _fitted_mean_curve(tissue_mean, times, aif, parameters)
    progress(1.0, "done")
    return DCEAnalysis(maps, units, fit.n_fitted, fit.n_failed, times, aif, aif_description, tissue_mean,
                       mean_fit, n_baseline, arrival)


def semiquantitative_in_chunks(curves: np.ndarray, times_s: np.ndarray, baseline_frames: int,
                               parameters: DCEParameters) -> dict[str, np.ndarray]:
    """:func:`~DCEKineticsLib.semiquantitative.semiquantitative_maps` of ``curves (..., T)``, chunk by chunk."""
    flat = flat_voxels(curves)
    maps: dict[str, np.ndarray] = {}
    for chunk in voxel_chunks(flat.shape[0]):
        block = semiquantitative_maps(flat[chunk], times_s, baseline_frames, early_phase_s=parameters.early_phase_s,
                                      iauc_windows_s=tuple(parameters.iauc_windows_s))
        for name, values in block.items():
            maps.setdefault(name, np.empty(flat.shape[0], np.float32))[chunk] = values
    return {name: values.reshape(curves.shape[:-1]) for name, values in maps.items()}


def _fitted_mean_curve(mean_mM: np.ndarray, times_s: np.ndarray, aif: np.ndarray, parameters: DCEParameters) -> np.ndarray:
    """The model fitted to the mean tissue curve, evaluated at the frame times (NaN if the fit fails)."""
    model = get_model(parameters.model)
    fit = fit_model(mean_mM, times_s, aif, parameters.model)
    values = [fit.parameters[name] for name in model.parameter_names]
    if not all(np.isfinite(values)):
        return np.full_like(mean_mM, np.nan)
    return model.forward(times_s, aif, *values)
