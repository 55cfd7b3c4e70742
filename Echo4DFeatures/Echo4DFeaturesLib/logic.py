"""Echo 4D Features on MRML nodes: an echo sequence in; feature, phase and left-ventricle sequences out.

The Slicer panel, the Python console and the ``spatiotemporal echo`` command all call
:func:`run_echo`; the analysis itself is :func:`Echo4DFeaturesLib.pipeline.analyse_echo`.

Nodes created, all under a subject-hierarchy folder ``<input> echo``:

- ``<input> feature asymmetry`` and ``<input> local phase``: volume sequences;
- ``<input> LV``: a labelmap volume sequence, 1 = cavity (blood pool);
- the three join the input's sequence browser (one is created for the input if it has none) with
  the input's own index values, so that every item shows the same frame; their proxy volumes go
  into the folder too;
- ``<input> LV at end-diastole``: a segmentation with the segment ``LV cavity`` of the end-diastolic
  frame (to edit, measure or export);
- ``<input> LV volume``: a table with columns ``frame``, ``time_s``, ``volume_ml``, and
  ``<input> LV volume curve``: its plot chart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import slicer
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.nodes import (
    add_plot_chart,
    add_segmentation,
    add_table,
    add_to_folder,
    scene_rollback,
)
from SpatioTemporalCommonLib.progress import Progress, as_progress
from SpatioTemporalCommonLib.sequences import (
    add_volume_sequence,
    index_values,
    series_from_sequence_node,
    show_in_browser,
)
from SpatioTemporalCommonLib.series import Series, validate_series

from .lv_segmentation import check_seed_in_cavity
from .parameters import EchoParameters, check_parameters
from .pipeline import EchoAnalysis, analyse_echo

CAVITY_SEGMENT = "LV cavity"


@dataclass
class EchoResult:
    """Nodes created by :func:`run_echo` and the analysis behind them.

    Attributes
    ----------
    seed_ras : tuple of float
        The seed used (given or automatic), RAS mm.
    """

    analysis: EchoAnalysis
    feature_asymmetry_sequence: object
    local_phase_sequence: object
    lv_sequence: object
    lv_segmentation: object
    volume_table: object
    volume_chart: object
    browser: object
    folder_item: int
    seed_ras: tuple[float, float, float]


@dataclass(frozen=True)
class FrameIndex:
    """How the output sequences are indexed: values, name, unit and type of the sequence index."""

    values: list[str]
    name: str
    unit: str
    numeric: bool

    @classmethod
    def of_sequence(cls, sequence_node) -> FrameIndex:
        """The index of an existing sequence (outputs then synchronise with it item by item)."""
        return cls(
            index_values(sequence_node),
            sequence_node.GetIndexName(),
            sequence_node.GetIndexUnit(),
            sequence_node.GetIndexType() == slicer.vtkMRMLSequenceNode.NumericIndex,
        )

    def apply(self, sequence_node) -> None:
        """Give ``sequence_node`` this index's name, unit and type (its values are set on creation)."""
        sequence_node.SetIndexName(self.name)
        sequence_node.SetIndexUnit(self.unit)
        sequence_node.SetIndexType(
            slicer.vtkMRMLSequenceNode.NumericIndex if self.numeric else slicer.vtkMRMLSequenceNode.TextIndex
        )


def input_series(sequence_node) -> Series:
    """The frames of an echo sequence, refusing anything that is not a sequence of volumes."""
    if sequence_node is not None and not sequence_node.IsA("vtkMRMLSequenceNode"):
        raise InputError(
            f"'{sequence_node.GetName()}' is a single 3D volume, not a sequence: choose a volume "
            "sequence (3D + time) covering the cardiac cycle"
        )
    return series_from_sequence_node(sequence_node)


def seed_kji_from_ras(geometry: VolumeGeometry, seed_ras: Sequence[float]) -> tuple[float, float, float]:
    """Voxel coordinates ``(k, j, i)`` of a RAS point (mm), refusing points outside the volume.

    A point inside the volume but less than half a voxel from its faces is moved onto the nearest
    voxel centre.
    """
    try:
        point = np.asarray(seed_ras, dtype=float).ravel()
    except (TypeError, ValueError):
        point = np.empty(0)
    if point.size != 3 or not np.isfinite(point).all():
        raise InputError(f"seed {seed_ras!r} is not a point R, A, S: give three numbers in mm")
    kji = geometry.ras_to_kji(point)
    if not geometry.contains_kji(kji):
        raise InputError(
            f"seed R, A, S = ({_format_point(point)}) mm lies outside the volume (voxel i, j, k = "
            f"{_format_point(kji[::-1])} of {' x '.join(str(n) for n in geometry.shape[::-1])}): "
            "place the seed inside the image, in the left-ventricular cavity"
        )
    return tuple(float(v) for v in np.clip(kji, 0, np.array(geometry.shape) - 1))


def _format_point(values: np.ndarray) -> str:
    """Coordinates to one decimal, without negative zeros."""
    return ", ".join(f"{v:.1f}" for v in np.round(values, 1) + 0.0)


