"""The fMRI analysis on arrays: preprocessing, quality measures and the selected features.

This is the one place where the fMRI steps are put together; the MRML logic and the command line
both call :func:`analyse_fmri` and only convert nodes and files to and from arrays. Series are
``(k, j, i, T)`` (time last), voxel spacing ``(sk, sj, si)`` in mm, times in seconds.

Preprocessing, in this order:

1. rigid motion correction of every frame to the mean volume (six parameters in FSL order);
2. slice-timing correction to ``slice_time_reference`` of the slice acquisition span; that
   reference time is passed on to the GLM as the time each frame represents;
3. framewise displacement (Power 2012) and DVARS (Nichols 2013); frames above ``censor_fd_mm`` or
   ``censor_dvars`` are censored (with one frame before and two after);
4. cleaning as ONE linear projection (:func:`FMRIDynamicsLib.cleaning.cleaning_operator`): censored
   frames interpolated, polynomial detrending, Butterworth filtering, and regression of the
   nuisance signals (6/12/24 motion terms, the confounds file, white-matter and CSF means, the
   optional global signal) filtered by the same filter, unless step 5 matches them instead;
   censored frames are then re-interpolated from the cleaned frames so that time-domain features
   see a regular series;
5. optional selective temporal-ICA clean-up (``ica_cleanup``, Glasser et al. 2018,
   :func:`FMRIDynamicsLib.ica.temporal_ica_cleanup`) of each cleaned series: the nuisance signals,
   passed through the same projection as the data (detrending, filter, censored-frame
   interpolation), are matched against the temporal ICA components of the series, and only the
   components whose time course reaches ``|r| >= ica_cleanup_threshold`` with one of them are
   subtracted (table ``ica_cleanup``). The nuisance signals are then left out of the regression of
   step 4: a series regressed on them is orthogonal to them, so no component could match. Nuisance
   signals that the projection removes (filtered SD below ``NUISANCE_MIN_SD_FRACTION`` of their root
   mean square) are not matched. The GLM, which does not use the cleaned series, keeps them as
   regressors. Temporal ICA needs many more frames than components: on the test phantom, 400
   frames and 6 components remove 75-90 % of the RMS of a planted nuisance, while fewer frames or
   more components split it over several components that each correlate less;
6. optional Gaussian smoothing inside the mask (each voxel is the kernel-weighted mean of the
   analysed voxels, so the mask edge is not darkened).

Cleaning gives two series, used by different features:

=================  ===========================================  ==========================================
series             band                                         features
=================  ===========================================  ==========================================
prepared           none (steps 1-2 only; smoothed for the GLM)  qc (tSNR, DVARS, carpet), glm, HRF shape
unfiltered         high-pass at 1 / ``high_pass_cutoff_s``      mi, lag, int, alff, entropy, ica
band-passed        ``band_low_hz`` to ``band_high_hz``          reho, fc (seed maps, matrices), dfc
=================  ===========================================  ==========================================

The GLM runs on the prepared, non-band-passed data: its cosine drift basis, the nuisance signals as
regressors and one indicator regressor per censored frame model the nuisance, while a band-pass
would remove the task frequencies and colour the noise that the AR(1) model describes. The lag map
band-limits the unfiltered series itself (to ``--band``); fALFF needs the unfiltered spectrum.
Correlations (seed maps, region matrices) and ReHo use only the frames that are not censored.
A seed is a sphere of ``seed_radius_mm`` around a seed point (map ``seed_<n>_correlation``, n from 1)
or a seed region of a label map (map ``seed_<name>_correlation``, the region name reduced to letters,
digits, '_' and '-'); its series is the mean of its analysed voxels.

Without a mask, the **automatic mask** is computed from the temporal mean image: voxels brighter
than 10 % of its 98th percentile, the largest face-connected component of them, holes filled.
Voxels whose series is constant or not finite are kept in the mask but not analysed: every map is
NaN there (and outside the mask), and the NaN voxels inside the mask are counted per map.

References
----------
Power JD et al. (2012), Nichols TE (2013), Lindquist MA et al. (2019): see :mod:`FMRIDynamicsLib.quality`
and :mod:`FMRIDynamicsLib.cleaning`; Glasser MF et al. (2018): see :mod:`FMRIDynamicsLib.ica`; the
features cite their own papers in their modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.progress import Progress, as_progress

from .cleaning import (
    censor_mask,
    check_tr,
    cleaning_operator,
    interpolate_censored,
    nuisance_design,
    smooth_spatial,
    varying_series_mask,
)
from .connectivity import (
    coherence_matrix,
    correlation_matrix,
    fisher_z,
    partial_correlation_matrix,
    region_mean_series,
    seed_correlation_map,
    sliding_window_connectivity,
)
from .glm import Events, compute_contrast, design_matrix, estimate_hrf_shape, fit_glm, make_events
from .glm import check_events_in_scan as check_glm_events
from .ica import spatial_ica, temporal_ica_cleanup
from .latency import delay_matrix, lag_map, lag_projection, latency_eigenvectors
from .local_features import (
    low_frequency_amplitude,
    mean_normalised_alff,
    regional_homogeneity,
    sample_entropy,
    timescale_acf_half_width,
    timescale_positive_acf_sum,
)
from .motion import motion_correct, slice_timing_correct
from .mutual_information import frame_labels, mutual_information_time_maps
from .parameters import FEATURES, FMRIParameters, check_parameters, science_hrf_model
from .quality import DVARS, CarpetMatrix, carpet_matrix, dvars, framewise_displacement, temporal_snr

MASK_FRACTION = 0.1
"""Automatic mask: fraction of the mean image's 98th percentile a brain voxel must exceed."""
MASK_PERCENTILE = 98.0

MOTION_COLUMNS = ("rot_x_rad", "rot_y_rad", "rot_z_rad", "trans_x_mm", "trans_y_mm", "trans_z_mm")
"""Columns of the motion table, in FSL ``.par`` order."""

UNFILTERED_FEATURES = frozenset({"mi", "lag", "int", "alff", "entropy", "ica"})
BAND_PASSED_FEATURES = frozenset({"reho", "fc", "dfc"})
MAX_COHERENCE_SEGMENT = 64
MIN_REGISTRATION_VOXELS = 4
"""Fewest voxels along each axis that rigid registration works with."""
N_LATENCY_EIGENVECTORS = 3
NUISANCE_MIN_SD_FRACTION = 1e-6
"""A nuisance signal whose filtered SD is below this fraction of its root mean square is not matched."""

MAP_UNITS = {
    "hrf_peak_latency": "s",
    "hrf_fwhm": "s",
    "mi_preferred_time": "s",
    "mi_amplitude": "bit",
    "mi_significance": "p-value",
    "lag": "s",
    "lag_correlation": "",
    "lag_projection": "s",
    "int_acf": "s",
    "int_hwhm": "s",
    "alff": "signal units",
    "falff": "",
    "malff": "",
    "reho": "",
    "sample_entropy": "",
    "tsnr": "",
}
"""Unit of every map with a fixed name (``glm_*_effect``: signal units, ``glm_*_z`` and seed maps: none)."""


