"""Input checks and preprocessing of multi-phase DCE-MRI studies for the temporal segmenter.

Steps, in order:

1. validation: at least three phases of one shape, one finite acquisition time per phase, strictly
   increasing (seconds after contrast injection);
2. optional N4 bias-field correction (Tustison et al., IEEE TMI 2010;29:1310-1320; SimpleITK), with the
   field estimated on one phase and divided out of every phase so the enhancement ratios are kept;
3. linear resampling to 1 mm isotropic voxels;
4. per-study intensity normalisation: the minimum over all phases maps to 0 and the 99th percentile
   over all phases to 1 (one scale for all phases, so wash-out stays visible).

Phase selection: the network sees (pre-contrast, first post-contrast, later post-contrast). A study
with more than three phases yields one such triplet per later phase: several training samples, and
a prediction averaged over them at inference.

Arrays are ``(k, j, i)`` with spacing ``(sk, sj, si)`` in mm; a study is ``(P, k, j, i)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from SpatioTemporalCommonLib.errors import InputError

MIN_PHASES = 3
TARGET_SPACING_MM = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class PreparedStudy:
    """A study ready for the network.

    Attributes
    ----------
    phases : numpy.ndarray
        Normalised intensities, float32 ``(P, k, j, i)`` on the target grid.
    times : numpy.ndarray
        Acquisition times, s after injection, ``(P,)``.
    spacing : tuple of float
        Spacing of the target grid ``(sk, sj, si)``, mm.
    original_shape : tuple of int
        Shape ``(k, j, i)`` of the input grid.
    original_spacing : tuple of float
        Spacing of the input grid ``(sk, sj, si)``, mm.
    """

    phases: np.ndarray
    times: np.ndarray
    spacing: tuple[float, float, float]
    original_shape: tuple[int, int, int]
    original_spacing: tuple[float, float, float]


def validate_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Spacing as three floats; ``InputError`` unless it is three positive finite values (mm)."""
    values = np.asarray(spacing, dtype=float)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(
            f"voxel spacing {spacing!r} is invalid: give three positive values (sk, sj, si) in mm"
        )
    return (float(values[0]), float(values[1]), float(values[2]))


def validate_study(
    phases: np.ndarray | Sequence[np.ndarray], times: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Check a multi-phase study and stack it.

    Parameters
    ----------
    phases : numpy.ndarray or sequence of numpy.ndarray
        ``(P, k, j, i)`` array, or P volumes ``(k, j, i)``.
    times : sequence of float or None
        Acquisition time of each phase, s after contrast injection.

    Returns
    -------
    phases : numpy.ndarray
        float32 ``(P, k, j, i)``.
    times : numpy.ndarray
        float64 ``(P,)``.

    Raises
    ------
    InputError
        Fewer than three phases, phases of different shapes or with non-finite values, times
        missing, of the wrong count, non-finite or not strictly increasing.
    """
    volumes = [np.asarray(volume) for volume in phases]
    if len(volumes) < MIN_PHASES:
        raise InputError(
            f"the study has {len(volumes)} phase(s): give at least {MIN_PHASES} (pre-contrast, "
            "first post-contrast and a later post-contrast phase)"
        )
    for index, volume in enumerate(volumes):
        if volume.ndim != 3:
            raise InputError(
                f"phase {index} has {volume.ndim} dimensions: every phase must be a 3D volume (k, j, i)"
            )
        if volume.shape != volumes[0].shape:
            raise InputError(
                f"phase {index} has shape {volume.shape} but phase 0 has {volumes[0].shape}: all "
                "phases must share one geometry; resample them onto one grid first"
            )
    stacked = np.stack(volumes).astype(np.float32, copy=False)
    if not np.all(np.isfinite(stacked)):
        raise InputError(
            "the phases contain NaN or infinite voxels: replace them (e.g. by 0) before segmenting"
        )
    return stacked, validate_times(times, len(volumes))


def validate_times(times: Sequence[float] | None, n_phases: int) -> np.ndarray:
    """Check acquisition times: one finite value per phase (s after injection), strictly increasing.

    Parameters
    ----------
    times : sequence of float or None
        Acquisition times, s after contrast injection.
    n_phases : int
        Number of phases they belong to.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_phases,)``.
    """
    if times is None:
        raise InputError(
            "acquisition times are missing: give one time per phase in seconds after contrast "
            "injection (a times file, or the sequence's index values)"
        )
    values = np.asarray(times, dtype=float).ravel()
    if values.size != n_phases:
        raise InputError(
            f"{values.size} acquisition time(s) for {n_phases} phases: give exactly one time per phase"
        )
    if not np.all(np.isfinite(values)):
        raise InputError(
            f"acquisition times {values.tolist()} contain missing (NaN) or infinite values: give "
            "every phase's time in seconds after injection"
        )
    steps = np.diff(values)
    if np.any(steps <= 0):
        bad = int(np.argmax(steps <= 0))
        raise InputError(
            f"acquisition times must increase strictly, but phase {bad + 1} is at {values[bad + 1]:g} s "
            f"and phase {bad} at {values[bad]:g} s: give the phases in acquisition order with their "
            "times in seconds"
        )
    return values


def _to_image(volume: np.ndarray, spacing: Sequence[float]) -> sitk.Image:
    """SimpleITK image of a ``(k, j, i)`` array with spacing ``(sk, sj, si)`` and origin 0."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    image.SetSpacing([float(s) for s in reversed(spacing)])
    return image


