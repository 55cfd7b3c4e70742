"""Head-motion correction and slice-timing correction of BOLD series.

Motion correction registers every frame rigidly to a reference volume with SimpleITK (Euler 3D
transform, mean squares or Mattes mutual information, multi-resolution pyramid, regular-step
gradient descent with physical-shift parameter scaling), initialised from the previous frame's
estimate as in MCFLIRT (Jenkinson et al. 2002), and resamples the frame onto the reference grid.

Parameter convention. Volumes ``(k, j, i)`` with spacing ``(sk, sj, si)`` mm are placed with voxel
``(0, 0, 0)`` at the origin and the x, y, z axes along i, j, k. The transform of frame ``n`` maps a
reference point ``p`` to the frame point ``R (p - c) + c + t`` where ``c`` is the centre of the volume
and ``R = Rz Rx Ry`` (rotation about y first, then x, then z; ITK's Euler3D order); the frame value
at that point is the corrected value at ``p``. The six parameters are reported in FSL's ``.par``
column order: rotX rotY rotZ (rad, right-handed about x, y, z), transX transY transZ (mm). They
agree with MCFLIRT's in order and units, not necessarily in sign or rotation centre; framewise
displacement (Power et al. 2012) is insensitive to both for small motions.

Slice-timing correction (Sladky et al. 2011) shifts each slice's series in time so that it
represents ``reference_time`` within each TR instead of its acquisition time: either by a phase
shift in the Fourier domain (band-limited "sinc" interpolation; the series is linearly detrended and
mirror-extended first, which suppresses wrap-around) or by cubic spline interpolation.

References
----------
Jenkinson M, Bannister P, Brady M, Smith S. Improved optimization for the robust and accurate linear
registration and motion correction of brain images. NeuroImage 2002;17:825-841.
Mattes D, Haynor DR, Vesselle H, Lewellen TK, Eubank W. PET-CT image registration in the chest using
free-form deformations. IEEE Trans Med Imaging 2003;22:120-128.
Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE. Spurious but systematic correlations in
functional connectivity MRI networks arise from subject motion. NeuroImage 2012;59:2142-2154.
Sladky R, Friston KJ, Trostl J, Cunnington R, Moser E, Windischberger C. Slice-timing effects and
their correction in functional MRI. NeuroImage 2011;58:588-594.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import fft
from scipy.interpolate import CubicSpline
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import check_tr

METRICS = ("mean_squares", "mattes")


@dataclass(frozen=True)
class MotionCorrection:
    """Motion-corrected series and its rigid parameters.

    Attributes
    ----------
    corrected : numpy.ndarray
        ``(k, j, i, T)`` frames resampled onto the reference grid (linear interpolation; points
        outside the frame take the frame's minimum).
    parameters : numpy.ndarray
        ``(T, 6)``: rotX rotY rotZ (rad), transX transY transZ (mm), see the module docstring.
    metric_values : numpy.ndarray
        ``(T,)`` final metric value of each registration (lower is better).
    """

    corrected: np.ndarray
    parameters: np.ndarray
    metric_values: np.ndarray


def volume_to_image(volume: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    """SimpleITK image of a ``(k, j, i)`` volume with spacing ``(sk, sj, si)`` mm, origin 0."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    image.SetSpacing([float(value) for value in spacing[::-1]])
    return image


def _check_series(series: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    series = np.asarray(series, dtype=float)
    if series.ndim != 4 or min(series.shape[:3]) < 4:
        raise InputError(
            f"series of shape {series.shape} is not (k, j, i, T) with at least 4 voxels per axis: "
            "give a 4D array"
        )
    if len(spacing) != 3 or not all(np.isfinite(value) and value > 0 for value in spacing):
        raise InputError(f"spacing {spacing} is not three positive values: give (sk, sj, si) in mm")
    if not np.all(np.isfinite(series)):
        raise InputError("the series contains NaN or infinity: fill those voxels before motion correction")
    return series


def _registration(
    metric: str, shrink_factors: tuple[int, ...], smoothing_sigmas: tuple[float, ...], max_iterations: int
) -> sitk.ImageRegistrationMethod:
    registration = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        registration.SetMetricAsMeanSquares()
    registration.SetMetricSamplingStrategy(registration.NONE)
    registration.SetInterpolator(sitk.sitkLinear)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-5,
        numberOfIterations=max_iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-10,
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetShrinkFactorsPerLevel(list(shrink_factors))
    registration.SetSmoothingSigmasPerLevel(list(smoothing_sigmas))
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return registration


def _reference_volume(series: np.ndarray, reference: str | int | np.ndarray) -> np.ndarray:
    if isinstance(reference, str):
        if reference != "mean":
            raise InputError(
                f"reference {reference!r} is unknown: use 'mean', a frame index or a (k, j, i) volume"
            )
        return series.mean(axis=-1)
    if np.ndim(reference) == 0:
        if not -series.shape[-1] <= int(reference) < series.shape[-1]:
            raise InputError(f"reference frame {reference} is outside 0..{series.shape[-1] - 1}")
        return series[..., int(reference)]
    reference = np.asarray(reference, dtype=float)
    if reference.shape != series.shape[:3]:
        raise InputError(
            f"reference volume of shape {reference.shape} does not match frames {series.shape[:3]}"
        )
    return reference


def motion_correct(
    series: np.ndarray,
    spacing: tuple[float, float, float],
    reference: str | int | np.ndarray = "mean",
    metric: str = "mean_squares",
    shrink_factors: tuple[int, ...] = (4, 2, 1),
    smoothing_sigmas: tuple[float, ...] = (4.0, 2.0, 0.0),
    max_iterations: int = 200,
) -> MotionCorrection:
    """Rigidly register every frame to a reference volume and resample it onto the reference grid.

    Parameters
    ----------
    series : numpy.ndarray
        ``(k, j, i, T)`` BOLD series.
    spacing : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    reference : {"mean"} or int or numpy.ndarray
        Mean volume, a frame index, or a ``(k, j, i)`` volume.
    metric : {"mean_squares", "mattes"}
        Registration metric (Mattes mutual information with 32 bins, or mean squares).
    shrink_factors, smoothing_sigmas : tuple
        Pyramid levels: shrink factor and Gaussian sigma in mm of each level, coarse to fine.
    max_iterations : int
        Optimiser iterations per level.

    Returns
    -------
    MotionCorrection
    """
    series = _check_series(series, spacing)
    if metric not in METRICS:
        raise InputError(f"metric {metric!r} is unknown: use one of {', '.join(METRICS)}")
    if len(shrink_factors) != len(smoothing_sigmas) or not shrink_factors:
        raise InputError("give one smoothing sigma (mm) per shrink factor, e.g. (4, 2, 1) and (4, 2, 0)")
    fixed = volume_to_image(_reference_volume(series, reference), spacing)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(size - 1) / 2.0 for size in fixed.GetSize()])
    registration = _registration(metric, shrink_factors, smoothing_sigmas, max_iterations)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)
    corrected = np.empty_like(series)
    parameters = np.empty((series.shape[-1], 6))
    metric_values = np.empty(series.shape[-1])
    for frame in range(series.shape[-1]):
        moving = volume_to_image(series[..., frame], spacing)
        registration.SetInitialTransform(transform, inPlace=True)
        registration.Execute(fixed, moving)
        metric_values[frame] = registration.GetMetricValue()
        parameters[frame] = transform.GetParameters()
        resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, float(series[..., frame].min()))
        corrected[..., frame] = sitk.GetArrayFromImage(resampled)
    return MotionCorrection(corrected, parameters, metric_values)


