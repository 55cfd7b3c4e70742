"""Every user-facing parameter of DCE Kinetics, defined once (CLI options, logic, Slicer panel)."""

from __future__ import annotations

from dataclasses import dataclass

from SpatioTemporalCommonLib.parameters import parameter

from .models import MODELS

POPULATION_AIF_NAMES = ("parker", "georgiou", "weinmann")
AIF_CHOICES_TEXT = "parker, georgiou, weinmann, auto (image-derived from the AIF mask) or a CSV file"


@dataclass
class DCEParameters:
    """Parameters of a DCE-MRI analysis (units in the field names or the ``unit`` metadata)."""

    input_kind: str = parameter("signal", choices=("signal", "concentration"),
                                help="Whether the series holds MR signal or contrast-agent concentration (mM)")
    model: str = parameter("extended-tofts", choices=tuple(MODELS), help="Tracer-kinetic model to fit")
    aif: str = parameter("parker", metavar="NAME|FILE.csv",
                         help=f"Arterial input function: {AIF_CHOICES_TEXT} with columns time_s,concentration_mM (plasma)")
    t1_ms: float | None = parameter(None, unit="ms", minimum=0, minimum_inclusive=False, option="--t1",
                                    help="Pre-contrast T1 of tissue (one value; a T1 map is given as a volume)")
    flip_angle_deg: float | None = parameter(None, unit="deg", minimum=0, maximum=90, minimum_inclusive=False,
                                             option="--flip-angle", help="Excitation flip angle of the dynamic series")
    tr_ms: float | None = parameter(None, unit="ms", minimum=0, minimum_inclusive=False, option="--tr",
                                    help="Repetition time of the dynamic series")
    r1_per_mM_per_s: float = parameter(4.5, unit="/mM/s", minimum=0, minimum_inclusive=False, option="--r1",
                                       help="Longitudinal relaxivity of the contrast agent")
    hematocrit: float = parameter(0.42, minimum=0, maximum=1, maximum_inclusive=False,
                                  help="Large-vessel haematocrit (blood to plasma conversion of the AIF)")
    baseline_frames: int | None = parameter(None, minimum=1,
                                            help="Number of pre-contrast frames (default: from the bolus arrival)")
    fit_delay: bool = parameter(False, help="Fit the arrival delay of each voxel after the AIF")
    max_delay_s: float = parameter(10.0, unit="s", minimum=0, minimum_inclusive=False,
                                   help="Largest arrival delay considered by --fit-delay")
    early_phase_s: float = parameter(90.0, unit="s", minimum=0, minimum_inclusive=False,
                                     help="Length of the early phase after arrival used by the curve-type rule")
    iauc_windows_s: tuple[float, ...] = parameter(default_factory=lambda: (60.0, 90.0), unit="s", minimum=0,
                                                  minimum_inclusive=False, option="--iauc-windows",
                                                  metavar="S,S",
                                                  help="Windows after arrival of the initial areas under the curve")
    vfa_flip_angles_deg: tuple[float, ...] | None = parameter(
        None, unit="deg", minimum=0, maximum=90, minimum_inclusive=False, option="--vfa-flip-angles",
        metavar="DEG,DEG,...", help="Flip angles of the variable-flip-angle images, one per frame of --vfa")
    vfa_tr_ms: float | None = parameter(None, unit="ms", minimum=0, minimum_inclusive=False, option="--vfa-tr",
                                        help="Repetition time of the variable-flip-angle images (default: --tr)")
    t1_method: str = parameter("nonlinear", choices=("linear", "nonlinear"),
                               help="Fit of the variable-flip-angle T1 map: linear (DESPOT1) or nonlinear")