def n4_bias_correct(
    phases: np.ndarray,
    spacing: Sequence[float],
    reference_phase: int = 0,
    shrink_factor: int = 2,
    iterations: Sequence[int] = (50, 50, 30),
) -> np.ndarray:
    """Remove a smooth multiplicative bias field, the same for every phase.

    The field is estimated by N4 on ``reference_phase`` inside an Otsu foreground mask and divided
    out of all phases, so ratios between phases (the enhancement) are unchanged.

    Parameters
    ----------
    phases : numpy.ndarray
        ``(P, k, j, i)`` intensities.
    spacing : sequence of float
        ``(sk, sj, si)`` in mm.
    reference_phase : int
        Phase the field is estimated on (default the pre-contrast phase).
    shrink_factor : int
        Downsampling factor for the estimation.
    iterations : sequence of int
        N4 iterations per fitting level.

    Returns
    -------
    numpy.ndarray
        Corrected phases, float32 ``(P, k, j, i)``.
    """
    reference = _to_image(np.maximum(phases[reference_phase], 1e-6), spacing)
    mask = sitk.OtsuThreshold(reference, 0, 1, 200)
    factors = [max(1, min(shrink_factor, size // 8)) for size in reference.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(n) for n in iterations])
    corrector.Execute(sitk.Shrink(reference, factors), sitk.Shrink(mask, factors))
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(reference))
    return (phases / np.exp(log_field)[None]).astype(np.float32)


def resample_volume(
    volume: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    shape: Sequence[int] | None = None,
    interpolation: str = "linear",
) -> np.ndarray:
    """Resample a ``(k, j, i)`` volume onto a grid of another spacing with the same first-voxel centre.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(k, j, i)`` values.
    spacing, target_spacing : sequence of float
        Input and output spacing ``(sk, sj, si)`` in mm.
    shape : sequence of int, optional
        Output shape ``(k, j, i)``; default ``round(size * spacing / target_spacing)``, at least 1.
    interpolation : {"linear", "nearest"}
        Interpolator. Points past the last input voxel take the nearest voxel's value.

    Returns
    -------
    numpy.ndarray
        float32 volume of the output shape.
    """
    if shape is None:
        shape = [
            max(1, round(n * s / t)) for n, s, t in zip(volume.shape, spacing, target_spacing, strict=True)
        ]
    interpolator = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolation]
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in reversed(shape)])
    resampler.SetOutputSpacing([float(s) for s in reversed(target_spacing)])
    resampler.SetInterpolator(interpolator)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampler.Execute(_to_image(volume, spacing)))


def normalise_intensity(phases: np.ndarray, upper_percentile: float = 99.0) -> np.ndarray:
    """Map the study minimum to 0 and its ``upper_percentile`` to 1, over all phases jointly.

    Parameters
    ----------
    phases : numpy.ndarray
        ``(P, k, j, i)`` intensities.
    upper_percentile : float
        Percentile (0-100) mapped to 1.

    Returns
    -------
    numpy.ndarray
        float32 normalised phases.
    """
    low = float(phases.min())
    high = float(np.percentile(phases, upper_percentile))
    if not high > low:
        raise InputError(
            f"the study's intensities are constant below the {upper_percentile:g}th percentile "
            f"({low:g}): check that the phases are the DCE images and not empty"
        )
    return ((phases - low) / (high - low)).astype(np.float32)


