"""The echo analysis on arrays: feature asymmetry, local phase, left ventricle over the cycle, volumes.

This is the one place where the steps are put together; the MRML logic and the command line both
call :func:`analyse_echo` and only convert nodes and files to and from arrays. The steps and their
references are those of :mod:`~Echo4DFeaturesLib.feature_asymmetry` (Kovesi 1999; Rajpoot et al.
2009), :mod:`~Echo4DFeaturesLib.lv_segmentation` and :mod:`~Echo4DFeaturesLib.volumes` (Lang et al.
2015). Arrays are ``(k, j, i, T)`` (time last), spacing ``(sk, sj, si)`` in mm, times in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from SpatioTemporalCommonLib.progress import Progress, as_progress
from SpatioTemporalCommonLib.series import validate_frame_times

from .feature_asymmetry import check_series, feature_asymmetry_series
from .lv_segmentation import segment_left_ventricle
from .monogenic import LogGaborBank, check_spacing
from .parameters import EchoParameters, check_parameters, filter_bank, phase_scale_index
from .volumes import VolumeIndices


@dataclass
class EchoAnalysis:
    """Everything an echo analysis produces.

    Attributes
    ----------
    feature_asymmetry : ndarray, shape (k, j, i, T)
        Oriented feature asymmetry in [0, 1] (dark-to-bright edges seen from the seed): the map the
        left-ventricle boundary was found on. float32.
    local_phase : ndarray, shape (k, j, i, T)
        Monogenic local phase in radians, in [0, pi] (0: bright line, pi/2: step edge, pi: dark line),
        at the wavelength ``phase_wavelength_mm``. float32.
    labels : ndarray, shape (k, j, i, T)
        uint8 left-ventricle labels, 1 = cavity (blood pool).
    volumes_ml : ndarray, shape (T,)
        Cavity volume of every frame, ml.
    times_s : ndarray, shape (T,)
        Frame times (s); NaN where the input carries none.
    indices : VolumeIndices
        EDV, ESV, SV (ml), EF (percent), end-diastolic and end-systolic frames.
    seed_kji : tuple of float
        Seed used, voxel coordinates ``(k, j, i)``.
    seed_automatic : bool
        Whether the seed was found automatically.
    centre_kji : tuple of float
        Centre of the boundary search (centroid of the end-diastolic cavity), voxel coordinates.
    phase_wavelength_mm : float
        Centre wavelength of the local-phase filter, mm.
    """

    feature_asymmetry: np.ndarray
    local_phase: np.ndarray
    labels: np.ndarray
    volumes_ml: np.ndarray
    times_s: np.ndarray
    indices: VolumeIndices
    seed_kji: tuple[float, float, float]
    seed_automatic: bool
    centre_kji: tuple[float, float, float]
    phase_wavelength_mm: float


def frame_times_or_nan(times_s: np.ndarray | None, n_frames: int) -> np.ndarray:
    """Validated frame times (s), or NaN for every frame when the input carries none."""
    if times_s is None:
        return np.full(n_frames, np.nan)
    return validate_frame_times(times_s, n_frames, "the frame times")


def local_phase_series(
    series: np.ndarray,
    spacing_kji: tuple[float, float, float],
    bank: LogGaborBank,
    parameters: EchoParameters,
) -> tuple[np.ndarray, float]:
    """Monogenic local phase (rad) of every frame at the scale :func:`phase_scale_index` chooses.

    Only that one scale is filtered (in 4D or 3D as ``parameters.mode`` says).

    Returns
    -------
    phase : ndarray, shape (k, j, i, T)
        Local phase in [0, pi], float32.
    wavelength_mm : float
        Centre wavelength of the filter, mm.
    """
    wavelength = bank.wavelengths_mm[phase_scale_index(parameters)]
    single_scale = LogGaborBank(1, wavelength, bank.mult, bank.sigma_onf)
    maps = feature_asymmetry_series(
        series,
        spacing_kji,
        single_scale,
        mode=parameters.mode,
        space_time_mm_per_frame=parameters.space_time_mm_per_frame,
        k=parameters.k,
        local_phase_scale=0,
    )
    return maps.local_phase, wavelength


def analyse_echo(
    series: np.ndarray,
    spacing_kji: tuple[float, float, float],
    times_s: np.ndarray | None,
    parameters: EchoParameters,
    *,
    seed_kji: tuple[float, float, float] | None = None,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> EchoAnalysis:
    """Run the whole echo analysis on ``series (k, j, i, T)``.

    Parameters
    ----------
    series : ndarray, shape (k, j, i, T)
        Echo grey levels (blood dark), time last, at least 3 frames.
    spacing_kji : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm; every filter and distance is in mm, so anisotropic
        voxels are handled.
    times_s : ndarray, shape (T,), or None
        Frame times (s), only reported with the volume curve; None when unknown.
    parameters : EchoParameters
        Analysis parameters (validated here, and checked against the grid).
    seed_kji : tuple of float, optional
        A point in the left-ventricular cavity, voxel coordinates ``(k, j, i)``; None finds the cavity
        automatically (the largest dark enclosed region near the volume centre).
    progress : callable(fraction, message), optional
        Progress and cancellation.

    Returns
    -------
    EchoAnalysis
        Feature maps, labels, volume curve and indices, and the seed used.
    """
    progress = as_progress(progress)
    check_parameters(parameters)
    check_series(series)
    spacing = check_spacing(spacing_kji)
    bank = filter_bank(parameters, series.shape[:3], spacing)
    times = frame_times_or_nan(times_s, series.shape[3])
    values = np.ascontiguousarray(series, dtype=np.float32)
    progress(0.0, "finding the cavity" if seed_kji is None else "checking the seed")
    segmentation = segment_left_ventricle(
        values,
        spacing,
        seed_kji,
        bank,
        mode=parameters.mode,
        space_time_mm_per_frame=parameters.space_time_mm_per_frame,
        k=parameters.k,
        fa_threshold=parameters.fa_threshold,
        max_displacement_mm=parameters.max_displacement_mm,
        n_directions=parameters.directions,
        progress=progress.subrange(0.0, 0.8),
    )
    progress(0.8, "local phase")
    phase, wavelength = local_phase_series(values, spacing, bank, parameters)
    progress(1.0, "done")
    return EchoAnalysis(
        feature_asymmetry=segmentation.feature_asymmetry,
        local_phase=phase,
        labels=segmentation.labels,
        volumes_ml=segmentation.volumes_ml,
        times_s=times,
        indices=segmentation.indices,
        seed_kji=segmentation.seed_kji,
        seed_automatic=seed_kji is None,
        centre_kji=segmentation.centre_kji,
        phase_wavelength_mm=wavelength,
    )
