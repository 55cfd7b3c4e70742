"""Arterial input functions (AIFs) for DCE-MRI: population curves, AIF files and image-derived AIFs.

All functions take times in seconds and return concentrations in mM. Pharmacokinetic models need the
*plasma* concentration; blood and plasma differ by the haematocrit, ``Cp = Cb / (1 - Hct)``.

Population AIFs
    * Parker et al. 2006, Eq. 1 with the Table 1 parameters (time in minutes)::

          Cb(t) = sum_n A_n / (s_n sqrt(2 pi)) exp(-(t - T_n)^2 / (2 s_n^2))
                  + alpha exp(-beta t) / (1 + exp(-s (t - tau)))

      This is a whole-blood curve: :func:`parker_blood_aif` returns it as published (the OSIPI
      reference values ``ParkerAIF_ref*.csv`` are exactly this curve, time in minutes, zero before
      the delay), :func:`parker_aif` the plasma curve ``Cb / (1 - Hct)``.
    * Georgiou et al. 2018, Eq. 1 (the recirculation model of Horsfield et al. 2009)::

          Cb(t) = sum_i A_i exp(-m_i t) * sum_{j >= 0, t > j tau} g(t - j tau; (j+1) alpha + j, beta)

      with ``g(x; a, b) = x^a exp(-x / b) / (b^(a+1) Gamma(a+1))`` (time in minutes), again a blood
      curve (:func:`georgiou_blood_aif`; plasma: :func:`georgiou_aif`). Table 3 of the paper prints
      the parameters to 2-4 significant digits; evaluated with those rounded values the curve
      departs from the authors' own supplementary curve (file mrm27524-sup-0002-figs2.xlsx, 0.1 s
      sampling, also the OSIPI reference ``GeorgiouAIF_ref.csv``) by up to 0.08 mM (1 % at the peak).
      The default parameters here are a least-squares fit of Eq. 1 to that supplementary curve
      (maximum deviation 3e-5 mM); they agree with Table 3 to its printed precision except
      alpha (5.267 against 5.26), which trades off against beta. ``GEORGIOU_TABLE3_PARAMETERS``
      holds the printed values.
    * Weinmann et al. 1984 as parameterised by Tofts and Kermode 1991 (time in minutes)::

          Cp(t) = D (a1 exp(-m1 t) + a2 exp(-m2 t)),
          a1 = 3.99 kg/l, a2 = 4.78 kg/l, m1 = 0.144 /min, m2 = 0.0111 /min,

      already a plasma curve, for a bolus of ``D`` mmol/kg arriving at ``t = 0``.

All population curves are zero before their arrival time ``delay_s``.

Image-derived AIF
    :func:`select_arterial_voxels` ranks candidate curves (for example the voxels of a mask drawn
    over an artery) by three properties of arterial blood: early bolus arrival (Cheong et al. 2003
    fit, :mod:`DCEKineticsLib.bolus_arrival`), high peak concentration and a narrow first pass (full
    width at half maximum). Each property is converted to a percentile rank among the candidates and
    the score is the mean of the three ranks, so the score needs no units or thresholds. The
    :func:`image_derived_aif` is the mean blood curve of the best-scoring voxels divided by
    ``1 - Hct``.

References: Parker GJM et al. Experimentally-derived functional form for a population-averaged
high-temporal-resolution arterial input function for dynamic contrast-enhanced MRI. Magn Reson Med
2006;56:993-1000. Georgiou L et al. A functional form for a representative individual arterial input
function measured from a population using high temporal resolution DCE MRI. Magn Reson Med
2019;81:1955-1963 (published online 2018). Horsfield MA et al. Regional differences in
blood-brain barrier permeability changes in relapsing-remitting multiple sclerosis. Phys Med Biol
2009;54:2915-2930. Weinmann HJ, Laniado M, Mutzel W. Pharmacokinetics of GdDTPA/dimeglumine after
intravenous injection into healthy volunteers. Physiol Chem Phys Med NMR 1984;16:167-172. Tofts PS,
Kermode AG. Measurement of the blood-brain barrier permeability and leakage space using dynamic MR
imaging. 1. Fundamental concepts. Magn Reson Med 1991;17:357-367.
"""