def prepare_study(
    phases: np.ndarray | Sequence[np.ndarray],
    times: Sequence[float] | None,
    spacing: Sequence[float],
    n4: bool = False,
    target_spacing: Sequence[float] = TARGET_SPACING_MM,
) -> PreparedStudy:
    """Validate, optionally bias-correct, resample to the target spacing and normalise a study.

    Parameters
    ----------
    phases : numpy.ndarray or sequence of numpy.ndarray
        ``(P, k, j, i)`` intensities.
    times : sequence of float
        Acquisition times, s after injection.
    spacing : sequence of float
        ``(sk, sj, si)`` in mm.
    n4 : bool
        Apply N4 bias-field correction first.
    target_spacing : sequence of float
        Output spacing ``(sk, sj, si)`` in mm (default 1 mm isotropic).

    Returns
    -------
    PreparedStudy
        Normalised phases on the target grid with the times and both geometries.
    """
    stacked, time_values = validate_study(phases, times)
    original_spacing = validate_spacing(spacing)
    original_shape = (int(stacked.shape[1]), int(stacked.shape[2]), int(stacked.shape[3]))
    target = validate_spacing(target_spacing)
    if n4:
        stacked = n4_bias_correct(stacked, original_spacing)
    if not _same_spacing(original_spacing, target):
        stacked = np.stack([resample_volume(volume, original_spacing, target) for volume in stacked])
    return PreparedStudy(
        phases=normalise_intensity(stacked),
        times=time_values,
        spacing=target,
        original_shape=original_shape,
        original_spacing=original_spacing,
    )


def _same_spacing(first: Sequence[float], second: Sequence[float]) -> bool:
    """True when two spacings agree to 1e-6 mm."""
    return bool(np.allclose(first, second, rtol=0.0, atol=1e-6))


def to_original_grid(volume: np.ndarray, study: PreparedStudy, interpolation: str = "linear") -> np.ndarray:
    """Resample a volume on the prepared grid back onto the study's input grid.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(k, j, i)`` values on the prepared (target) grid.
    study : PreparedStudy
        The study it was computed from.
    interpolation : {"linear", "nearest"}
        Interpolator.

    Returns
    -------
    numpy.ndarray
        float32 ``study.original_shape`` volume.
    """
    if volume.shape == study.original_shape and _same_spacing(study.spacing, study.original_spacing):
        return volume.astype(np.float32, copy=False)
    return resample_volume(volume, study.spacing, study.original_spacing, study.original_shape, interpolation)


def phase_triplets(n_phases: int, selection: Sequence[int] | None = None) -> list[tuple[int, int, int]]:
    """(pre-contrast, first post-contrast, later post-contrast) phase indices to feed the network.

    Parameters
    ----------
    n_phases : int
        Number of phases in the study.
    selection : sequence of int, optional
        ``(pre, first, later, [later, ...])`` 0-based indices in increasing order. Default
        ``(0, 1, 2, ..., n_phases - 1)``: every phase after the first post-contrast one is a later phase.

    Returns
    -------
    list of tuple of int
        One ``(pre, first, later)`` triplet per later phase.
    """
    indices = list(range(n_phases)) if selection is None else [int(i) for i in selection]
    if len(indices) < MIN_PHASES:
        raise InputError(
            f"phase selection {indices} is too short: give pre-contrast, first post-contrast and at "
            "least one later phase index, e.g. 0,1,5"
        )
    if min(indices) < 0 or max(indices) >= n_phases:
        raise InputError(
            f"phase selection {indices} is outside 0..{n_phases - 1} for a study of {n_phases} phases: "
            "use 0-based phase indices"
        )
    if any(b <= a for a, b in itertools.pairwise(indices)):
        raise InputError(
            f"phase selection {indices} must increase strictly: pre-contrast first, then first "
            "post-contrast, then later phases"
        )
    return [(indices[0], indices[1], later) for later in indices[2:]]


def channel_phases(triplet: tuple[int, int, int], in_channels: int) -> tuple[int, ...]:
    """Phases a network with ``in_channels`` inputs reads from a triplet.

    Three channels read the whole triplet; one channel reads the first post-contrast phase only
    (the single-phase model).
    """
    if in_channels == 3:
        return tuple(triplet)
    if in_channels == 1:
        return (triplet[1],)
    raise InputError(
        f"networks with {in_channels} input channels are not supported: use 3 (pre, first post, "
        "later post) or 1 (first post-contrast)"
    )


def input_samples(
    n_phases: int, in_channels: int, selection: Sequence[int] | None = None
) -> list[tuple[int, ...]]:
    """Distinct phase-index tuples a study gives a network with ``in_channels`` inputs.

    Parameters
    ----------
    n_phases : int
        Number of phases in the study.
    in_channels : int
        Network input channels (3 or 1).
    selection : sequence of int, optional
        As in :func:`phase_triplets`.

    Returns
    -------
    list of tuple of int
        Phase indices of each sample, in order of the later phase.
    """
    samples = [channel_phases(triplet, in_channels) for triplet in phase_triplets(n_phases, selection)]
    return list(dict.fromkeys(samples))