def _check_slice_times(
    series: np.ndarray, tr: float, slice_times: np.ndarray, slice_axis: int, reference_time: float
) -> np.ndarray:
    check_tr(tr)
    if not 0 <= slice_axis < series.ndim - 1:
        raise InputError(f"slice axis {slice_axis} is not a spatial axis of a series of shape {series.shape}")
    slice_times = np.asarray(slice_times, dtype=float)
    if slice_times.shape != (series.shape[slice_axis],):
        raise InputError(
            f"{slice_times.size} slice times do not match {series.shape[slice_axis]} slices along axis "
            f"{slice_axis}: give BIDS SliceTiming (one time per slice, in s)"
        )
    if np.any(slice_times < 0) or np.any(slice_times >= tr):
        raise InputError(
            f"slice times must lie in [0, TR={tr} s): check they are in seconds, not milliseconds"
        )
    if not 0 <= reference_time < tr:
        raise InputError(f"reference time {reference_time} s is outside [0, TR={tr} s)")
    if series.shape[-1] < 4:
        raise InputError("slice-timing correction needs at least 4 frames")
    return slice_times


def _fourier_shift(series: np.ndarray, shift: float) -> np.ndarray:
    """Band-limited values of ``series`` at ``n + shift`` samples along the last axis."""
    n_frames = series.shape[-1]
    samples = np.arange(n_frames)
    slope = (series[..., -1:] - series[..., :1]) / (n_frames - 1)
    detrended = series - series[..., :1] - slope * samples
    extended = np.concatenate([detrended, detrended[..., ::-1]], axis=-1)
    frequencies = fft.rfftfreq(extended.shape[-1])
    shifted = fft.irfft(
        fft.rfft(extended, axis=-1) * np.exp(2j * np.pi * frequencies * shift), extended.shape[-1], axis=-1
    )[..., :n_frames]
    return shifted + series[..., :1] + slope * (samples + shift)


