"""Conversion between MRML volume nodes / volume sequences and arrays with geometry.

Arrays from Slicer are ``(k, j, i)``; a sequence becomes frames ``(t, k, j, i)``. Frame times come
from the sequence's numeric index (unit ``s``, ``ms`` or ``min``). Every frame must share one grid.
"""

from __future__ import annotations

import numpy as np
import slicer
import slicer.util
import vtk

from .context import MRMLContext
from .errors import InputError
from .geometry import VolumeGeometry
from .series import Series

#: Node attributes (Slicer's multivolume convention, also NRRD header keys) of acquisition parameters.
ACQUISITION_ATTRIBUTES = {
    "flip_angle_deg": "MultiVolume.DICOM.FlipAngle",
    "repetition_time_ms": "MultiVolume.DICOM.RepetitionTime",
    "echo_time_ms": "MultiVolume.DICOM.EchoTime",
}

_INDEX_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "min": 60.0}


def volume_geometry(volume_node) -> VolumeGeometry:
    """The voxel grid of a volume node (its IJK-to-RAS matrix and array shape)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    dimensions = volume_node.GetImageData().GetDimensions()
    return VolumeGeometry(ijk_to_ras, tuple(reversed(dimensions)))


def set_volume_geometry(volume_node, geometry: VolumeGeometry) -> None:
    """Place a volume node on ``geometry`` (its array must already have ``geometry.shape``)."""
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(geometry.ijk_to_ras[row, column]))
    volume_node.SetIJKToRASMatrix(matrix)


def update_volume(volume_node, array_kji: np.ndarray, geometry: VolumeGeometry) -> None:
    """Fill a volume node with an array ``(k, j, i)`` on ``geometry``."""
    if tuple(array_kji.shape) != geometry.shape:
        raise ValueError(f"array shape {array_kji.shape} does not match the geometry {geometry.shape}")
    if array_kji.dtype.kind in "iu" and array_kji.dtype.itemsize == 8:
        array_kji = array_kji.astype(np.int32)  # VTK images have no 64-bit integer scalar type in Slicer
    slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(array_kji))
    set_volume_geometry(volume_node, geometry)


def sequence_frame_times(sequence_node) -> tuple[np.ndarray | None, str]:
    """Frame times (s) from a sequence's index values, with a description of the source.

    Returns ``(None, reason)`` when the index is not numeric time.
    """
    count = sequence_node.GetNumberOfDataNodes()
    unit = (sequence_node.GetIndexUnit() or "").strip()
    if sequence_node.GetIndexType() != slicer.vtkMRMLSequenceNode.NumericIndex:
        return None, "none (the sequence index is text, not time)"
    scale = _INDEX_UNIT_SECONDS.get(unit.lower()) if unit else 1.0
    if scale is None:
        return None, f"none (the sequence index unit '{unit}' is not a time unit)"
    try:
        values = np.array([float(sequence_node.GetNthIndexValue(n)) for n in range(count)])
    except ValueError:
        return None, "none (the sequence index values are not numbers)"
    unit_text = unit or "no unit, read as s"
    return values * scale, f"sequence index values ({sequence_node.GetIndexName() or 'index'} in {unit_text})"


def acquisition_from_attributes(sequence_node) -> dict[str, float]:
    """Acquisition parameters stored as attributes of a sequence node (or of its first volume)."""
    first = sequence_node.GetNthDataNode(0) if sequence_node.GetNumberOfDataNodes() else None
    found = {}
    for name, attribute in ACQUISITION_ATTRIBUTES.items():
        for node in (sequence_node, first):
            text = node.GetAttribute(attribute) if node is not None else None
            try:
                found[name] = float(text)
                break
            except (TypeError, ValueError):
                continue
    return found


def set_acquisition_attributes(sequence_node, acquisition: dict[str, float]) -> None:
    """Store acquisition parameters as attributes of a sequence node (see :data:`ACQUISITION_ATTRIBUTES`)."""
    for name, attribute in ACQUISITION_ATTRIBUTES.items():
        if name in acquisition:
            sequence_node.SetAttribute(attribute, f"{acquisition[name]:g}")


def series_from_sequence_node(sequence_node, name: str | None = None) -> Series:
    """Read a volume sequence into a :class:`Series`, refusing frames of different geometry."""
    if sequence_node is None:
        raise InputError("no input sequence selected: choose a volume sequence")
    name = name or sequence_node.GetName()
    count = sequence_node.GetNumberOfDataNodes()
    if count == 0:
        raise InputError(f"sequence '{name}' is empty: choose a sequence that contains volumes")
    frames = []
    geometry = None
    for n in range(count):
        node = sequence_node.GetNthDataNode(n)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.GetImageData() is None:
            raise InputError(
                f"item {n} of sequence '{name}' is not a scalar volume: choose a sequence of scalar volumes "
                "(a 4D image)"
            )
        frame_geometry = volume_geometry(node)
        if geometry is None:
            geometry = frame_geometry
        else:
            difference = geometry.mismatch(frame_geometry)
            if difference:
                raise InputError(
                    f"frame {n} of '{name}' has a different geometry from frame 0 ({difference}): "
                    "resample all frames onto one grid"
                )
        frames.append(slicer.util.arrayFromVolume(node))
    times, source = sequence_frame_times(sequence_node)
    return Series(np.stack(frames), times, geometry, source, name, acquisition_from_attributes(sequence_node))


def format_index_value(time_s: float) -> str:
    """Index value text for a frame time, as written into new sequences."""
    return f"{float(time_s):.6g}"


def add_volume_sequence(
    context: MRMLContext,
    frames: np.ndarray,
    times_s: np.ndarray,
    geometry: VolumeGeometry,
    name: str,
    *,
    labelmap: bool = False,
    index_values: list[str] | None = None,
):
    """Add a sequence of volumes ``frames (t, k, j, i)`` with a numeric time index in seconds.

    Parameters
    ----------
    index_values : list of str, optional
        Index value texts to use instead of formatting ``times_s`` (pass the input sequence's own
        values so that a browser can synchronise the two sequences item by item).
    """
    sequence = context.scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    frame_node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    values = index_values or [format_index_value(t) for t in times_s]
    for frame, value in zip(frames, values, strict=True):
        update_volume(frame_node, frame, geometry)
        sequence.SetDataNodeAtValue(frame_node, value)
    return sequence


def index_values(sequence_node) -> list[str]:
    """The index value texts of a sequence, in order."""
    return [sequence_node.GetNthIndexValue(n) for n in range(sequence_node.GetNumberOfDataNodes())]


def show_in_browser(context: MRMLContext, sequence_node, reference_sequence=None):
    """Make ``sequence_node`` browsable, synchronised with ``reference_sequence`` when one is given.

    The reference's browser is used (created, with the reference as master, when it has none), so
    browsing the input also shows the matching item of the result. Returns the browser node.
    """
    sequences_logic = context.logic("Sequences")
    master = reference_sequence if reference_sequence is not None else sequence_node
    browser = sequences_logic.GetFirstBrowserNodeForSequenceNode(master)
    if browser is None:
        browser = context.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{master.GetName()} browser")
        browser.SetAndObserveMasterSequenceNodeID(master.GetID())
    if master is not sequence_node:
        browser.AddSynchronizedSequenceNodeID(sequence_node.GetID())
    sequences_logic.UpdateProxyNodesFromSequences(browser)
    return browser
