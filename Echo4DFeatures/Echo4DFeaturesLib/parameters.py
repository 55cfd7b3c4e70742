"""Every user-facing parameter of Echo 4D Features, defined once (CLI options, logic, Slicer panel).

The filter-bank fields follow Kovesi's phase-congruency parameters (number of scales, smallest
wavelength, scale factor ``mult``, bandwidth ``sigmaOnf``, noise factor ``k``); the space-time
constant is that of Mulet-Parada & Noble (2000, Med. Image Anal. 4:21-30). :func:`check_parameters`
adds the checks that involve several fields; the checks against the image grid (wavelengths between 2
voxels and the field of view) are made when the grid is known (:func:`filter_bank`).
"""

from __future__ import annotations

from dataclasses import dataclass

from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.parameters import parameter, validate_parameters

from .feature_asymmetry import DEFAULT_SPACE_TIME_MM_PER_FRAME, MODES
from .monogenic import LogGaborBank


@dataclass
class EchoParameters:
    """Parameters of an echo feature-asymmetry and left-ventricle analysis (units in ``unit`` metadata)."""

    mode: str = parameter(
        "4d", choices=MODES, help="Feature asymmetry in space-time (4d) or frame by frame (3d)"
    )
    scales: int = parameter(
        3, minimum=1, maximum=8, metavar="N", help="The number of log-Gabor filter scales"
    )
    min_wavelength_mm: float = parameter(
        4.0,
        unit="mm",
        minimum=0,
        minimum_inclusive=False,
        option="--min-wavelength",
        help="The wavelength of the finest scale, at least 2 voxels",
    )
    mult: float = parameter(
        2.0,
        minimum=1,
        minimum_inclusive=False,
        metavar="F",
        help="The wavelength ratio between successive scales",
    )
    sigma_onf: float = parameter(
        0.55,
        minimum=0,
        maximum=1,
        minimum_inclusive=False,
        maximum_inclusive=False,
        metavar="F",
        help="The log-Gabor bandwidth as sigma over centre frequency (0.55: about two octaves)",
    )
    space_time_mm_per_frame: float = parameter(
        DEFAULT_SPACE_TIME_MM_PER_FRAME,
        unit="mm/frame",
        minimum=0,
        minimum_inclusive=False,
        option="--space-time",
        help="The space-time constant of the 4D filters, the mm one frame "
        "counts for (a few times the largest wall motion per frame)",
    )
    k: float = parameter(
        2.0,
        minimum=0,
        metavar="K",
        help="The noise threshold in noise standard deviations above the noise mean (Kovesi's k)",
    )
    fa_threshold: float = parameter(
        0.2,
        minimum=0,
        maximum=1,
        minimum_inclusive=False,
        maximum_inclusive=False,
        metavar="F",
        help="The smallest feature asymmetry of an endocardial boundary point",
    )
    max_displacement_mm: float = parameter(
        3.0,
        unit="mm",
        minimum=0,
        minimum_inclusive=False,
        option="--max-displacement",
        help="The largest wall motion between consecutive frames",
    )
    directions: int = parameter(
        1024,
        minimum=48,
        maximum=20000,
        metavar="N",
        help="The number of rays from the cavity centre that sample the boundary",
    )
    phase_scale: int | None = parameter(
        None,
        minimum=0,
        metavar="N",
        help="The scale of the local-phase output, 0 = finest (default: the middle scale)",
    )


def phase_scale_index(parameters: EchoParameters) -> int:
    """Scale index (0 = finest) of the local-phase output: the given one, else the middle scale."""
    return parameters.scales // 2 if parameters.phase_scale is None else int(parameters.phase_scale)


def check_parameters(parameters: EchoParameters) -> None:
    """Validate every field (:func:`validate_parameters`) and the checks that involve several fields."""
    validate_parameters(parameters)
    if phase_scale_index(parameters) >= parameters.scales:
        raise InputError(
            f"--phase-scale {parameters.phase_scale} does not exist with --scales {parameters.scales}: "
            f"give 0..{parameters.scales - 1} (0 = finest)"
        )


def filter_bank(
    parameters: EchoParameters, spatial_shape: tuple[int, int, int], spacing_kji: tuple[float, float, float]
) -> LogGaborBank:
    """The log-Gabor bank of the parameters, checked against the image grid.

    Parameters
    ----------
    parameters : EchoParameters
        Analysis parameters.
    spatial_shape : tuple of int
        Image shape ``(k, j, i)`` in voxels.
    spacing_kji : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.

    Raises
    ------
    InputError
        When the finest wavelength is under 2 voxels or the coarsest exceeds the field of view.
    """
    bank = LogGaborBank(
        parameters.scales, parameters.min_wavelength_mm, parameters.mult, parameters.sigma_onf
    )
    bank.check_grid(spatial_shape, spacing_kji)
    return bank