def _spline_shift(series: np.ndarray, shift: float) -> np.ndarray:
    """Cubic-spline values of ``series`` at ``n + shift`` samples (clamped to the series' ends)."""
    samples = np.arange(series.shape[-1])
    spline = CubicSpline(samples, series, axis=-1)
    return spline(np.clip(samples + shift, 0, samples[-1]))


def slice_timing_correct(
    series: np.ndarray,
    tr: float,
    slice_times: np.ndarray,
    reference_time: float = 0.0,
    slice_axis: int = 0,
    method: str = "fourier",
) -> np.ndarray:
    """Resample every slice's series to a common time within each TR.

    Parameters
    ----------
    series : numpy.ndarray
        ``(k, j, i, T)`` (or any ``(..., T)``) BOLD series.
    tr : float
        Repetition time, in s.
    slice_times : numpy.ndarray
        Acquisition time of each slice within the TR, in s (BIDS ``SliceTiming``), along
        ``slice_axis``.
    reference_time : float
        Time within the TR the corrected series represent, in s.
    slice_axis : int
        Spatial axis indexing slices (0 = k for axial slices of a ``(k, j, i, T)`` array).
    method : {"fourier", "cubic"}
        Fourier phase shift (sinc interpolation) or cubic spline.

    Returns
    -------
    numpy.ndarray
        Corrected series, same shape: frame ``n`` of every slice estimates the signal at
        ``n * tr + reference_time``.
    """
    series = np.asarray(series, dtype=float)
    slice_times = _check_slice_times(series, tr, slice_times, slice_axis, reference_time)
    shifters = {"fourier": _fourier_shift, "cubic": _spline_shift}
    if method not in shifters:
        raise InputError(f"method {method!r} is unknown: use 'fourier' or 'cubic'")
    corrected = np.empty_like(series)
    for index, slice_time in enumerate(slice_times):
        selection = [slice(None)] * series.ndim
        selection[slice_axis] = index
        selection = tuple(selection)
        corrected[selection] = shifters[method](series[selection], (reference_time - slice_time) / tr)
    return corrected