@dataclass(frozen=True)
class SliceTiming:
    """Acquisition time of each slice within the TR.

    Attributes
    ----------
    times_s : numpy.ndarray
        ``(n_slices,)`` times in s, in [0, TR) (BIDS ``SliceTiming``).
    axis : int
        Spatial array axis that indexes the slices (0 = k, 1 = j, 2 = i).
    """

    times_s: np.ndarray
    axis: int = 0


@dataclass
class FMRIAnalysis:
    """Everything an fMRI analysis produces.

    Attributes
    ----------
    maps : dict of str to numpy.ndarray
        ``(k, j, i)`` maps named as the output files (``lag``, ``glm_<trial_type>_z``, ...); NaN
        outside the mask and where the feature is undefined.
    units : dict of str to str
        Unit of each map.
    nan_voxels : dict of str to int
        NaN voxels of each map inside the mask.
    tables : dict of str to dict
        Tables as columns (name to 1D array): ``motion``, ``qc``, ``fc_matrix``, ``dfc``,
        ``delay_matrix``, ``region_lags``, ``time_courses``, ``lag_reference``, ``ica_time_courses``,
        ``ica_cleanup`` (see :func:`cleanup_table`).
    matrices : dict of str to numpy.ndarray
        Square region matrices for figures (``fc_pearson``, ``delay``), rows in ``region_names`` order.
    region_names : tuple of str
        Names of the regions of the matrices.
    mask : numpy.ndarray
        ``(k, j, i)`` bool, the brain mask used.
    features : tuple of str
        Features computed.
    skipped : dict of str to str
        Features not computed, with the reason (the inputs did not allow them).
    tr_s : float
        Repetition time, in s.
    reference_time_s : float
        Time within each TR that the frames represent after slice-timing correction, in s.
    censored : numpy.ndarray
        ``(T,)`` bool, censored frames.
    ica_components : numpy.ndarray or None
        ``(n_components, k, j, i)`` unit-variance spatial ICA maps.
    carpet : CarpetMatrix or None
        Rows of the carpet plot (qc).
    summary : dict
        Per-feature facts for ``summary.json`` (degrees of freedom, explained variance, ...), and
        ``ica_cleanup`` (see :func:`cleanup_summary`) when the clean-up ran.
    """

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    nan_voxels: dict[str, int] = field(default_factory=dict)
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    region_names: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    features: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    tr_s: float = 0.0
    reference_time_s: float = 0.0
    censored: np.ndarray | None = None
    ica_components: np.ndarray | None = None
    carpet: CarpetMatrix | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Regions:
    """Labelled regions restricted to the analysed voxels.

    Attributes
    ----------
    ids : numpy.ndarray
        Label values, ascending.
    names : tuple of str
        Name of each label.
    row_labels : numpy.ndarray
        Label of each analysed voxel (0: in no region).
    """

    ids: np.ndarray
    names: tuple[str, ...]
    row_labels: np.ndarray

    def voxel_counts(self) -> np.ndarray:
        """Analysed voxels in each region."""
        return np.array([np.count_nonzero(self.row_labels == label) for label in self.ids])


@dataclass(frozen=True)
class CleanupReport:
    """What the selective temporal-ICA clean-up found in one cleaned series.

    Attributes
    ----------
    nuisance_names : tuple of str
        The nuisance signals matched (those the series' filter left).
    correlations : numpy.ndarray
        ``(n_components, n_nuisance)`` Pearson r of each component time course with each signal.
    removed : numpy.ndarray
        Indices (from 0) of the components subtracted.
    converged : bool
        Whether FastICA converged.
    """

    nuisance_names: tuple[str, ...]
    correlations: np.ndarray
    removed: np.ndarray
    converged: bool

    def best_matches(self) -> tuple[np.ndarray, np.ndarray]:
        """For each component, the index of the nuisance signal of largest ``|r|`` and that r."""
        best = np.argmax(np.abs(self.correlations), axis=1)
        return best, self.correlations[np.arange(best.size), best]