def seed_kji_in_cavity(series: Series, seed_ras: Sequence[float]) -> tuple[float, float, float]:
    """Voxel coordinates ``(k, j, i)`` of a seed given in RAS mm; refused outside the volume or in tissue."""
    seed_kji = seed_kji_from_ras(series.geometry, seed_ras)
    try:
        check_seed_in_cavity(series.voxel_series(), series.geometry.spacing_kji, seed_kji)
    except InputError as error:
        raise InputError(
            f"seed R, A, S = ({_format_point(np.asarray(seed_ras, float))}) mm: {error}"
        ) from None
    return seed_kji


def run_echo(
    context: MRMLContext,
    sequence_node,
    parameters: EchoParameters,
    *,
    seed_ras: Sequence[float] | None = None,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> EchoResult:
    """Analyse an echo sequence and add the results to the scene (see the module notes for the nodes).

    Parameters
    ----------
    context : MRMLContext
        Scene and logics.
    sequence_node : vtkMRMLSequenceNode
        The 3D+t echo series (blood dark), at least 3 frames on one grid.
    parameters : EchoParameters
        Analysis parameters (validated here).
    seed_ras : sequence of 3 float, optional
        A point in the left-ventricular cavity, RAS mm (e.g. a markup's position); None finds the
        cavity automatically.
    progress : callable(fraction, message), optional
        Progress and cancellation; a cancelled or failed run leaves the scene unchanged.
    """
    progress = as_progress(progress)
    check_parameters(parameters)
    series = input_series(sequence_node)
    index = FrameIndex.of_sequence(sequence_node)
    validate_series(series, require_times=False)
    seed_kji = None if seed_ras is None else seed_kji_in_cavity(series, seed_ras)
    analysis = analyse_echo(
        series.voxel_series(),
        series.geometry.spacing_kji,
        series.times_s,
        parameters,
        seed_kji=seed_kji,
        progress=progress.subrange(0.0, 0.95),
    )
    with scene_rollback(context):
        result = _add_result_nodes(context, sequence_node, series, analysis, index)
    indices = analysis.indices
    progress(1.0, f"EDV {indices.edv_ml:.1f} ml, ESV {indices.esv_ml:.1f} ml, EF {indices.ef_percent:.1f} %")
    return result


def _add_frame_sequence(
    context: MRMLContext,
    frames_last: np.ndarray,
    times_s: np.ndarray,
    geometry: VolumeGeometry,
    name: str,
    index: FrameIndex,
    *,
    labelmap: bool = False,
):
    """A volume sequence of ``frames_last (k, j, i, T)`` indexed by ``index``."""
    sequence = add_volume_sequence(
        context,
        np.moveaxis(frames_last, -1, 0),
        times_s,
        geometry,
        name,
        labelmap=labelmap,
        index_values=index.values,
    )
    index.apply(sequence)
    return sequence


def _join_browser(context: MRMLContext, input_sequence, sequences: Sequence) -> tuple[object, list]:
    """Add ``sequences`` to the input's browser (created if missing); return it and their proxy nodes."""
    browser = context.logic("Sequences").GetFirstBrowserNodeForSequenceNode(input_sequence)
    if browser is None:
        browser = show_in_browser(context, input_sequence)
    for sequence in sequences:
        show_in_browser(context, sequence, reference_sequence=input_sequence)
    return browser, [browser.GetProxyNode(sequence) for sequence in sequences]


def _volume_table(context: MRMLContext, name: str, analysis: EchoAnalysis):
    """The volume curve as a table and a plot chart (against time when the frame times are known)."""
    table = add_table(
        context,
        {
            "frame": np.arange(analysis.volumes_ml.size),
            "time_s": analysis.times_s,
            "volume_ml": analysis.volumes_ml,
        },
        f"{name} LV volume",
    )
    timed = bool(np.isfinite(analysis.times_s).all())
    chart = add_plot_chart(
        context,
        table,
        "time_s" if timed else "frame",
        ["volume_ml"],
        f"{name} LV volume curve",
        x_title="time (s)" if timed else "frame",
        y_title="LV cavity volume (ml)",
    )
    return table, chart


def _add_result_nodes(
    context: MRMLContext, input_sequence, series: Series, analysis: EchoAnalysis, index: FrameIndex
) -> EchoResult:
    name, geometry, times = series.name, series.geometry, analysis.times_s
    fa = _add_frame_sequence(
        context, analysis.feature_asymmetry, times, geometry, f"{name} feature asymmetry", index
    )
    phase = _add_frame_sequence(context, analysis.local_phase, times, geometry, f"{name} local phase", index)
    lv = _add_frame_sequence(context, analysis.labels, times, geometry, f"{name} LV", index, labelmap=True)
    browser, proxies = _join_browser(context, input_sequence, [fa, phase, lv])
    ed_labels = analysis.labels[..., analysis.indices.ed_frame]
    segmentation = add_segmentation(
        context, ed_labels, geometry, f"{name} LV at end-diastole", {1: CAVITY_SEGMENT}
    )
    table, chart = _volume_table(context, name, analysis)
    folder = add_to_folder(context, f"{name} echo", [fa, phase, lv, *proxies, segmentation, table, chart])
    return EchoResult(
        analysis,
        fa,
        phase,
        lv,
        segmentation,
        table,
        chart,
        browser,
        folder,
        geometry.kji_to_ras(analysis.seed_kji),
    )
