"""fMRI Dynamics on MRML nodes: sequence in; maps, ICA components, tables and plots out.

The Slicer panel, the Python console and the ``spatiotemporal fmri`` command all call
:func:`run_fmri`; the analysis itself is :func:`FMRIDynamicsLib.pipeline.analyse_fmri`. This file
also reads the side inputs that are not images: the confounds table, the slice timing and the lag
reference signal (the events file is read by :func:`FMRIDynamicsLib.glm.read_events_tsv`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.frame_times import MAX_PLAUSIBLE_TR_S
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.nodes import (
    add_plot_chart,
    add_scalar_volume,
    add_table,
    add_to_folder,
    scene_rollback,
)
from SpatioTemporalCommonLib.progress import Progress, as_progress
from SpatioTemporalCommonLib.regions import region_labels
from SpatioTemporalCommonLib.sequences import add_volume_sequence, series_from_sequence_node, show_in_browser
from SpatioTemporalCommonLib.series import Series, validate_series

from .glm import read_events_tsv
from .parameters import MIN_TR_S, FMRIParameters, check_parameters
from .pipeline import FMRIAnalysis, SliceTiming, analyse_fmri

FMRIPREP_MOTION_COLUMNS = ("rot_x", "rot_y", "rot_z", "trans_x", "trans_y", "trans_z")
"""Motion columns of a confounds table (fMRIPrep names, radians and mm), in FSL order."""

SLICE_AXES = {"k": 0, "j": 1, "i": 2}
"""Array axis of each BIDS ``SliceEncodingDirection``."""

TIMING_MAPS = (
    "lag",
    "lag_projection",
    "hrf_peak_latency",
    "hrf_fwhm",
    "mi_preferred_time",
    "int_acf",
    "int_hwhm",
)
SIGNED_MAP_SUFFIXES = ("_z", "_correlation")
TIMING_COLOR = "vtkMRMLColorTableNodeRainbow"
SIGNED_COLOR = "vtkMRMLProceduralColorNodeRedGreenBlue"

CHARTS = {
    "qc": ("time_s", ("fd_mm", "dvars_standardised"), "framewise displacement (mm), standardised DVARS"),
    "motion": (
        "time_s",
        ("rot_x_rad", "rot_y_rad", "rot_z_rad", "trans_x_mm", "trans_y_mm", "trans_z_mm"),
        "rotation (rad), translation (mm)",
    ),
    "time_courses": ("time_s", None, "band-passed region mean (signal units)"),
    "ica_time_courses": ("time_s", None, "component time course (signal units)"),
    "lag_reference": ("time_s", ("reference",), "band-limited reference (signal units)"),
}
"""Charts made from the tables: x column, y columns (None: every other column) and y-axis title."""


@dataclass(frozen=True)
class Confounds:
    """Nuisance regressors read from a confounds table.

    Attributes
    ----------
    values : numpy.ndarray
        ``(T, n)`` regressors.
    names : tuple of str
        Column names.
    motion : numpy.ndarray or None
        ``(T, 6)`` motion parameters in FSL order when the table has the six fMRIPrep motion columns.
    """

    values: np.ndarray
    names: tuple[str, ...]
    motion: np.ndarray | None


@dataclass
class FMRIResult:
    """Nodes created by :func:`run_fmri` and the analysis behind them."""

    analysis: FMRIAnalysis
    tr_source: str
    map_nodes: dict
    ica_sequence: object
    ica_browser: object
    table_nodes: dict
    chart_nodes: dict
    folder_item: int


# --------------------------------------------------------------------------------------------------
# Side inputs
# --------------------------------------------------------------------------------------------------
def series_with_physical_times(sequence_node) -> Series:
    """The series of a sequence, with its frame times dropped when the index has no time unit.

    A numeric index without a unit (e.g. frame numbers) would otherwise be read as seconds; for fMRI
    the repetition time must not be guessed.
    """
    series = series_from_sequence_node(sequence_node)
    if series.times_s is not None and not (sequence_node.GetIndexUnit() or "").strip():
        series.times_s = None
        series.time_source = f"the sequence index '{sequence_node.GetIndexName()}' has no time unit"
    return series


def repetition_time(series: Series, tr_s: float | None) -> tuple[float, str]:
    """The repetition time (s) and where it came from: ``tr_s`` if given, else the uniform frame step."""
    if tr_s is not None:
        return float(tr_s), "given repetition time"
    if series.times_s is None:
        raise InputError(
            f"'{series.name}' carries no repetition time ({series.time_source}): give it with --tr S"
        )
    steps = np.diff(series.times_s)
    tr = float(np.median(steps))
    if not np.allclose(steps, tr, rtol=1e-3, atol=1e-6):
        raise InputError(
            f"the frame times of '{series.name}' are not evenly spaced (steps from {steps.min():g} to "
            f"{steps.max():g} s): fMRI features need one repetition time; give it with --tr S"
        )
    if not MIN_TR_S <= tr <= MAX_PLAUSIBLE_TR_S:
        raise InputError(
            f"the repetition time {tr:g} s of '{series.name}' ({series.time_source}) is not plausible: "
            "give the TR in seconds with --tr S"
        )
    return tr, series.time_source


def _numbers(path: Path, what: str) -> np.ndarray:
    """Numbers of a text file separated by white space, commas or new lines; '#' starts a comment."""
    text = " ".join(line.split("#", 1)[0] for line in path.read_text(errors="replace").splitlines())
    try:
        values = np.array([float(token) for token in text.replace(",", " ").split()])
    except ValueError as error:
        raise InputError(
            f"{what} '{path.name}' holds text that is not a number ({error}): write one number per line"
        ) from None
    if values.size == 0:
        raise InputError(f"{what} '{path.name}' is empty: write one number per line")
    return values


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist: check the path")
    return path


def read_confounds_tsv(path: str | Path) -> Confounds:
    """Read a tab-separated confounds table: a header row, then one row per frame.

    Every column becomes a nuisance regressor (give a table with only the confounds to remove).
    ``n/a`` cells (fMRIPrep writes them in the first row of derivative columns) take the mean of
    their column's other values.
    """
    path = _existing_file(path, "confounds file")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if len(rows) < 2 or not rows[0]:
        raise InputError(
            f"confounds file '{path.name}' needs a header row and one row per frame (tab-separated)"
        )
    names = tuple(name.strip() for name in rows[0])
    columns = []
    for index, name in enumerate(names):
        column = np.array(
            [_confound_value(row, index, name, number, path) for number, row in enumerate(rows[1:], 2)]
        )
        if not np.any(np.isfinite(column)):
            raise InputError(f"confounds column '{name}' of '{path.name}' has no number: remove that column")
        columns.append(np.where(np.isfinite(column), column, np.nanmean(column)))
    values = np.stack(columns, axis=1)
    motion = (
        values[:, [names.index(name) for name in FMRIPREP_MOTION_COLUMNS]]
        if set(FMRIPREP_MOTION_COLUMNS) <= set(names)
        else None
    )
    return Confounds(values, names, motion)


def _confound_value(row: list[str], index: int, name: str, line: int, path: Path) -> float:
    if index >= len(row):
        raise InputError(f"confounds file '{path.name}' line {line} has fewer columns than its header")
    text = row[index].strip()
    if text == "n/a":
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"confounds file '{path.name}' line {line}: {name} '{text}' is not a number"
        ) from None


def read_slice_timing(path: str | Path) -> SliceTiming:
    """Slice acquisition times: a BIDS JSON sidecar (``SliceTiming``, ``SliceEncodingDirection``) or a list.

    A plain text list gives one time in s per slice along k. With a negative encoding direction
    (``k-``) the first time belongs to the last slice.
    """
    path = _existing_file(path, "slice-timing file")
    if path.suffix.lower() != ".json":
        return SliceTiming(_numbers(path, "slice-timing file"), SLICE_AXES["k"])
    try:
        sidecar = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(
            f"slice-timing file '{path.name}' is not valid JSON ({error.msg}): check the file"
        ) from None
    if "SliceTiming" not in sidecar:
        raise InputError(f"'{path.name}' has no SliceTiming entry: give the BIDS sidecar of the BOLD series")
    direction = str(sidecar.get("SliceEncodingDirection", "k"))
    if direction.rstrip("-") not in SLICE_AXES:
        raise InputError(
            f"SliceEncodingDirection '{direction}' of '{path.name}' is not i, j or k (optionally with -)"
        )
    times = np.asarray(sidecar["SliceTiming"], dtype=float)
    return SliceTiming(times[::-1] if direction.endswith("-") else times, SLICE_AXES[direction.rstrip("-")])


def read_reference_signal(path: str | Path) -> np.ndarray:
    """The lag reference regressor: one value per frame in a text file."""
    return _numbers(_existing_file(path, "lag reference file"), "lag reference file")


def ras_to_voxel(geometry: VolumeGeometry, ras_mm: Sequence[float], number: int) -> tuple[int, int, int]:
    """The voxel ``(k, j, i)`` nearest to a RAS point (mm); refuses points outside the grid."""
    kji = geometry.ras_to_kji(ras_mm)
    if not geometry.contains_kji(kji):
        raise InputError(
            f"seed {number} at RAS ({', '.join(f'{v:g}' for v in ras_mm)}) mm lies outside the image "
            f"(voxel i, j, k = {', '.join(f'{v:.1f}' for v in kji[::-1])}): give a point inside the fMRI volume"
        )
    index = np.clip(np.rint(kji).astype(int), 0, np.array(geometry.shape) - 1)
    return int(index[0]), int(index[1]), int(index[2])


# --------------------------------------------------------------------------------------------------
# The logic
# --------------------------------------------------------------------------------------------------
def run_fmri(
    context: MRMLContext,
    sequence_node,
    parameters: FMRIParameters,
    *,
    mask_node=None,
    labels_node=None,
    events_path: str | Path | None = None,
    confounds_path: str | Path | None = None,
    slice_timing_path: str | Path | None = None,
    white_matter_node=None,
    csf_node=None,
    seeds_ras: Sequence[Sequence[float]] = (),
    seed_regions_node=None,
    resample_masks: bool = False,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> FMRIResult:
    """Analyse a BOLD series and add the results to the scene.

    Parameters
    ----------
    context : MRMLContext
        Scene and logics.
    sequence_node : vtkMRMLSequenceNode
        The BOLD series.
    parameters : FMRIParameters
        Analysis parameters (validated here); ``parameters.reference`` is ``global`` or a file.
    mask_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Brain mask (default: automatic from the mean image).
    labels_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Regions for connectivity, dynamic connectivity and region delays.
    events_path, confounds_path, slice_timing_path : str or Path, optional
        BIDS events.tsv, confounds table (TSV), slice timing (BIDS JSON or list).
    white_matter_node, csf_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Tissue masks whose mean signals are nuisance regressors.
    seeds_ras : sequence of (R, A, S)
        Seed points (mm) of the seed correlation maps ``seed_<n>_correlation``.
    seed_regions_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Seed regions, one per label or segment: each region's mean series is the seed of a map
        ``seed_<name>_correlation`` (the segment name, or ``label_<n>`` for a label volume, reduced
        to letters, digits, '_' and '-').
    resample_masks : bool
        Resample masks on other grids by nearest neighbour instead of refusing them.
    progress : callable(fraction, message), optional
        Progress and cancellation; a cancelled run leaves the scene unchanged.
    """
    progress = as_progress(progress)
    check_parameters(parameters)
    series = series_with_physical_times(sequence_node)
    validate_series(series, require_times=False)
    tr, tr_source = repetition_time(series, parameters.tr_s)
    geometry = series.geometry

    def labels_of(node, what: str):
        return (
            region_labels(context, node, geometry, what=what, resample=resample_masks)
            if node is not None
            else None
        )

    mask, regions = labels_of(mask_node, "mask"), labels_of(labels_node, "labelmap")
    seed_regions = labels_of(seed_regions_node, "seed-region labelmap")
    white_matter, csf = labels_of(white_matter_node, "white-matter mask"), labels_of(csf_node, "CSF mask")
    confounds = read_confounds_tsv(confounds_path) if confounds_path is not None else None
    analysis = analyse_fmri(
        series.voxel_series(),
        tr,
        geometry.spacing_kji,
        parameters,
        mask=mask.mask if mask is not None else None,
        events=read_events_tsv(events_path) if events_path is not None else None,
        confounds=confounds.values if confounds is not None else None,
        confound_names=confounds.names if confounds is not None else None,
        motion=confounds.motion if confounds is not None else None,
        slice_timing=read_slice_timing(slice_timing_path) if slice_timing_path is not None else None,
        labels=regions.labels if regions is not None else None,
        region_names=regions.names if regions is not None else None,
        seeds=[ras_to_voxel(geometry, point, number) for number, point in enumerate(seeds_ras, start=1)],
        seed_labels=seed_regions.labels if seed_regions is not None else None,
        seed_region_names=seed_regions.names if seed_regions is not None else None,
        reference_signal=None
        if parameters.reference == "global"
        else read_reference_signal(parameters.reference),
        white_matter_mask=white_matter.mask if white_matter is not None else None,
        csf_mask=csf.mask if csf is not None else None,
        progress=progress.subrange(0.0, 0.95),
    )
    with scene_rollback(context):
        result = _add_result_nodes(context, series.name, geometry, analysis, tr_source)
    progress(1.0, f"{len(analysis.features)} features computed")
    return result


def map_color(name: str) -> str:
    """Colour table of a map: rainbow for times, red-green-blue for signed maps, grey otherwise."""
    if name in TIMING_MAPS:
        return TIMING_COLOR
    if name.endswith(SIGNED_MAP_SUFFIXES):
        return SIGNED_COLOR
    return "vtkMRMLColorTableNodeGrey"


def _add_ica_sequence(context: MRMLContext, name: str, geometry: VolumeGeometry, components: np.ndarray):
    """The ICA maps as a sequence indexed by component number, in a browser of their own."""
    numbers = np.arange(1, components.shape[0] + 1)
    sequence = add_volume_sequence(
        context,
        components.astype(np.float32),
        numbers,
        geometry,
        f"{name} ica_components",
        index_values=[str(n) for n in numbers],
    )
    sequence.SetIndexName("component")
    sequence.SetIndexUnit("")
    return sequence, show_in_browser(context, sequence)


def _add_charts(context: MRMLContext, name: str, table_nodes: dict, tables: dict) -> dict:
    """One chart per table that has a time axis (see :data:`CHARTS`)."""
    charts = {}
    for table_name, (x_column, y_columns, y_title) in CHARTS.items():
        if table_name not in tables:
            continue
        columns = y_columns or tuple(column for column in tables[table_name] if column != x_column)
        charts[table_name] = add_plot_chart(
            context,
            table_nodes[table_name],
            x_column,
            columns,
            f"{name} {table_name}",
            x_title="time (s)",
            y_title=y_title,
        )
    return charts


def _add_result_nodes(
    context: MRMLContext, name: str, geometry: VolumeGeometry, analysis: FMRIAnalysis, tr_source: str
) -> FMRIResult:
    map_nodes = {
        map_name: add_scalar_volume(
            context,
            np.asarray(values, np.float32),
            geometry,
            f"{name} {map_name}",
            color_node_id=map_color(map_name),
        )
        for map_name, values in analysis.maps.items()
    }
    table_nodes = {
        table_name: add_table(context, columns, f"{name} {table_name}")
        for table_name, columns in analysis.tables.items()
    }
    chart_nodes = _add_charts(context, name, table_nodes, analysis.tables)
    sequence = browser = None
    if analysis.ica_components is not None:
        sequence, browser = _add_ica_sequence(context, name, geometry, analysis.ica_components)
    members = [
        *map_nodes.values(),
        *table_nodes.values(),
        *chart_nodes.values(),
        *([sequence] if sequence else []),
    ]
    folder = add_to_folder(context, f"{name} fMRI", members)
    return FMRIResult(analysis, tr_source, map_nodes, sequence, browser, table_nodes, chart_nodes, folder)
