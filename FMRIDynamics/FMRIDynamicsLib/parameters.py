"""Every user-facing parameter of fMRI Dynamics, defined once (CLI options, logic, Slicer panel).

Pairs given together on the command line (``--band LOW HIGH``, ``--alff-band LOW HIGH``) are two
fields each here; :func:`check_parameters` adds the checks that involve several fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.frame_times import MAX_PLAUSIBLE_TR_S
from SpatioTemporalCommonLib.parameters import parameter, validate_parameters

from .latency import TAPERS, WEIGHTINGS

FEATURES = ("glm", "lag", "mi", "int", "alff", "reho", "entropy", "fc", "dfc", "ica", "qc")
"""Feature names of ``--features``, in the order they are computed."""

HRF_MODELS = (
    "spm",
    "spm+derivative",
    "spm+derivative+dispersion",
    "glover",
    "glover+derivative",
    "glover+derivative+dispersion",
)
HRF_SHAPE_MODELS = (
    "spm+derivative+dispersion",
    "glover+derivative+dispersion",
    "spm+derivative",
    "glover+derivative",
    "fir",
)
"""Models of the response-shape maps: canonical + derivatives (robust for blocks; latencies within about
+-2 s of the canonical peak) or FIR (model-free; for event-related designs: blocks of one common
duration make it unidentifiable at the zeros of the boxcar's spectrum)."""
MIN_TR_S = 0.05
"""Shortest repetition time accepted, in s (shorter values are almost certainly not seconds)."""


def science_hrf_model(name: str) -> str:
    """The HRF model name of :mod:`FMRIDynamicsLib.hrf` for a command-line choice (``spm+derivative``)."""
    return name.replace("+", " + ")


@dataclass
class FMRIParameters:
    """Parameters of an fMRI analysis (units in the ``unit`` metadata)."""

    tr_s: float | None = parameter(
        None,
        unit="s",
        minimum=MIN_TR_S,
        maximum=MAX_PLAUSIBLE_TR_S,
        option="--tr",
        metavar="S",
        help="The repetition time in seconds (default: from the input's frame times)",
    )
    features: str = parameter(
        "",
        metavar="LIST",
        help=f"Comma-separated features among {','.join(FEATURES)} (default: all that the inputs allow)",
    )
    reference: str = parameter(
        "global",
        metavar="global|FILE",
        help="Lag reference: the global mean signal, or a text file with one value per frame",
    )
    band_low_hz: float = parameter(
        0.01,
        unit="Hz",
        minimum=0,
        minimum_inclusive=False,
        help="Low edge of the band-pass of the cleaned data (connectivity, lag, ReHo)",
    )
    band_high_hz: float = parameter(
        0.1,
        unit="Hz",
        minimum=0,
        minimum_inclusive=False,
        help="High edge of the band-pass of the cleaned data",
    )
    smooth_fwhm_mm: float = parameter(
        0.0,
        unit="mm",
        minimum=0,
        option="--smooth",
        metavar="FWHM_MM",
        help="Full width at half maximum of the spatial Gaussian smoothing (0: none)",
    )
    motion_correction: bool = parameter(True, help="Rigidly register every frame to the mean volume")
    censor_fd_mm: float | None = parameter(
        None,
        unit="mm",
        minimum=0,
        minimum_inclusive=False,
        option="--censor-fd",
        metavar="MM",
        help="Censor frames whose framewise displacement exceeds this",
    )
    censor_dvars: float | None = parameter(
        None,
        minimum=0,
        minimum_inclusive=False,
        metavar="DVARS",
        help="Censor frames whose standardised DVARS exceeds this (e.g. 1.5)",
    )
    output_format: str = parameter(
        "nrrd", choices=("nrrd", "nifti"), option="--format", help="File format of the output maps"
    )
    filter_order: int = parameter(
        5, minimum=1, maximum=8, help="Order of the zero-phase Butterworth filters per band edge"
    )
    detrend_order: int = parameter(
        1, minimum=0, maximum=5, help="Degree of the polynomial trend removed before filtering"
    )
    motion_terms: int = parameter(
        24,
        choices=(0, 6, 12, 24),
        help="Motion regressors: the 6 parameters, + derivatives (12), + squares (24), or 0",
    )
    global_signal: bool = parameter(
        False, help="Regress the global mean signal out with the other nuisance signals"
    )
    head_radius_mm: float = parameter(
        50.0,
        unit="mm",
        minimum=0,
        minimum_inclusive=False,
        help="Head radius that turns rotations into displacements (framewise displacement)",
    )
    high_pass_cutoff_s: float = parameter(
        128.0,
        unit="s",
        minimum=0,
        minimum_inclusive=False,
        help="High-pass cutoff period of the GLM drift model and of the unfiltered data",
    )
    hrf_model: str = parameter("spm", choices=HRF_MODELS, help="Haemodynamic response model of the GLM")
    noise_model: str = parameter("ar1", choices=("ar1", "ols"), help="Temporal noise model of the GLM")
    contrasts: str = parameter(
        "",
        metavar="EXPR;EXPR",
        help="Extra GLM contrasts separated by ';', each a signed sum of trial types "
        "such as 'motor-visual' or '2*motor-visual-rest'",
    )
    hrf_shape_model: str = parameter(
        "spm+derivative+dispersion",
        choices=HRF_SHAPE_MODELS,
        help="Model of the voxel-wise response shape (peak latency and width maps)",
    )
    hrf_window_s: float = parameter(
        20.0,
        unit="s",
        minimum=0,
        minimum_inclusive=False,
        help="Length of the FIR response window of the shape maps",
    )
    hrf_trial_type: str = parameter(
        "", metavar="TYPE", help="Trial type whose response shape is mapped (default: all events together)"
    )
    mi_max_delay_s: float = parameter(
        16.0, unit="s", minimum=0, help="Largest delay after onset of the mutual-information time maps"
    )
    mi_bins: int = parameter(4, minimum=2, help="Equally populated response bins of the mutual information")
    mi_shuffles: int = parameter(
        100, minimum=1, help="Label permutations for bias correction and significance"
    )
    max_lag_s: float = parameter(
        5.0,
        unit="s",
        minimum=0,
        minimum_inclusive=False,
        help="Largest lag searched by the lag map and the region delay matrix",
    )
    lag_taper: str = parameter(
        "none", choices=TAPERS, help="Taper of both series before the lag cross-correlation (rapidtide: hamming)"
    )
    lag_weighting: str = parameter(
        "none",
        choices=WEIGHTINGS,
        help="Cross-spectrum weighting of the lag estimate: none, or phat (phase transform, as rapidtide)",
    )
    alff_low_hz: float = parameter(0.01, unit="Hz", minimum=0, help="Low edge of the ALFF band")
    alff_high_hz: float = parameter(
        0.08, unit="Hz", minimum=0, minimum_inclusive=False, help="High edge of the ALFF band"
    )
    reho_neighbourhood: int = parameter(27, choices=(7, 19, 27), help="ReHo neighbourhood size in voxels")
    entropy_m: int = parameter(2, minimum=1, maximum=10, help="Template length m of the sample entropy")
    entropy_r: float = parameter(
        0.2,
        minimum=0,
        maximum=2,
        minimum_inclusive=False,
        help="Tolerance r of the sample entropy as a fraction of each series' SD",
    )
    seed_radius_mm: float = parameter(
        6.0, unit="mm", minimum=0, help="Radius of the sphere averaged around each seed point (0: one voxel)"
    )
    dfc_window_s: float = parameter(
        60.0, unit="s", minimum=0, minimum_inclusive=False, help="Length of the dynamic-connectivity windows"
    )
    dfc_step_s: float = parameter(
        2.0, unit="s", minimum=0, minimum_inclusive=False, help="Step between dynamic-connectivity windows"
    )
    ica_components: int = parameter(10, minimum=2, help="Number of spatial ICA components")
    ica_cleanup: bool = parameter(
        False,
        help="Selective temporal-ICA clean-up: instead of regressing the nuisance signals (motion terms, "
        "confounds, white-matter, CSF and global means) out, subtract only the temporal ICA components "
        "of the cleaned data whose time course correlates with one of them",
    )
    ica_cleanup_components: int = parameter(
        10,
        minimum=2,
        help="Temporal ICA components of the clean-up, well below the number of frames (too many split "
        "a nuisance component into parts that each correlate less)",
    )
    ica_cleanup_threshold: float = parameter(
        0.5,
        minimum=0,
        maximum=1,
        minimum_inclusive=False,
        metavar="R",
        help="Absolute correlation |r| with a nuisance signal from which a clean-up component is removed",
    )
    slice_time_reference: float = parameter(
        0.5,
        minimum=0,
        maximum=1,
        help="Time the slice-timing correction aligns to, as a fraction of the "
        "slice acquisition span (0: first slice, 0.5: middle)",
    )
    random_seed: int = parameter(0, minimum=0, help="Seed of the ICA start and the MI permutations")

    def feature_list(self) -> tuple[str, ...]:
        """The features named in ``features`` (empty: none named), refusing unknown names."""
        names = tuple(name.strip().lower() for name in self.features.split(",") if name.strip())
        unknown = [name for name in names if name not in FEATURES]
        if unknown:
            raise InputError(
                f"--features {self.features!r} names unknown feature(s) {', '.join(unknown)}: "
                f"choose among {','.join(FEATURES)}"
            )
        return tuple(name for name in FEATURES if name in names)

    def contrast_list(self) -> tuple[str, ...]:
        """The extra GLM contrast expressions, in order."""
        return tuple(text.strip() for text in self.contrasts.split(";") if text.strip())


def check_parameters(parameters: FMRIParameters) -> None:
    """Validate every field (ranges and choices) and the relations between fields."""
    validate_parameters(parameters)
    parameters.feature_list()
    for name, low, high in (
        ("--band", parameters.band_low_hz, parameters.band_high_hz),
        ("--alff-band", parameters.alff_low_hz, parameters.alff_high_hz),
    ):
        if low >= high:
            raise InputError(
                f"{name} {low:g} {high:g} Hz is empty: give the low edge first, below the high edge"
            )
    if parameters.dfc_step_s > parameters.dfc_window_s:
        raise InputError(
            f"--dfc-step-s {parameters.dfc_step_s:g} s is longer than the window "
            f"({parameters.dfc_window_s:g} s): give a step at most as long as the window"
        )