from __future__ import annotations

import csv
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.series import validate_frame_times

from .bolus_arrival import bolus_arrival_time

DEFAULT_HEMATOCRIT = 0.42
"""Large-vessel haematocrit used to convert blood to plasma concentration when none is given."""

AIF_CSV_HEADER = ("time_s", "concentration_mM")
"""Required header of an AIF file read by :func:`read_aif_csv` (plasma concentration)."""


@dataclass(frozen=True)
class ParkerParameters:
    """Parameters of the Parker et al. 2006 blood AIF (Table 1); times in minutes, A in mM min."""

    a1: float = 0.809
    sigma1: float = 0.0563
    t1: float = 0.17046
    a2: float = 0.330
    sigma2: float = 0.132
    t2: float = 0.365
    alpha: float = 1.050
    beta: float = 0.1685
    s: float = 38.078
    tau: float = 0.483


@dataclass(frozen=True)
class GeorgiouParameters:
    """Parameters of the Georgiou et al. 2018 blood AIF; amplitudes in mM, rates in /min, times in min."""

    amplitudes: tuple[float, float, float] = (0.374322, 0.331184, 10.0612)
    rates: tuple[float, float, float] = (0.112701, 1.17465, 16.0200)
    alpha: float = 5.26699
    beta: float = 0.0320788
    tau: float = 0.128556


GEORGIOU_TABLE3_PARAMETERS = GeorgiouParameters(
    amplitudes=(0.37, 0.33, 10.06), rates=(0.11, 1.17, 16.02), alpha=5.26, beta=0.032, tau=0.129
)
"""The Georgiou et al. parameters as printed in Table 3 of the paper (see the module notes)."""


@dataclass(frozen=True)
class WeinmannParameters:
    """Weinmann / Tofts-Kermode plasma AIF constants: a in kg/l, m in /min."""

    a1: float = 3.99
    m1: float = 0.144
    a2: float = 4.78
    m2: float = 0.0111


class ImageDerivedAIF(NamedTuple):
    """An AIF measured in the images."""

    plasma_mM: np.ndarray
    """Plasma concentration in mM at the acquisition times, shape (T,)."""
    voxel_indices: np.ndarray
    """Rows of the candidate array whose mean gives the AIF, best score first."""


def parker_blood_aif(
    times_s: np.ndarray, delay_s: float = 0.0, parameters: ParkerParameters = ParkerParameters()
) -> np.ndarray:
    """Parker et al. 2006 population AIF as whole-blood concentration.

    Parameters
    ----------
    times_s : array_like
        Times in seconds.
    delay_s : float, optional
        Arrival time of the curve in seconds; the concentration is zero before it.
    parameters : ParkerParameters, optional
        Functional-form parameters; the published Table 1 values by default.

    Returns
    -------
    numpy.ndarray
        Blood concentration in mM, same shape as ``times_s``.
    """
    minutes = _minutes_after_delay(times_s, delay_s)
    p = parameters
    first_pass = _gaussian(minutes, p.a1, p.sigma1, p.t1) + _gaussian(minutes, p.a2, p.sigma2, p.t2)
    with np.errstate(over="ignore"):
        washout = p.alpha * np.exp(-p.beta * minutes) / (1.0 + np.exp(-p.s * (minutes - p.tau)))
    return np.where(minutes >= 0, first_pass + washout, 0.0)


def parker_aif(
    times_s: np.ndarray, hematocrit: float = DEFAULT_HEMATOCRIT, delay_s: float = 0.0
) -> np.ndarray:
    """Parker et al. 2006 population AIF as plasma concentration, ``Cb / (1 - Hct)``.

    Parameters
    ----------
    times_s : array_like
        Times in seconds.
    hematocrit : float, optional
        Large-vessel haematocrit, in [0, 1).
    delay_s : float, optional
        Arrival time of the curve in seconds; the concentration is zero before it.

    Returns
    -------
    numpy.ndarray
        Plasma concentration in mM, same shape as ``times_s``.
    """
    return parker_blood_aif(times_s, delay_s) / (1.0 - _check_hematocrit(hematocrit))


