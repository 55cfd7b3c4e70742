"""Tumor Segmentation 4D on MRML nodes: a DCE series (or phase volumes with their times) in; a tumour
segmentation, its volume statistics and an optional probability map out.

The Slicer panel, the Python console and ``spatiotemporal segment`` all call :func:`run_segmentation`
(or :func:`run_segmentation_on_volumes`); the segmentation itself is
:func:`TumorSegmentation4DLib.inference.segment_study`.

Acquisition times
-----------------
The network is conditioned on the time of every phase in seconds after contrast injection. The
injection is taken to happen at the acquisition of the pre-contrast phase (the first index of
``phases``, phase 0 by default): the time of every phase is its frame time minus the frame time of
the pre-contrast phase. This is the convention the network is trained with: the shipped weights on
synthetic studies whose pre-contrast phase is at 0 s and whose first post-contrast phase follows
60-120 s later (:func:`TumorSegmentation4DLib.phantom.random_phase_times`), and
``spatiotemporal train-segmentation`` counts the times of every case from its first phase in the same
way. Clock times (e.g. DICOM acquisition times), times from the start of the dynamic scan and times
after injection therefore give the same result. A sequence whose index is not a time with a unit
(text, or bare frame numbers) is refused, because the times change the result.

Nodes created, under a subject-hierarchy folder ``<input> tumor segmentation``:

- ``<input> tumor``: a segmentation with one segment ``tumor``, on exactly the input's voxel grid
  (also when no tumour is found);
- ``<input> tumor statistics``: a table with one row and the columns ``segment``, ``voxels``,
  ``volume_ml``, ``components`` (26-connected) and ``largest_component_ml``;
- ``<input> tumor probability``: the tumour probability (0 to 1) as a scalar volume, when
  ``parameters.probability`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer.util
import vtk
from scipy import ndimage
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.nodes import (
    add_labelmap_volume,
    add_scalar_volume,
    add_table,
    add_to_folder,
    scene_rollback,
)
from SpatioTemporalCommonLib.parameters import validate_parameters
from SpatioTemporalCommonLib.progress import Progress, as_progress
from SpatioTemporalCommonLib.sequences import series_from_sequence_node, volume_geometry

from .inference import DEFAULT_ROI_SIZE, SegmentationResult, segment_study
from .network import TemporalMambaUNet
from .parameters import SegmentationParameters
from .preprocessing import phase_triplets, validate_study
from .weights import SHIPPED_WEIGHTS, load_network

TUMOR_SEGMENT = "tumor"
TUMOR_COLOR = (0.85, 0.2, 0.2)
MM3_PER_ML = 1000.0
MISSING_SHIPPED_WEIGHTS = (
    f"the shipped weights {SHIPPED_WEIGHTS.name} are not installed in {SHIPPED_WEIGHTS.parent}: train them "
    "from a source checkout with 'python Utilities/train_segmentation_weights.py', or train a network on "
    "your own data with 'spatiotemporal train-segmentation MANIFEST.csv --out DIR' and give its "
    "weights.safetensors (--weights FILE on the command line, the weights file in the Slicer panel)"
)


@dataclass(frozen=True)
class TumorStatistics:
    """Size of a tumour label.

    Attributes
    ----------
    voxels : int
        Tumour voxels.
    volume_ml : float
        Tumour volume, ml.
    components : int
        Number of 26-connected components.
    largest_component_ml : float
        Volume of the largest component, ml (0 without tumour).
    """

    voxels: int
    volume_ml: float
    components: int
    largest_component_ml: float


@dataclass
class TumorSegmentationResult:
    """Nodes created by :func:`run_segmentation` and the segmentation behind them.

    Attributes
    ----------
    analysis : SegmentationResult
        Label, probability, device used and the phase samples averaged (on the input grid).
    statistics : TumorStatistics
        Tumour volume and components.
    times_after_injection_s : numpy.ndarray
        The time of every phase given to the network, s after injection.
    geometry : VolumeGeometry
        The input's voxel grid, which every output shares.
    weights_path : pathlib.Path
        The weights file used.
    segmentation_node, statistics_table : vtkMRMLNode
        The segmentation (segment ``tumor``) and its statistics table.
    probability_node : vtkMRMLScalarVolumeNode or None
        The probability map, when asked for.
    folder_item : int
        Subject-hierarchy folder holding the nodes.
    notes : list of str
        Messages for the user (a GPU out-of-memory fallback, preprocessing that differs from the
        training of the weights).
    """

    analysis: SegmentationResult
    statistics: TumorStatistics
    times_after_injection_s: np.ndarray
    geometry: VolumeGeometry
    weights_path: Path
    segmentation_node: object
    statistics_table: object
    probability_node: object | None
    folder_item: int
    notes: list[str] = field(default_factory=list)


def tumor_statistics(label: np.ndarray, spacing_kji: Sequence[float]) -> TumorStatistics:
    """Voxels, volume and 26-connected components of a tumour label.

    Parameters
    ----------
    label : numpy.ndarray
        ``(k, j, i)`` label, non-zero = tumour.
    spacing_kji : sequence of float
        Voxel spacing ``(sk, sj, si)`` in mm.

    Returns
    -------
    TumorStatistics
        Counts and volumes in ml.
    """
    voxel_ml = float(np.prod(spacing_kji)) / MM3_PER_ML
    components, count = ndimage.label(np.asarray(label) > 0, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel())[1:]
    return TumorStatistics(
        voxels=int(sizes.sum()),
        volume_ml=float(sizes.sum()) * voxel_ml,
        components=int(count),
        largest_component_ml=float(sizes.max(initial=0)) * voxel_ml,
    )


def times_after_injection(times_s: np.ndarray, pre_contrast_index: int) -> np.ndarray:
    """Phase times counted from the pre-contrast phase, taken as the injection (see the module notes).

    Parameters
    ----------
    times_s : numpy.ndarray
        Frame time of every phase, s (any origin).
    pre_contrast_index : int
        Index of the pre-contrast phase.

    Returns
    -------
    numpy.ndarray
        Times in s after injection; the pre-contrast phase is at 0 s.
    """
    times = np.asarray(times_s, dtype=float)
    return times - times[pre_contrast_index]


def sequence_times_s(sequence_node, times_s: np.ndarray | None, time_source: str) -> np.ndarray:
    """Frame times of a sequence, refusing an index that is not a time with a unit.

    Parameters
    ----------
    sequence_node : vtkMRMLSequenceNode
        The input sequence.
    times_s, time_source
        Frame times (s) and their source as read by ``series_from_sequence_node``.

    Raises
    ------
    InputError
        When the index is text, has no unit or is not a time.
    """
    unit = (sequence_node.GetIndexUnit() or "").strip()
    if times_s is None or not unit:
        reason = time_source if times_s is None else f"its index '{sequence_node.GetIndexName()}' has no unit"
        raise InputError(
            f"'{sequence_node.GetName()}' carries no acquisition times ({reason}): give the time of every "
            "phase in seconds (on the command line with --times FILE, one time per line; in Slicer, a "
            "sequence indexed by time with the unit s)"
        )
    return np.asarray(times_s, dtype=float)


def shipped_weights() -> Path:
    """The shipped weights file; ``InputError`` saying how to train it when it is not installed."""
    if not SHIPPED_WEIGHTS.is_file():
        raise InputError(MISSING_SHIPPED_WEIGHTS)
    return SHIPPED_WEIGHTS


def load_segmentation_network(weights_path: str | Path | None = None) -> tuple[TemporalMambaUNet, dict, Path]:
    """The network of a weights file (default: the shipped weights) with its metadata and path.

    Raises
    ------
    InputError
        When the shipped weights are not installed (the message says how to train them), or the file
        is unreadable, carries code, or belongs to another architecture.
    """
    path = shipped_weights() if weights_path is None else Path(weights_path)
    network, metadata = load_network(path)
    return network, metadata, path


def _preprocessing_notes(parameters: SegmentationParameters, metadata: dict) -> list[str]:
    """A note when N4 correction differs from how the weights were trained (recorded in their metadata)."""
    trained_with_n4 = (metadata.get("training") or {}).get("n4")
    if trained_with_n4 is None or bool(trained_with_n4) == parameters.n4:
        return []
    done, trained = ("with", "without") if parameters.n4 else ("without", "with")
    option, panel = ("--no-n4", "unticking") if parameters.n4 else ("--n4", "ticking")
    return [
        f"segmented {done} N4 bias-field correction, but the weights were trained {trained} it; "
        f"{option} on the command line, or {panel} N4 in the panel, matches their training"
    ]


def run_segmentation(
    context: MRMLContext,
    sequence_node,
    parameters: SegmentationParameters,
    *,
    weights_path: str | Path | None = None,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> TumorSegmentationResult:
    """Segment the tumour of a DCE sequence and add the results to the scene (see the module notes).

    Parameters
    ----------
    context : MRMLContext
        Scene and logics.
    sequence_node : vtkMRMLSequenceNode
        The DCE series: at least 3 phases on one grid, indexed by acquisition time (s, ms or min).
    parameters : SegmentationParameters
        Phase selection, device and post-processing (validated here).
    weights_path : str or Path, optional
        Network weights (``.safetensors``, or a checkpoint of ``train-segmentation``); default the
        shipped weights.
    progress : callable(fraction, message), optional
        Progress and cancellation; a cancelled or failed run leaves the scene unchanged.

    Returns
    -------
    TumorSegmentationResult
        The nodes created, the statistics and the segmentation.

    Raises
    ------
    InputError
        Fewer than 3 phases, missing or non-increasing times, frames of different geometry, a bad
        phase selection, unusable weights, or an unavailable device.
    """
    series = series_from_sequence_node(sequence_node)
    times = sequence_times_s(sequence_node, series.times_s, series.time_source)
    return _segment(
        context, series.frames, times, series.geometry, series.name, parameters, weights_path, progress
    )


def run_segmentation_on_volumes(
    context: MRMLContext,
    volume_nodes: Sequence,
    times_s: Sequence[float],
    parameters: SegmentationParameters,
    *,
    weights_path: str | Path | None = None,
    progress: Progress | Callable[[float, str], None] | None = None,
) -> TumorSegmentationResult:
    """Segment the tumour from phase volumes and their acquisition times (see :func:`run_segmentation`).

    Parameters
    ----------
    volume_nodes : sequence of vtkMRMLScalarVolumeNode
        The phases in acquisition order (at least pre-contrast, first and one later post-contrast)
        on one grid; outputs are named after the first.
    times_s : sequence of float
        Acquisition time of every volume, s (counted from the pre-contrast phase, see the module notes).
    """
    frames, geometry = _volume_frames(volume_nodes)
    name = volume_nodes[0].GetName()
    return _segment(context, frames, times_s, geometry, name, parameters, weights_path, progress)


def _volume_frames(volume_nodes: Sequence) -> tuple[list[np.ndarray], VolumeGeometry]:
    """Arrays ``(k, j, i)`` of phase volumes and their one geometry; refuses other nodes and other grids."""
    if not volume_nodes:
        raise InputError(
            "no phase volumes given: give the pre-contrast, first and later post-contrast volumes"
        )
    frames, geometry = [], None
    for index, node in enumerate(volume_nodes):
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.GetImageData() is None:
            raise InputError(f"phase {index} is not a scalar volume: give one 3D volume per phase")
        node_geometry = volume_geometry(node)
        difference = None if geometry is None else geometry.mismatch(node_geometry)
        if difference:
            raise InputError(
                f"phase {index} '{node.GetName()}' has a different geometry from phase 0 ({difference}): "
                "resample all phases onto one grid"
            )
        geometry = geometry or node_geometry
        frames.append(slicer.util.arrayFromVolume(node))
    return frames, geometry


def _segment(
    context: MRMLContext,
    frames,
    times_s,
    geometry: VolumeGeometry,
    name: str,
    parameters: SegmentationParameters,
    weights_path: str | Path | None,
    progress: Progress | Callable[[float, str], None] | None,
) -> TumorSegmentationResult:
    """Check the study, run the network and add the result nodes."""
    progress = as_progress(progress)
    validate_parameters(parameters)
    phases, times = validate_study(frames, times_s)
    pre_contrast = phase_triplets(len(times), parameters.phases)[0][0]
    times = times_after_injection(times, pre_contrast)
    progress(0.0, "loading the network")
    network, metadata, path = load_segmentation_network(weights_path)
    analysis = segment_study(
        network,
        phases,
        times,
        geometry.spacing_kji,
        roi_size=parameters.roi_size or metadata.get("roi_size") or DEFAULT_ROI_SIZE,
        device=parameters.device,
        phase_selection=parameters.phases,
        n4=parameters.n4,
        keep_largest=parameters.keep_largest,
        threshold=parameters.threshold,
        overlap=parameters.overlap,
        progress=progress.subrange(0.02, 0.95),
    )
    statistics = tumor_statistics(analysis.label, geometry.spacing_kji)
    with scene_rollback(context):
        nodes = _add_result_nodes(context, analysis, statistics, geometry, name, parameters.probability)
    progress(
        1.0,
        f"tumour volume {statistics.volume_ml:.2f} ml in {statistics.components} component(s) "
        f"({analysis.device})",
    )
    return TumorSegmentationResult(
        analysis=analysis,
        statistics=statistics,
        times_after_injection_s=times,
        geometry=geometry,
        weights_path=path,
        notes=[*analysis.messages, *_preprocessing_notes(parameters, metadata)],
        **nodes,
    )


def add_tumor_segmentation(context: MRMLContext, label: np.ndarray, geometry: VolumeGeometry, name: str):
    """A segmentation with one segment ``tumor`` holding ``label > 0``, on exactly ``geometry``.

    The segment keeps the whole grid even when it is empty, so a saved ``.seg.nrrd`` always has the
    input's geometry.
    """
    labelmap = add_labelmap_volume(
        context, (np.asarray(label) > 0).astype(np.uint8), geometry, f"{name} labels"
    )
    segmentation = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    segmentation.CreateDefaultDisplayNodes()
    segment_ids = vtk.vtkStringArray()
    segment_ids.InsertNextValue(
        segmentation.GetSegmentation().AddEmptySegment(TUMOR_SEGMENT, TUMOR_SEGMENT, TUMOR_COLOR)
    )
    try:
        if not context.logic("Segmentations").ImportLabelmapToSegmentationNode(
            labelmap, segmentation, segment_ids
        ):
            raise RuntimeError(f"could not convert the tumour label into the segmentation '{name}'")
    finally:
        context.scene.RemoveNode(labelmap)
    return segmentation


def _statistics_columns(statistics: TumorStatistics) -> dict[str, list]:
    """The statistics table's columns (one row)."""
    return {
        "segment": [TUMOR_SEGMENT],
        "voxels": [statistics.voxels],
        "volume_ml": [statistics.volume_ml],
        "components": [statistics.components],
        "largest_component_ml": [statistics.largest_component_ml],
    }


def _add_result_nodes(
    context: MRMLContext,
    analysis: SegmentationResult,
    statistics: TumorStatistics,
    geometry: VolumeGeometry,
    name: str,
    with_probability: bool,
) -> dict:
    segmentation = add_tumor_segmentation(context, analysis.label, geometry, f"{name} tumor")
    table = add_table(context, _statistics_columns(statistics), f"{name} tumor statistics")
    probability = (
        add_scalar_volume(context, analysis.probability, geometry, f"{name} tumor probability")
        if with_probability
        else None
    )
    nodes = [node for node in (segmentation, table, probability) if node is not None]
    folder = add_to_folder(context, f"{name} tumor segmentation", nodes)
    return {
        "segmentation_node": segmentation,
        "statistics_table": table,
        "probability_node": probability,
        "folder_item": folder,
    }