@dataclass
class PreparedData:
    """The preprocessed series and inputs that the feature computations share.

    Series are rows ``(n_voxels, T)`` of the analysed voxels (``voxels``, in C order). ``seeds`` maps
    the name part of each seed map (``1``, ``2``, ... for points, the region name for regions) to
    the rows its mean series averages; ``cleanup`` holds the clean-up report of each cleaned series
    (``unfiltered``, ``band-passed``) when the clean-up ran.
    """

    voxels: np.ndarray
    tr_s: float
    reference_time_s: float
    prepared: np.ndarray
    glm_series: np.ndarray
    unfiltered: np.ndarray | None
    band_passed: np.ndarray | None
    censored: np.ndarray
    nuisance: np.ndarray
    nuisance_names: tuple[str, ...]
    motion: np.ndarray | None
    framewise_displacement: np.ndarray | None
    dvars: DVARS
    events: Events | None = None
    regions: Regions | None = None
    seeds: dict[str, np.ndarray] = field(default_factory=dict)
    reference_signal: np.ndarray | None = None
    cleanup: dict[str, CleanupReport] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.prepared.shape[1])

    @property
    def frame_times_s(self) -> np.ndarray:
        """Start time of each frame, in s."""
        return np.arange(self.n_frames) * self.tr_s

    @property
    def kept(self) -> np.ndarray:
        """Frames that are not censored."""
        return ~self.censored

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Place per-voxel values ``(n_voxels,)`` on the ``(k, j, i)`` grid, NaN elsewhere."""
        grid = np.full(self.voxels.shape, np.nan)
        grid[self.voxels] = values
        return grid

    def grid_series(self, rows: np.ndarray) -> np.ndarray:
        """Place series rows ``(n_voxels, T')`` on a ``(k, j, i, T')`` grid, NaN elsewhere."""
        grid = np.full((*self.voxels.shape, rows.shape[1]), np.nan)
        grid[self.voxels] = rows
        return grid

    def region_series(self, rows: np.ndarray) -> np.ndarray:
        """Mean series ``(n_regions, T')`` of each region over the analysed voxels."""
        return region_mean_series(rows, self.regions.row_labels, self.regions.ids).series


@dataclass
class FeatureResult:
    """What one feature adds to the analysis."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    ica_components: np.ndarray | None = None
    carpet: CarpetMatrix | None = None


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def automatic_mask(mean_image: np.ndarray) -> np.ndarray:
    """Brain mask from the temporal mean image (rule in the module docstring).

    Parameters
    ----------
    mean_image : numpy.ndarray
        ``(k, j, i)`` temporal mean of the series (NaN where not finite).

    Returns
    -------
    numpy.ndarray
        ``(k, j, i)`` bool mask.
    """
    finite = np.isfinite(mean_image)
    reference = np.percentile(mean_image[finite], MASK_PERCENTILE) if finite.any() else 0.0
    if reference <= 0:
        raise InputError("the mean image has no positive intensity to find the brain in: give a brain mask")
    bright = finite & (mean_image > MASK_FRACTION * reference)
    components, _ = ndimage.label(bright)
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(components == largest) & finite


def _check_grid_array(values: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """An array on the ``(k, j, i)`` grid, or None; refuses another shape."""
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != shape:
        raise InputError(
            f"the {what} has shape {values.shape} but the series grid is {shape}: "
            "give it on the grid of the fMRI series"
        )
    return values


def _check_frame_array(
    values: np.ndarray | None, n_frames: int, n_columns: int | None, what: str
) -> np.ndarray | None:
    """A finite ``(T,)`` or ``(T, n)`` array, or None; refuses another frame count."""
    if values is None:
        return None
    values = np.asarray(values, dtype=float)
    if values.shape[0] != n_frames or (n_columns is not None and values.shape[1:] != (n_columns,)):
        raise InputError(
            f"the {what} has {values.shape[0]} rows but the series has {n_frames} frames: "
            "give one row per frame"
        )
    if not np.all(np.isfinite(values)):
        raise InputError(f"the {what} contains values that are not numbers: fill or remove them")
    return values


def build_regions(
    labels: np.ndarray | None,
    names: Mapping[int, str] | None,
    voxels: np.ndarray,
    what: str = "region",
) -> Regions | None:
    """Regions of a label map on the analysed voxels; refuses a region without analysed voxels.

    Parameters
    ----------
    labels : numpy.ndarray or None
        ``(k, j, i)`` integer labels (0: background).
    names : mapping of int to str, optional
        Region names (``label <n>`` for unnamed labels). A named label absent from ``labels`` (an
        empty segment) is a region without voxels.
    voxels : numpy.ndarray
        ``(k, j, i)`` bool, the analysed voxels.
    what : str
        What a region is called in messages (``region``, ``seed region``).
    """
    if labels is None:
        return None
    labels = np.asarray(labels).astype(np.int64)
    names = dict(names or {})
    ids = np.array(sorted(set(np.unique(labels[labels > 0]).tolist()) | set(names)), dtype=np.int64)
    if ids.size == 0:
        raise InputError(f"the {what} labelmap has no region (all zero): draw regions with non-zero labels")
    row_labels = labels[voxels]
    region_names = tuple(names.get(int(label), f"label {label}") for label in ids)
    for label, name in zip(ids, region_names, strict=True):
        if not np.any(row_labels == label):
            raise InputError(
                f"{what} '{name}' has no voxel with signal inside the brain mask: draw it inside the brain "
                "(or give a mask that covers it), or remove it from the labelmap"
            )
    return Regions(ids, region_names, row_labels)


def seed_voxel_rows(
    seeds: Sequence[Sequence[int]], voxels: np.ndarray, spacing_kji: Sequence[float], radius_mm: float
) -> tuple[np.ndarray, ...]:
    """Rows of the analysed voxels within ``radius_mm`` of each seed voxel ``(k, j, i)``."""
    coordinates = np.argwhere(voxels)
    rows = []
    for number, given in enumerate(seeds, start=1):
        seed = np.asarray(given, dtype=int)
        if seed.shape != (3,) or np.any(seed < 0) or np.any(seed >= voxels.shape):
            raise InputError(
                f"seed {number} at voxel (k, j, i) = {tuple(seed.tolist())} lies outside the "
                f"{voxels.shape} grid: place it inside the image"
            )
        distance = np.linalg.norm((coordinates - seed) * np.asarray(spacing_kji), axis=1)
        inside = np.flatnonzero(distance <= radius_mm + 1e-6)
        if inside.size == 0:
            raise InputError(
                f"seed {number} at voxel (k, j, i) = {tuple(seed.tolist())} has no analysed brain voxel "
                f"within {radius_mm:g} mm: place it inside the brain mask or enlarge --seed-radius-mm"
            )
        rows.append(inside)
    return tuple(rows)


def seed_series_rows(point_rows: Sequence[np.ndarray], seed_regions: Regions | None) -> dict[str, np.ndarray]:
    """Rows of the analysed voxels of every seed, keyed by the name part of its map.

    Seed points are ``1``, ``2``, ... in order; seed regions follow, each under its name reduced
    by :func:`map_name_part` (``left motor`` -> ``left_motor``).

    Raises
    ------
    InputError
        When two seeds would give maps of the same name.
    """
    seeds = {str(number): np.asarray(rows) for number, rows in enumerate(point_rows, start=1)}
    if seed_regions is None:
        return seeds
    for label, name in zip(seed_regions.ids, seed_regions.names, strict=True):
        key = map_name_part(name)
        if key in seeds:
            raise InputError(
                f"seed region '{name}' would write seed_{key}_correlation, the map of another seed: "
                "give the seed regions names that differ in their letters and digits and from the "
                "seed point numbers"
            )
        seeds[key] = np.flatnonzero(seed_regions.row_labels == label)
    return seeds


def unavailable_features(
    events: Events | None, n_frames: int, tr_s: float, n_regions: int, n_seeds: int
) -> dict[str, str]:
    """Features the inputs do not allow, with what is missing."""
    reasons = {}
    if events is None:
        reasons["glm"] = reasons["mi"] = "needs task events: give a BIDS events.tsv with --events FILE"
    else:
        try:
            frame_labels(events, n_frames, tr_s)
        except InputError as error:
            reasons["mi"] = f"cannot label the frames with the events ({error})"
    if n_regions < 2:
        reasons["dfc"] = "needs at least two regions: give a labelmap with --labels FILE"
        if n_seeds == 0:
            reasons["fc"] = (
                "needs at least two regions (--labels FILE), or seed points (--seed R,A,S) "
                "or seed regions (--seed-labels FILE)"
            )
    return reasons


def select_features(
    requested: Sequence[str], unavailable: Mapping[str, str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Features to compute and those skipped (with reasons).

    Requested features the inputs do not allow are refused; without a request every feature the
    inputs allow is computed and the others are skipped.
    """
    if requested:
        for name in requested:
            if name in unavailable:
                raise InputError(f"--features {name} {unavailable[name]}")
        return tuple(requested), {}
    return (
        tuple(name for name in FEATURES if name not in unavailable),
        {name: unavailable[name] for name in FEATURES if name in unavailable},
    )


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------
def slice_timing_reference_s(slice_timing: SliceTiming, fraction: float) -> float:
    """Time within the TR the slice-timing correction aligns to: ``fraction`` of the slice span, in s."""
    times = np.asarray(slice_timing.times_s, dtype=float)
    return float(times.min() + fraction * (times.max() - times.min()))


def censored_frames(
    fd_mm: np.ndarray | None, quality: DVARS, parameters: FMRIParameters, n_frames: int
) -> np.ndarray:
    """Frames censored by the framewise-displacement and standardised-DVARS thresholds (none by default)."""
    if parameters.censor_fd_mm is None and parameters.censor_dvars is None:
        return np.zeros(n_frames, dtype=bool)
    if parameters.censor_fd_mm is not None and fd_mm is None:
        raise InputError(
            "--censor-fd needs motion parameters: leave motion correction on, or give a confounds file "
            "with the columns trans_x trans_y trans_z rot_x rot_y rot_z"
        )
    return censor_mask(
        fd_mm if parameters.censor_fd_mm is not None else None,
        quality.standardised,
        fd_threshold_mm=parameters.censor_fd_mm if parameters.censor_fd_mm is not None else np.inf,
        dvars_threshold=parameters.censor_dvars,
    )


def full_length_operator(
    n_frames: int,
    tr_s: float,
    confounds: np.ndarray | None,
    parameters: FMRIParameters,
    band: tuple[float | None, float | None],
    censored: np.ndarray,
) -> np.ndarray:
    """Cleaning matrix ``(T, T)``: the one-projection cleaning, censored frames re-interpolated.

    ``series @ operator`` detrends, filters and regresses the confounds out (fitted on the kept
    frames, :func:`FMRIDynamicsLib.cleaning.cleaning_operator`); the censored frames of the result
    are cubic-spline interpolations of the cleaned kept frames (interpolation is linear, so it is
    applied to the operator's columns).
    """
    operator = cleaning_operator(
        n_frames,
        tr_s,
        confounds=confounds,
        detrend_order=parameters.detrend_order,
        band=band,
        censor=censored if censored.any() else None,
        filter_order=parameters.filter_order,
    )
    if not censored.any():
        return operator
    full = np.zeros((n_frames, n_frames))
    full[:, ~censored] = operator
    return interpolate_censored(full, censored)


def smooth_rows(
    rows: np.ndarray, voxels: np.ndarray, fwhm_mm: float, spacing_kji: Sequence[float]
) -> np.ndarray:
    """Gaussian smoothing inside the analysed voxels (kernel-weighted mean over them), rows in and out."""
    if fwhm_mm == 0:
        return rows
    grid = np.zeros((*voxels.shape, rows.shape[1]))
    grid[voxels] = rows
    weight = smooth_spatial(voxels.astype(float), fwhm_mm, tuple(spacing_kji))
    return smooth_spatial(grid, fwhm_mm, tuple(spacing_kji))[voxels] / weight[voxels][:, None]


def _nuisance_signals(
    prepared: np.ndarray,
    voxels: np.ndarray,
    motion: np.ndarray | None,
    parameters: FMRIParameters,
    confounds: np.ndarray | None,
    confound_names: Sequence[str],
    white_matter_mask: np.ndarray | None,
    csf_mask: np.ndarray | None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Nuisance regressors ``(T, n)`` and names: motion terms, tissue and global means, confounds file."""
    use_motion = motion is not None and parameters.motion_terms > 0
    design = nuisance_design(
        prepared.shape[-1],
        motion=motion.T if use_motion else None,
        n_motion_terms=parameters.motion_terms,
        data=prepared,
        white_matter_mask=white_matter_mask,
        csf_mask=csf_mask,
        global_mask=voxels if parameters.global_signal else None,
    )
    regressors, names = design.regressors.T, design.names
    if confounds is not None:
        regressors = np.hstack([regressors, confounds])
        names = (*names, *confound_names)
    return regressors, tuple(names)


def check_cleanup_request(
    parameters: FMRIParameters,
    n_voxels: int,
    n_frames: int,
    *,
    motion: np.ndarray | None,
    confounds: np.ndarray | None,
    white_matter_mask: np.ndarray | None,
    csf_mask: np.ndarray | None,
) -> None:
    """Refuse the selective clean-up without nuisance signals, or with more components than the data hold.

    Parameters
    ----------
    n_voxels, n_frames : int
        Analysed voxels and frames of the series.
    motion, confounds, white_matter_mask, csf_mask
        The inputs of :func:`preprocess` that give nuisance signals (``None``: not given).
    """
    if not parameters.ica_cleanup:
        return
    has_motion_terms = (parameters.motion_correction or motion is not None) and parameters.motion_terms > 0
    given = (has_motion_terms, confounds is not None, white_matter_mask is not None, csf_mask is not None)
    if not any(given) and not parameters.global_signal:
        raise InputError(
            "--ica-cleanup removes the components that match nuisance signals, but this run has none: "
            "give a confounds table (--confounds FILE), a white-matter or CSF mask, motion regressors "
            "(motion correction, or motion columns in the confounds, with --motion-terms 6, 12 or 24) "
            "or --global-signal, or leave the clean-up off"
        )
    largest = min(n_voxels, n_frames) - 1
    if parameters.ica_cleanup_components > largest:
        raise InputError(
            f"--ica-cleanup-components {parameters.ica_cleanup_components} does not fit {n_voxels} analysed "
            f"voxels x {n_frames} frames: give at most {largest}, well below the number of frames"
        )


def filtered_nuisance(
    nuisance: np.ndarray, names: Sequence[str], operator: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Nuisance signals passed through a series' cleaning matrix, less those the matrix removes.

    Parameters
    ----------
    nuisance : numpy.ndarray
        ``(T, n)`` nuisance signals, with ``names``.
    operator : numpy.ndarray
        ``(T, T)`` cleaning matrix of the series, without regression (:func:`full_length_operator`).

    Returns
    -------
    signals : numpy.ndarray
        ``(n_kept, T)`` filtered signals whose SD exceeds ``NUISANCE_MIN_SD_FRACTION`` of the root
        mean square of the signal before filtering.
    kept_names : tuple of str
        Their names.
    """
    filtered = nuisance.T @ operator
    magnitude = np.sqrt(np.mean(nuisance**2, axis=0))
    kept = np.std(filtered, axis=1) > NUISANCE_MIN_SD_FRACTION * magnitude
    return filtered[kept], tuple(name for name, keep in zip(names, kept, strict=True) if keep)


def selective_cleanup(
    series: np.ndarray,
    nuisance: np.ndarray,
    names: Sequence[str],
    operator: np.ndarray,
    parameters: FMRIParameters,
) -> tuple[np.ndarray, CleanupReport]:
    """Subtract the temporal ICA components of a cleaned series that match a nuisance signal.

    Parameters
    ----------
    series : numpy.ndarray
        ``(n_voxels, T)`` cleaned series (the rows times ``operator``).
    nuisance : numpy.ndarray
        ``(T, n)`` nuisance signals before filtering, with ``names``.
    operator : numpy.ndarray
        ``(T, T)`` cleaning matrix of the series, without regression; the nuisance signals pass
        through it too.
    parameters : FMRIParameters
        ``ica_cleanup_components``, ``ica_cleanup_threshold`` and ``random_seed``.

    Returns
    -------
    cleaned : numpy.ndarray
        ``(n_voxels, T)`` series without the matching components.
    report : CleanupReport
    """
    signals, matched = filtered_nuisance(nuisance, names, operator)
    if not matched:
        raise InputError(
            "--ica-cleanup: the detrending and filter remove every nuisance signal of the run "
            f"({', '.join(names)}): give nuisance signals that vary within the pass band, or leave the "
            "clean-up off"
        )
    result = temporal_ica_cleanup(
        series,
        signals,
        parameters.ica_cleanup_components,
        parameters.ica_cleanup_threshold,
        seed=parameters.random_seed,
    )
    return result.cleaned, CleanupReport(matched, result.correlations, result.removed, result.converged)


def cleanup_table(reports: Mapping[str, CleanupReport]) -> dict[str, np.ndarray]:
    """Every component of the selective clean-up, one row each, as table columns.

    Columns: ``series`` (``unfiltered`` or ``band-passed``), ``component`` (from 1), ``removed``
    (1 or 0), ``best_match`` (the nuisance signal of largest ``|r|``), ``best_correlation`` (that
    r), then ``r_<signal>`` for every nuisance signal (NaN where a series did not match it).
    """
    names = list(dict.fromkeys(name for report in reports.values() for name in report.nuisance_names))
    series, components, removed, best_names, best_r, correlations = [], [], [], [], [], []
    for series_name, report in reports.items():
        n_components = report.correlations.shape[0]
        best, r = report.best_matches()
        series += [series_name] * n_components
        components.append(np.arange(1, n_components + 1))
        removed.append(np.isin(np.arange(n_components), report.removed).astype(int))
        best_names += [report.nuisance_names[index] for index in best]
        best_r.append(r)
        matrix = np.full((n_components, len(names)), np.nan)
        matrix[:, [names.index(name) for name in report.nuisance_names]] = report.correlations
        correlations.append(matrix)
    matrix = np.vstack(correlations)
    return {
        "series": np.array(series),
        "component": np.concatenate(components),
        "removed": np.concatenate(removed),
        "best_match": np.array(best_names),
        "best_correlation": np.concatenate(best_r),
        **{f"r_{name}": matrix[:, column] for column, name in enumerate(names)},
    }


def cleanup_summary(reports: Mapping[str, CleanupReport]) -> dict[str, dict[str, Any]]:
    """Per cleaned series: components, signals matched, removed components (from 1) with their best match."""
    summary = {}
    for series_name, report in reports.items():
        best, r = report.best_matches()
        summary[series_name] = {
            "components": int(report.correlations.shape[0]),
            "nuisance_signals": list(report.nuisance_names),
            "removed": [int(index) + 1 for index in report.removed],
            "removed_best_match": [report.nuisance_names[best[index]] for index in report.removed],
            "removed_correlation": [float(r[index]) for index in report.removed],
            "converged": report.converged,
        }
    return summary


def preprocess(
    series: np.ndarray,
    voxels: np.ndarray,
    tr_s: float,
    spacing_kji: Sequence[float],
    parameters: FMRIParameters,
    features: Sequence[str],
    *,
    motion: np.ndarray | None = None,
    slice_timing: SliceTiming | None = None,
    confounds: np.ndarray | None = None,
    confound_names: Sequence[str] = (),
    white_matter_mask: np.ndarray | None = None,
    csf_mask: np.ndarray | None = None,
    progress: Progress,
) -> PreparedData:
    """Motion and slice-timing correction, quality measures, censoring, cleaning, clean-up and smoothing.

    Parameters
    ----------
    series : numpy.ndarray
        ``(k, j, i, T)`` finite series (float64).
    voxels : numpy.ndarray
        ``(k, j, i)`` bool, the voxels to analyse.
    motion : numpy.ndarray, optional
        ``(T, 6)`` motion parameters in FSL order, used when motion correction is off.
    features : sequence of str
        The features that will run (decides which cleaned series are made).
    """
    check_cleanup_request(
        parameters,
        int(np.count_nonzero(voxels)),
        series.shape[-1],
        motion=motion,
        confounds=confounds,
        white_matter_mask=white_matter_mask,
        csf_mask=csf_mask,
    )
    prepared, reference_time = series, 0.0
    if parameters.motion_correction:
        if min(series.shape[:3]) < MIN_REGISTRATION_VOXELS:
            raise InputError(
                f"motion correction needs at least {MIN_REGISTRATION_VOXELS} voxels along each axis but the "
                f"series grid is {series.shape[:3]} (k, j, i): pass --no-motion-correction"
            )
        progress(0.0, "motion correction")
        correction = motion_correct(series, tuple(spacing_kji))
        prepared, motion = correction.corrected, correction.parameters
    progress(0.6, "slice timing, quality and cleaning")
    if slice_timing is not None:
        reference_time = slice_timing_reference_s(slice_timing, parameters.slice_time_reference)
        prepared = slice_timing_correct(
            prepared, tr_s, slice_timing.times_s, reference_time, slice_timing.axis
        )
    rows = prepared[voxels]
    n_frames = rows.shape[1]
    fd = framewise_displacement(motion.T, parameters.head_radius_mm) if motion is not None else None
    quality = dvars(rows)
    censored = censored_frames(fd, quality, parameters, n_frames)
    nuisance, names = _nuisance_signals(
        prepared, voxels, motion, parameters, confounds, confound_names, white_matter_mask, csf_mask
    )
    regressed = nuisance.T if nuisance.shape[1] and not parameters.ica_cleanup else None
    cleanup: dict[str, CleanupReport] = {}

    def cleaned(band: tuple[float | None, float | None], name: str) -> np.ndarray:
        operator = full_length_operator(n_frames, tr_s, regressed, parameters, band, censored)
        result = rows @ operator
        if parameters.ica_cleanup:
            result, cleanup[name] = selective_cleanup(result, nuisance, names, operator, parameters)
        return smooth_rows(result, voxels, parameters.smooth_fwhm_mm, spacing_kji)

    wanted = set(features)
    unfiltered = (
        cleaned((1.0 / parameters.high_pass_cutoff_s, None), "unfiltered")
        if wanted & UNFILTERED_FEATURES
        else None
    )
    band_passed = (
        cleaned((parameters.band_low_hz, parameters.band_high_hz), "band-passed")
        if wanted & BAND_PASSED_FEATURES
        else None
    )
    glm_series = (
        smooth_rows(rows, voxels, parameters.smooth_fwhm_mm, spacing_kji) if "glm" in wanted else rows
    )
    progress(1.0, "preprocessed")
    return PreparedData(
        voxels=voxels,
        tr_s=tr_s,
        reference_time_s=reference_time,
        prepared=rows,
        glm_series=glm_series,
        unfiltered=unfiltered,
        band_passed=band_passed,
        censored=censored,
        nuisance=nuisance,
        nuisance_names=names,
        motion=motion,
        framewise_displacement=fd,
        dvars=quality,
        cleanup=cleanup,
    )


# --------------------------------------------------------------------------------------------------
# GLM and HRF shape
# --------------------------------------------------------------------------------------------------
def map_name_part(text: str) -> str:
    """A trial type or contrast as part of a file name: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_") or "unnamed"


def parse_contrast(expression: str, trial_types: Sequence[str]) -> tuple[str, dict[str, float]]:
    """Name and weights of a contrast written as a signed sum of trial types.

    Parameters
    ----------
    expression : str
        E.g. ``"motor-visual"``, ``"2*motor - visual - rest"`` (terms ``[+|-][weight*]trial_type``).
    trial_types : sequence of str
        The trial types of the events.

    Returns
    -------
    name : str
        Map name part, e.g. ``motor_minus_visual``.
    weights : dict of str to float
        Weight of each trial type.
    """
    weights: dict[str, float] = {}
    pieces = re.split(r"([+-])", expression.replace(" ", ""))
    signs = ["+", *pieces[1::2]]
    for index, (sign, term) in enumerate(zip(signs, pieces[0::2], strict=True)):
        if not term and index == 0:
            continue
        if not term:
            raise InputError(f"contrast '{expression}' has an empty term: write it as e.g. 'motor-visual'")
        factor, _, name = term.rpartition("*")
        try:
            weight = float(factor) if factor else 1.0
        except ValueError:
            raise InputError(
                f"contrast '{expression}': '{factor}' is not a number: write weights as '2*motor'"
            ) from None
        if name not in trial_types:
            raise InputError(
                f"contrast '{expression}': '{name}' is not a trial type of the events "
                f"({', '.join(trial_types)}): fix the contrast or the events file"
            )
        weights[name] = weights.get(name, 0.0) + (weight if sign == "+" else -weight)
    if not any(weights.values()):
        raise InputError(f"contrast '{expression}' has no non-zero weight: name at least one trial type")
    name = expression.replace(" ", "").replace("-", "_minus_").replace("+", "_plus_").replace("*", "x")
    return map_name_part(name), weights


def glm_contrasts(
    trial_types: Sequence[str], expressions: Sequence[str]
) -> list[tuple[str, dict[str, float]]]:
    """One contrast per trial type (against baseline), then the extra contrasts."""
    contrasts = [(map_name_part(name), {name: 1.0}) for name in trial_types]
    return contrasts + [parse_contrast(expression, trial_types) for expression in expressions]


def _spike_regressors(censored: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One indicator column per censored frame ``(T, n_censored)`` and its names."""
    frames = np.flatnonzero(censored)
    spikes = np.zeros((censored.size, frames.size))
    spikes[frames, np.arange(frames.size)] = 1.0
    return spikes, [f"censored_frame_{frame}" for frame in frames]


def shape_events(events: Events, trial_type: str) -> tuple[Events, str]:
    """Events whose response shape is mapped: one trial type, or all events as ``event``."""
    if not trial_type:
        pooled = make_events(events.onset, events.duration, ["event"] * events.onset.size, events.modulation)
        return pooled, "event"
    if trial_type not in events.trial_types:
        raise InputError(
            f"--hrf-trial-type '{trial_type}' is not a trial type of the events "
            f"({', '.join(events.trial_types)}): choose one of them or leave it empty"
        )
    return events, trial_type


def glm_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """GLM effect and z maps per trial type and contrast, and the HRF peak latency and width maps."""
    events, tr = data.events, data.tr_s
    spikes, spike_names = _spike_regressors(data.censored)
    confounds = np.hstack([data.nuisance, spikes])
    design = design_matrix(
        events,
        data.n_frames,
        tr,
        science_hrf_model(parameters.hrf_model),
        data.reference_time_s,
        parameters.high_pass_cutoff_s,
        confounds=confounds if confounds.shape[1] else None,
        confound_names=[*data.nuisance_names, *spike_names],
    )
    fit = fit_glm(data.glm_series, design, parameters.noise_model)
    result = FeatureResult(
        summary={"regressors": list(design.names), "dof": fit.dof, "failed_voxels": fit.n_failed}
    )
    for name, weights in glm_contrasts(events.trial_types, parameters.contrast_list()):
        contrast = compute_contrast(fit, weights)
        result.maps[f"glm_{name}_effect"] = data.to_grid(contrast.effect)
        result.maps[f"glm_{name}_z"] = data.to_grid(contrast.z)
        result.units.update({f"glm_{name}_effect": "signal units", f"glm_{name}_z": ""})
    selected, trial_type = shape_events(events, parameters.hrf_trial_type)
    shape_model = parameters.hrf_shape_model
    shape = estimate_hrf_shape(
        data.glm_series,
        selected,
        tr,
        trial_type,
        hrf_model=shape_model if shape_model == "fir" else science_hrf_model(shape_model),
        n_fir_delays=round(parameters.hrf_window_s / tr) + 1,
        reference_time=data.reference_time_s,
        high_pass_cutoff=parameters.high_pass_cutoff_s,
    )
    result.maps["hrf_peak_latency"] = data.to_grid(shape.peak_latency)
    result.maps["hrf_fwhm"] = data.to_grid(shape.fwhm)
    result.summary["hrf_shape"] = {
        "model": shape_model,
        "trial_type": trial_type,
        "failed_voxels": shape.n_failed,
    }
    return result


# --------------------------------------------------------------------------------------------------
# Model-free timing, latency and local features
# --------------------------------------------------------------------------------------------------
def mi_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Mutual-information time maps: preferred time, amplitude and permutation p-value."""
    labels, trial_types = frame_labels(data.events, data.n_frames, data.tr_s)
    maps = mutual_information_time_maps(
        data.unfiltered,
        labels,
        data.tr_s,
        max_delay=parameters.mi_max_delay_s,
        n_bins=parameters.mi_bins,
        n_shuffles=parameters.mi_shuffles,
        seed=parameters.random_seed,
    )
    return FeatureResult(
        maps={
            "mi_preferred_time": data.to_grid(maps.preferred_time),
            "mi_amplitude": data.to_grid(maps.amplitude),
            "mi_significance": data.to_grid(maps.p_value),
        },
        summary={"trial_types": list(trial_types), "delays_s": maps.delays, "failed_voxels": maps.n_failed},
    )


def _region_lag_tables(
    data: PreparedData, parameters: FMRIParameters, band: tuple[float, float]
) -> FeatureResult:
    """Delay matrix, lag projections and latency eigenvectors of the regions."""
    regions = data.regions
    delays = delay_matrix(data.region_series(data.unfiltered), data.tr_s, parameters.max_lag_s, band)
    projection = lag_projection(delays.delays)
    weighted = lag_projection(delays.delays, np.abs(np.nan_to_num(delays.peak_correlation)))
    n_vectors = min(N_LATENCY_EIGENVECTORS, regions.ids.size)
    vectors, explained = latency_eigenvectors(delays.delays, n_vectors)
    first, second = np.triu_indices(regions.ids.size, 1)
    names = np.array(regions.names)
    region_lags = {
        "region": names,
        "voxels": regions.voxel_counts(),
        "lag_projection_s": projection,
        "weighted_lag_projection_s": weighted,
    }
    region_lags.update({f"latency_eigenvector_{n + 1}": vectors[n] for n in range(n_vectors)})
    painted = np.full(regions.row_labels.shape, np.nan)
    for label, value in zip(regions.ids, projection, strict=True):
        painted[regions.row_labels == label] = value
    return FeatureResult(
        maps={"lag_projection": data.to_grid(painted)},
        tables={
            "delay_matrix": {
                "region_a": names[first],
                "region_b": names[second],
                "delay_s": delays.delays[first, second],
                "peak_correlation": delays.peak_correlation[first, second],
            },
            "region_lags": region_lags,
        },
        matrices={"delay": delays.delays},
        summary={"latency_eigenvector_explained_variance": explained},
    )


def lag_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Voxel-wise lag and peak correlation against the reference; region delays when regions are given."""
    band = (parameters.band_low_hz, parameters.band_high_hz)
    lags = lag_map(
        data.unfiltered,
        data.tr_s,
        reference=data.reference_signal,
        max_lag=parameters.max_lag_s,
        band=band,
        taper=parameters.lag_taper,
        weighting=parameters.lag_weighting,
    )
    result = FeatureResult(
        maps={"lag": data.to_grid(lags.lag), "lag_correlation": data.to_grid(lags.peak_correlation)},
        tables={"lag_reference": {"time_s": data.frame_times_s, "reference": lags.reference}},
        summary={
            "reference": "global mean" if data.reference_signal is None else "given signal",
            "failed_voxels": lags.n_failed,
        },
    )
    if data.regions is not None and data.regions.ids.size >= 2:
        _merge(result, _region_lag_tables(data, parameters, band))
    return result


def int_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Intrinsic timescales: positive autocorrelation area (Watanabe 2019) and ACF half width (Raut 2020)."""
    return FeatureResult(
        maps={
            "int_acf": data.to_grid(timescale_positive_acf_sum(data.unfiltered, data.tr_s)),
            "int_hwhm": data.to_grid(timescale_acf_half_width(data.unfiltered, data.tr_s)),
        }
    )


def alff_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """ALFF, fALFF (amplitude over the whole 0 < f <= Nyquist spectrum) and mALFF of the unfiltered series."""
    amplitude = low_frequency_amplitude(
        data.unfiltered, data.tr_s, (parameters.alff_low_hz, parameters.alff_high_hz), detrend_order=None
    )
    malff = mean_normalised_alff(amplitude.alff, np.ones(amplitude.alff.shape, dtype=bool))
    return FeatureResult(
        maps={
            "alff": data.to_grid(amplitude.alff),
            "falff": data.to_grid(amplitude.falff),
            "malff": data.to_grid(malff),
        },
        summary={"band_bins": amplitude.n_band_bins},
    )


def reho_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """ReHo (Kendall's W) over the chosen neighbourhood, on the band-passed kept frames."""
    grid = data.grid_series(data.band_passed[:, data.kept])
    return FeatureResult(
        maps={"reho": regional_homogeneity(grid, data.voxels, parameters.reho_neighbourhood)}
    )


def entropy_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Sample entropy of the unfiltered series."""
    entropy = sample_entropy(data.unfiltered, parameters.entropy_m, parameters.entropy_r)
    return FeatureResult(maps={"sample_entropy": data.to_grid(entropy)})


# --------------------------------------------------------------------------------------------------
# Connectivity, ICA, quality
# --------------------------------------------------------------------------------------------------
def _region_pairs(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle and the region names of each pair."""
    first, second = np.triu_indices(len(names), 1)
    return first, second, np.array(names)[first], np.array(names)[second]


def fc_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Seed correlation maps (points and regions), region matrices (Pearson, Fisher z, partial, coherence)."""
    band_passed, kept = data.band_passed, data.kept
    result = FeatureResult()
    for name, rows in data.seeds.items():
        seed = band_passed[rows].mean(axis=0)
        result.maps[f"seed_{name}_correlation"] = data.to_grid(
            seed_correlation_map(band_passed[:, kept], seed[kept])
        )
        result.units[f"seed_{name}_correlation"] = ""
    if data.seeds:
        result.summary["seed_voxels"] = {name: int(rows.size) for name, rows in data.seeds.items()}
    if data.regions is None or data.regions.ids.size < 2:
        return result
    series = data.region_series(band_passed)
    pearson = correlation_matrix(series[:, kept])
    partial = partial_correlation_matrix(series[:, kept], shrinkage="ledoit-wolf")
    coherence = coherence_matrix(
        series,
        data.tr_s,
        (parameters.band_low_hz, parameters.band_high_hz),
        nfft=min(MAX_COHERENCE_SEGMENT, data.n_frames),
    )
    first, second, names_a, names_b = _region_pairs(data.regions.names)
    result.tables["fc_matrix"] = {
        "region_a": names_a,
        "region_b": names_b,
        "pearson": pearson[first, second],
        "fisher_z": fisher_z(pearson[first, second]),
        "partial": partial[first, second],
        "coherence": coherence[first, second],
    }
    result.tables["time_courses"] = {
        "time_s": data.frame_times_s,
        **dict(zip(data.regions.names, series, strict=True)),
    }
    result.matrices["fc_pearson"] = pearson
    return result


def dfc_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Tapered sliding-window correlations of the regions, and their variability across windows."""
    dynamic = sliding_window_connectivity(
        data.region_series(data.band_passed), data.tr_s, parameters.dfc_window_s, parameters.dfc_step_s
    )
    first, second, names_a, names_b = _region_pairs(data.regions.names)
    n_windows, n_pairs = dynamic.matrices.shape[0], first.size
    return FeatureResult(
        tables={
            "dfc": {
                "window": np.repeat(np.arange(n_windows), n_pairs),
                "centre_s": np.repeat(dynamic.window_centres_s, n_pairs),
                "region_a": np.tile(names_a, n_windows),
                "region_b": np.tile(names_b, n_windows),
                "correlation": dynamic.matrices[:, first, second].ravel(),
                "sd_across_windows": np.tile(dynamic.variability[first, second], n_windows),
            }
        },
        summary={"windows": n_windows},
    )


def ica_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """Spatial ICA of the unfiltered series: component maps and time courses."""
    ica = spatial_ica(data.unfiltered, parameters.ica_components, seed=parameters.random_seed)
    components = np.stack([data.to_grid(component) for component in ica.maps])
    courses = {"time_s": data.frame_times_s}
    courses.update({f"ic_{n + 1}": course for n, course in enumerate(ica.time_courses)})
    return FeatureResult(
        tables={"ica_time_courses": courses},
        ica_components=components,
        summary={
            "explained_variance_ratio": ica.explained_variance_ratio,
            "converged": ica.converged,
            "iterations": ica.n_iterations,
        },
    )


def qc_feature(data: PreparedData, parameters: FMRIParameters) -> FeatureResult:
    """tSNR map, per-frame FD and DVARS (first frame NaN), censoring, and the carpet rows."""

    def per_frame(values: np.ndarray | None) -> np.ndarray:
        return np.concatenate([[np.nan], values]) if values is not None else np.full(data.n_frames, np.nan)

    quality = data.dvars
    table = {
        "frame": np.arange(data.n_frames),
        "time_s": data.frame_times_s,
        "fd_mm": per_frame(data.framewise_displacement),
        "dvars_standardised": per_frame(quality.standardised),
        "dvars": per_frame(quality.non_standardised),
        "dvars_voxelwise": per_frame(quality.voxelwise_standardised),
        "censored": data.censored.astype(int),
    }
    fd = data.framewise_displacement
    return FeatureResult(
        maps={"tsnr": data.to_grid(temporal_snr(data.prepared, parameters.detrend_order))},
        tables={"qc": table},
        carpet=carpet_matrix(data.prepared, detrend_order=parameters.detrend_order),
        summary={
            "mean_fd_mm": float(np.mean(fd)) if fd is not None else None,
            "censored_frames": int(data.censored.sum()),
            "dvars_voxels": quality.n_voxels,
        },
    )


FEATURE_FUNCTIONS: dict[str, Callable[[PreparedData, FMRIParameters], FeatureResult]] = {
    "glm": glm_feature,
    "lag": lag_feature,
    "mi": mi_feature,
    "int": int_feature,
    "alff": alff_feature,
    "reho": reho_feature,
    "entropy": entropy_feature,
    "fc": fc_feature,
    "dfc": dfc_feature,
    "ica": ica_feature,
    "qc": qc_feature,
}


# --------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------
def _merge(target: FeatureResult | FMRIAnalysis, addition: FeatureResult) -> None:
    """Add a feature's maps, units, tables and matrices to ``target``."""
    target.maps.update(addition.maps)
    target.units.update(addition.units)
    target.tables.update(addition.tables)
    target.matrices.update(addition.matrices)
    if isinstance(target, FeatureResult):
        target.summary.update(addition.summary)
    if addition.ica_components is not None:
        target.ica_components = addition.ica_components
    if addition.carpet is not None:
        target.carpet = addition.carpet


def _finite_series(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The series as float64 with non-finite voxels set to 0, and the voxels whose series varies."""
    values = np.asarray(series, dtype=np.float64)
    if values.ndim != 4 or values.shape[-1] < 3:
        raise InputError(
            f"the series has shape {values.shape} but a 4D series (k, j, i, T) with T >= 3 is needed"
        )
    varying = varying_series_mask(values)
    if not varying.any():
        raise InputError("no voxel of the series varies over time: check the input file")
    finite = np.all(np.isfinite(values), axis=-1)
    return (values if finite.all() else np.where(finite[..., None], values, 0.0)), varying


def _motion_table(motion: np.ndarray, times_s: np.ndarray) -> dict[str, np.ndarray]:
    """Motion parameters as table columns (FSL order)."""
    return {
        "frame": np.arange(times_s.size),
        "time_s": times_s,
        **dict(zip(MOTION_COLUMNS, motion.T, strict=True)),
    }


def analyse_fmri(
    series: np.ndarray,
    tr_s: float,
    spacing_kji: Sequence[float],
    parameters: FMRIParameters,
    *,
    mask: np.ndarray | None = None,
    events: Events | None = None,
    confounds: np.ndarray | None = None,
    confound_names: Sequence[str] | None = None,
    motion: np.ndarray | None = None,
    slice_timing: SliceTiming | None = None,
    labels: np.ndarray | None = None,
    region_names: Mapping[int, str] | None = None,
    seeds: Sequence[Sequence[int]] | None = None,
    seed_labels: np.ndarray | None = None,
    seed_region_names: Mapping[int, str] | None = None,
    reference_signal: np.ndarray | None = None,
    white_matter_mask: np.ndarray | None = None,
    csf_mask: np.ndarray | None = None,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> FMRIAnalysis:
    """Preprocess a BOLD series and compute the selected features (see the module docstring).

    Parameters
    ----------
    series : numpy.ndarray
        ``(k, j, i, T)`` BOLD series.
    tr_s : float
        Repetition time, in s.
    spacing_kji : sequence of float
        Voxel size along k, j, i in mm.
    parameters : FMRIParameters
        Analysis parameters (validated here).
    mask : numpy.ndarray, optional
        ``(k, j, i)`` bool brain mask (default: automatic, from the mean image).
    events : Events, optional
        Task events (onsets and durations in s from the first frame); needed by glm and mi.
    confounds : numpy.ndarray, optional
        ``(T, n)`` nuisance regressors (e.g. from a confounds TSV), with ``confound_names``.
    motion : numpy.ndarray, optional
        ``(T, 6)`` motion parameters in FSL order (rad, mm), used when motion correction is off.
    slice_timing : SliceTiming, optional
        Slice acquisition times; enables slice-timing correction.
    labels : numpy.ndarray, optional
        ``(k, j, i)`` integer region labels, named by ``region_names``; needed by fc matrices, dfc
        and the region delays of lag.
    seeds : sequence of (k, j, i), optional
        Seed voxels of the seed correlation maps ``seed_<n>_correlation``.
    seed_labels : numpy.ndarray, optional
        ``(k, j, i)`` integer labels of seed regions, named by ``seed_region_names``; each region's
        mean series is the seed of a map ``seed_<name>_correlation``.
    reference_signal : numpy.ndarray, optional
        ``(T,)`` lag reference (default: the global mean signal).
    white_matter_mask, csf_mask : numpy.ndarray, optional
        ``(k, j, i)`` bool masks whose mean signals are nuisance regressors.
    progress : callable(fraction, message), optional
        Progress and cancellation.

    Returns
    -------
    FMRIAnalysis
    """
    progress = as_progress(progress)
    check_parameters(parameters)
    tr = check_tr(tr_s)
    data, varying = _finite_series(series)
    grid, n_frames = data.shape[:3], data.shape[3]
    if mask is None:
        mask = automatic_mask(np.where(np.isfinite(series).all(axis=-1), data.mean(axis=-1), np.nan))
    mask = _check_grid_array(mask, grid, "mask").astype(bool)
    voxels = mask & varying
    if not voxels.any():
        raise InputError("no voxel inside the mask varies over time: check the mask and the input")
    regions = build_regions(_check_grid_array(labels, grid, "labelmap"), region_names, voxels)
    seed_regions = build_regions(
        _check_grid_array(seed_labels, grid, "seed-region labelmap"), seed_region_names, voxels, "seed region"
    )
    seed_rows_by_name = seed_series_rows(
        seed_voxel_rows(seeds or (), voxels, spacing_kji, parameters.seed_radius_mm), seed_regions
    )
    if events is not None:
        check_glm_events(events, n_frames, tr)
    features, skipped = select_features(
        parameters.feature_list(),
        unavailable_features(
            events, n_frames, tr, 0 if regions is None else regions.ids.size, len(seed_rows_by_name)
        ),
    )
    prepared = preprocess(
        data,
        voxels,
        tr,
        spacing_kji,
        parameters,
        features,
        motion=_check_frame_array(motion, n_frames, 6, "motion parameter table"),
        slice_timing=slice_timing,
        confounds=_check_frame_array(confounds, n_frames, None, "confounds table"),
        confound_names=tuple(confound_names or ()),
        white_matter_mask=_check_grid_array(white_matter_mask, grid, "white-matter mask"),
        csf_mask=_check_grid_array(csf_mask, grid, "CSF mask"),
        progress=progress.subrange(0.0, 0.3),
    )
    prepared.events, prepared.regions, prepared.seeds = events, regions, seed_rows_by_name
    prepared.reference_signal = _check_frame_array(reference_signal, n_frames, None, "lag reference signal")
    analysis = FMRIAnalysis(
        mask=mask,
        features=features,
        skipped=skipped,
        tr_s=tr,
        reference_time_s=prepared.reference_time_s,
        censored=prepared.censored,
        region_names=regions.names if regions is not None else (),
    )
    if prepared.motion is not None:
        analysis.tables["motion"] = _motion_table(prepared.motion, prepared.frame_times_s)
    if prepared.cleanup:
        analysis.tables["ica_cleanup"] = cleanup_table(prepared.cleanup)
        analysis.summary["ica_cleanup"] = cleanup_summary(prepared.cleanup)
    for number, name in enumerate(features):
        progress(0.3 + 0.7 * number / len(features), name)
        result = FEATURE_FUNCTIONS[name](prepared, parameters)
        _merge(analysis, result)
        analysis.summary[name] = result.summary
    _finish_maps(analysis, mask)
    progress(1.0, "done")
    return analysis


def _finish_maps(analysis: FMRIAnalysis, mask: np.ndarray) -> None:
    """NaN outside the mask, units of the fixed-name maps, NaN counts inside the mask."""
    for name, values in analysis.maps.items():
        analysis.maps[name] = np.where(mask, values, np.nan)
        analysis.units.setdefault(name, MAP_UNITS.get(name, ""))
        analysis.nan_voxels[name] = int(np.count_nonzero(np.isnan(values) & mask))