def georgiou_blood_aif(
    times_s: np.ndarray, delay_s: float = 0.0, parameters: GeorgiouParameters = GeorgiouParameters()
) -> np.ndarray:
    """Georgiou et al. 2018 population AIF as whole-blood concentration.

    Parameters
    ----------
    times_s : array_like
        Times in seconds.
    delay_s : float, optional
        Arrival time of the curve in seconds; the concentration is zero before it.
    parameters : GeorgiouParameters, optional
        Functional-form parameters; by default those fitted to the authors' supplementary curve
        (module notes), or ``GEORGIOU_TABLE3_PARAMETERS`` for the printed values.

    Returns
    -------
    numpy.ndarray
        Blood concentration in mM, same shape as ``times_s``.
    """
    minutes = _minutes_after_delay(times_s, delay_s)
    p = parameters
    elapsed = np.clip(minutes, 0.0, None)
    circulations = np.zeros_like(elapsed)
    for passage in range(int(np.max(elapsed, initial=0.0) // p.tau) + 1):
        since_passage = elapsed - passage * p.tau
        shape = (passage + 1) * p.alpha + passage
        reached = since_passage > 0
        log_density = (
            shape * np.log(np.where(reached, since_passage, 1.0))
            - since_passage / p.beta
            - (shape + 1) * np.log(p.beta)
            - gammaln(shape + 1)
        )
        circulations += np.where(reached, np.exp(np.where(reached, log_density, 0.0)), 0.0)
    decay = sum(a * np.exp(-m * elapsed) for a, m in zip(p.amplitudes, p.rates, strict=True))
    return np.where(minutes >= 0, decay * circulations, 0.0)


def georgiou_aif(
    times_s: np.ndarray, hematocrit: float = DEFAULT_HEMATOCRIT, delay_s: float = 0.0
) -> np.ndarray:
    """Georgiou et al. 2018 population AIF as plasma concentration, ``Cb / (1 - Hct)``.

    Parameters
    ----------
    times_s : array_like
        Times in seconds.
    hematocrit : float, optional
        Large-vessel haematocrit, in [0, 1).
    delay_s : float, optional
        Arrival time of the curve in seconds; the concentration is zero before it.

    Returns
    -------
    numpy.ndarray
        Plasma concentration in mM, same shape as ``times_s``.
    """
    return georgiou_blood_aif(times_s, delay_s) / (1.0 - _check_hematocrit(hematocrit))


def weinmann_aif(
    times_s: np.ndarray,
    dose_mmol_per_kg: float = 0.1,
    delay_s: float = 0.0,
    parameters: WeinmannParameters = WeinmannParameters(),
) -> np.ndarray:
    """Weinmann biexponential population AIF (Tofts and Kermode 1991) as plasma concentration.

    Parameters
    ----------
    times_s : array_like
        Times in seconds.
    dose_mmol_per_kg : float, optional
        Injected dose in mmol per kg body weight.
    delay_s : float, optional
        Injection (arrival) time in seconds; the concentration is zero before it.
    parameters : WeinmannParameters, optional
        Biexponential constants; the published values by default.

    Returns
    -------
    numpy.ndarray
        Plasma concentration in mM, same shape as ``times_s``.

    Raises
    ------
    InputError
        If the dose is not positive.
    """
    dose = float(dose_mmol_per_kg)
    if not (np.isfinite(dose) and dose > 0):
        raise InputError(
            f"dose {dose_mmol_per_kg} mmol/kg is not positive: give the injected dose in mmol per kg, e.g. 0.1"
        )
    minutes = _minutes_after_delay(times_s, delay_s)
    p = parameters
    elapsed = np.clip(minutes, 0.0, None)
    plasma = dose * (p.a1 * np.exp(-p.m1 * elapsed) + p.a2 * np.exp(-p.m2 * elapsed))
    return np.where(minutes >= 0, plasma, 0.0)


POPULATION_AIFS = {"parker": parker_aif, "georgiou": georgiou_aif, "weinmann": weinmann_aif}
"""Plasma population AIFs by name, as accepted by :func:`population_aif`."""


def population_aif(name: str, times_s: np.ndarray, **kwargs: float) -> np.ndarray:
    """Plasma concentration of a named population AIF.

    Parameters
    ----------
    name : {"parker", "georgiou", "weinmann"}
        Which population AIF (case-insensitive).
    times_s : array_like
        Times in seconds.
    **kwargs
        Options of the chosen function: ``hematocrit`` and ``delay_s`` for Parker and Georgiou,
        ``dose_mmol_per_kg`` and ``delay_s`` for Weinmann.

    Returns
    -------
    numpy.ndarray
        Plasma concentration in mM, same shape as ``times_s``.

    Raises
    ------
    InputError
        If the name or an option is not known.
    """
    function = POPULATION_AIFS.get(str(name).lower())
    if function is None:
        raise InputError(f"population AIF {name!r} is not known: choose one of {', '.join(POPULATION_AIFS)}")
    accepted = [option for option in inspect.signature(function).parameters if option != "times_s"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise InputError(
            f"option(s) {', '.join(unknown)} do not apply to the {name} AIF: use {', '.join(accepted)}"
        )
    return function(times_s, **kwargs)


def read_aif_csv(path: str | Path, acquisition_times_s: np.ndarray) -> np.ndarray:
    """Read a plasma AIF from a CSV file and interpolate it onto the acquisition times.

    The file has the header ``time_s,concentration_mM`` and one row per sample: time in seconds
    (strictly increasing) and plasma concentration in mM. Values are interpolated linearly.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file.
    acquisition_times_s : array_like, shape (T,)
        Frame times of the DCE series in seconds; they must lie within the file's time range.

    Returns
    -------
    numpy.ndarray, shape (T,)
        Plasma concentration in mM at the acquisition times.

    Raises
    ------
    InputError
        If the file is missing or unreadable, the header or a row is malformed, a value is not a
        finite number, the times are unsorted or repeated, or the file does not cover the acquisition.
    """
    acquisition = np.asarray(acquisition_times_s, dtype=float)
    acquisition = validate_frame_times(acquisition, acquisition.size)
    times, concentration = _read_aif_table(Path(path))
    tolerance = 1e-6 * max(1.0, float(np.max(np.abs(times))))
    if acquisition[0] < times[0] - tolerance or acquisition[-1] > times[-1] + tolerance:
        raise InputError(
            f"the AIF in {path} covers {times[0]:g}-{times[-1]:g} s but the acquisition runs from "
            f"{acquisition[0]:g} to {acquisition[-1]:g} s: give AIF samples over the whole acquisition "
            "on the same clock as the frame times"
        )
    return np.interp(acquisition, times, concentration)


def score_arterial_curves(concentration: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Score how arterial each candidate curve looks (higher is more arterial).

    The score is the mean of the percentile ranks, among the usable candidates, of the peak
    concentration (higher is better), the bolus arrival time (earlier is better) and the first-pass
    full width at half maximum (narrower is better). A curve is unusable, and scores NaN, when it has
    a non-finite sample, a peak <= 0 or no detectable bolus arrival.

    Parameters
    ----------
    concentration : array_like, shape (N, T)
        Blood concentration curves (mM) of the candidate voxels.
    times_s : array_like, shape (T,)
        Frame times in seconds.

    Returns
    -------
    numpy.ndarray, shape (N,)
        Score in (0, 1]; NaN for unusable curves.
    """
    curves = _check_candidates(concentration)
    times = validate_frame_times(times_s, curves.shape[1])
    finite = np.all(np.isfinite(curves), axis=1)
    curves = np.where(finite[:, np.newaxis], curves, 0.0)
    peak = np.max(curves, axis=1)
    arrival = bolus_arrival_time(curves, times)
    usable = finite & (peak > 0) & np.isfinite(arrival)
    score = np.full(curves.shape[0], np.nan)
    if np.any(usable):
        width = _first_pass_width(curves[usable], times)
        ranks = [rankdata(peak[usable]), rankdata(-arrival[usable]), rankdata(-width)]
        score[usable] = np.mean(ranks, axis=0) / np.count_nonzero(usable)
    return score


def select_arterial_voxels(concentration: np.ndarray, times_s: np.ndarray, n_voxels: int = 10) -> np.ndarray:
    """Indices of the candidate curves that look most arterial.

    Parameters
    ----------
    concentration : array_like, shape (N, T)
        Blood concentration curves (mM) of the candidate voxels, e.g. the voxels of an AIF mask.
    times_s : array_like, shape (T,)
        Frame times in seconds.
    n_voxels : int, optional
        How many curves to select; fewer are returned when fewer are usable.

    Returns
    -------
    numpy.ndarray of int
        Row indices into ``concentration``, best score first (see :func:`score_arterial_curves`).

    Raises
    ------
    InputError
        If there is no candidate, no usable candidate, or ``n_voxels`` is below 1.
    """
    if int(n_voxels) < 1:
        raise InputError(f"n_voxels={n_voxels}: give the number of arterial voxels to average, at least 1")
    score = score_arterial_curves(concentration, times_s)
    usable = np.flatnonzero(np.isfinite(score))
    if usable.size == 0:
        raise InputError(
            f"the AIF mask yields no curve: none of its {score.size} voxels has a finite, enhancing "
            "concentration curve with a detectable bolus arrival; draw the mask over an artery"
        )
    order = usable[np.argsort(-score[usable], kind="stable")]
    return order[: int(n_voxels)]


def image_derived_aif(
    concentration: np.ndarray,
    times_s: np.ndarray,
    hematocrit: float = DEFAULT_HEMATOCRIT,
    n_voxels: int = 10,
) -> ImageDerivedAIF:
    """Plasma AIF from the most arterial candidate curves.

    Parameters
    ----------
    concentration : array_like, shape (N, T)
        Blood concentration curves (mM) of the candidate voxels, e.g. the voxels of an AIF mask.
    times_s : array_like, shape (T,)
        Frame times in seconds.
    hematocrit : float, optional
        Large-vessel haematocrit, in [0, 1).
    n_voxels : int, optional
        Number of best-scoring curves averaged.

    Returns
    -------
    ImageDerivedAIF
        The plasma curve (mean blood curve / (1 - Hct)) and the indices of the averaged curves.

    Raises
    ------
    InputError
        If the candidate set is empty or has no usable curve (message starts "the AIF mask yields
        no curve"), or the haematocrit or ``n_voxels`` is invalid.
    """
    plasma_factor = 1.0 / (1.0 - _check_hematocrit(hematocrit))
    curves = _check_candidates(concentration)
    chosen = select_arterial_voxels(curves, times_s, n_voxels)
    return ImageDerivedAIF(np.mean(curves[chosen], axis=0) * plasma_factor, chosen)


def _minutes_after_delay(times_s: np.ndarray, delay_s: float) -> np.ndarray:
    """Validate times and delay (s) and return the time since the delay in minutes."""
    times = np.asarray(times_s, dtype=float)
    if not np.all(np.isfinite(times)):
        raise InputError("AIF times contain NaN or infinite values: give finite times in seconds")
    delay = float(delay_s)
    if not np.isfinite(delay):
        raise InputError(f"AIF delay {delay_s} s is not finite: give the bolus arrival time in seconds")
    return (times - delay) / 60.0


def _gaussian(minutes: np.ndarray, area: float, width: float, centre: float) -> np.ndarray:
    """Gaussian with the given area (mM min), standard deviation and centre (min)."""
    return area / (width * np.sqrt(2.0 * np.pi)) * np.exp(-((minutes - centre) ** 2) / (2.0 * width**2))


def _check_hematocrit(hematocrit: float) -> float:
    """Validate a haematocrit fraction."""
    value = float(hematocrit)
    if not (np.isfinite(value) and 0.0 <= value < 1.0):
        raise InputError(
            f"haematocrit {hematocrit} is outside [0, 1): give it as a fraction, e.g. {DEFAULT_HEMATOCRIT}"
        )
    return value


def _check_candidates(concentration: np.ndarray) -> np.ndarray:
    """Validate the (N, T) candidate curves of an image-derived AIF."""
    curves = np.asarray(concentration, dtype=float)
    if curves.ndim != 2:
        raise InputError(
            f"candidate AIF curves have shape {curves.shape}: give an array (voxels, frames) of the "
            "voxels inside the AIF mask"
        )
    if curves.shape[0] == 0:
        raise InputError(
            "the AIF mask yields no curve: it contains no voxel; draw the AIF mask over an artery "
            "inside the imaged volume"
        )
    return curves


def _first_pass_width(curves: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Full width at half maximum (s) of the main peak of each curve, shape (N,).

    The half-maximum crossings around the peak are interpolated linearly; a curve that does not
    fall back below half its peak within the series is taken to last until the last frame.
    """
    n_frames = times.size
    frame = np.arange(n_frames)
    peak_index = np.argmax(curves, axis=1)[:, np.newaxis]
    half = 0.5 * np.take_along_axis(curves, peak_index, axis=1)
    below = curves < half
    rise_index = np.max(np.where(below & (frame < peak_index), frame, -1), axis=1)
    fall_index = np.min(np.where(below & (frame > peak_index), frame, n_frames), axis=1)
    rise = _crossing_time(curves, times, half[:, 0], rise_index, rise_index + 1, times[0])
    fall = _crossing_time(curves, times, half[:, 0], fall_index - 1, fall_index, times[-1])
    return fall - rise


def _crossing_time(
    curves: np.ndarray,
    times: np.ndarray,
    level: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    default: float,
) -> np.ndarray:
    """Time where each curve crosses ``level`` between frames ``before`` and ``after``.

    Where the frame pair is outside the series (no crossing), ``default`` is returned.
    """
    inside = (before >= 0) & (after < times.size)
    first = np.clip(before, 0, times.size - 1)
    second = np.clip(after, 0, times.size - 1)
    rows = np.arange(curves.shape[0])
    value_first = curves[rows, first]
    value_second = curves[rows, second]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.clip((level - value_first) / (value_second - value_first), 0.0, 1.0)
    fraction = np.where(np.isfinite(fraction), fraction, 0.0)
    crossing = times[first] + fraction * (times[second] - times[first])
    return np.where(inside, crossing, default)


def _read_aif_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate an AIF CSV file; return (times in s, plasma concentration in mM)."""
    if not path.is_file():
        raise InputError(
            f"AIF file {path} does not exist: give the path of a CSV file with the header "
            f"{','.join(AIF_CSV_HEADER)}"
        )
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(field.strip() for field in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"AIF file {path} cannot be read as text ({error}): give a UTF-8 CSV file") from None
    if not rows or tuple(field.strip() for field in rows[0]) != AIF_CSV_HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise InputError(
            f"AIF file {path} starts with {found!r}: its first line must be the header "
            f"{','.join(AIF_CSV_HEADER)} (time in s, plasma concentration in mM)"
        )
    values = np.array([_parse_aif_row(row, number, path) for number, row in enumerate(rows[1:], start=2)])
    if values.shape[0] < 2:
        raise InputError(
            f"AIF file {path} has {values.shape[0]} sample(s): give at least two rows of samples"
        )
    times, concentration = values[:, 0], values[:, 1]
    steps = np.diff(times)
    if np.any(steps == 0):
        repeated = times[1:][steps == 0][0]
        raise InputError(f"AIF file {path} repeats the time {repeated:g} s: keep one sample per time")
    if np.any(steps < 0):
        raise InputError(f"AIF file {path} has times out of order: sort the rows by increasing time_s")
    return times, concentration


def _parse_aif_row(row: list[str], line_number: int, path: Path) -> tuple[float, float]:
    """Parse one data row of an AIF CSV file into two finite numbers."""
    if len(row) != 2:
        raise InputError(
            f"line {line_number} of AIF file {path} has {len(row)} fields: give exactly two, "
            f"{','.join(AIF_CSV_HEADER)}"
        )
    try:
        time, concentration = float(row[0]), float(row[1])
    except ValueError:
        raise InputError(
            f"line {line_number} of AIF file {path} ({','.join(row)!r}) is not numeric: give the time in "
            "seconds and the concentration in mM as plain numbers"
        ) from None
    if not (np.isfinite(time) and np.isfinite(concentration)):
        raise InputError(
            f"line {line_number} of AIF file {path} contains NaN or infinity: give finite numbers"
        )
    return time, concentration
