"""Creation of result nodes: volumes, segmentations, tables, plots, subject-hierarchy folders.

Every function takes the :class:`~SpatioTemporalCommonLib.context.MRMLContext` and returns the new
node; :func:`scene_rollback` removes whatever a failed or cancelled job added, so the scene is left
as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import slicer
import slicer.util
import vtk

from .context import MRMLContext
from .geometry import VolumeGeometry
from .sequences import update_volume


def add_scalar_volume(
    context: MRMLContext,
    array_kji: np.ndarray,
    geometry: VolumeGeometry,
    name: str,
    *,
    color_node_id: str = "vtkMRMLColorTableNodeGrey",
):
    """Add a scalar volume with a display node whose window covers the finite values.

    NaN voxels (failed fits) stay NaN; the automatic window ignores them.
    """
    node = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_volume(node, np.asarray(array_kji), geometry)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(color_node_id)
    finite = np.asarray(array_kji)[np.isfinite(array_kji)]
    if finite.size:
        low, high = np.percentile(finite, [1, 99])
        if high > low:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(float(low), float(high))
    return node


def add_labelmap_volume(context: MRMLContext, labels_kji: np.ndarray, geometry: VolumeGeometry, name: str):
    """Add a labelmap volume (integer labels, 0 = background)."""
    node = context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    update_volume(node, np.asarray(labels_kji), geometry)
    node.CreateDefaultDisplayNodes()
    return node


def add_segmentation(
    context: MRMLContext,
    labels_kji: np.ndarray,
    geometry: VolumeGeometry,
    name: str,
    segment_names: Mapping[int, str] | None = None,
):
    """Add a segmentation node with one segment per non-zero label of ``labels_kji``.

    Parameters
    ----------
    segment_names : mapping of int to str, optional
        Segment name for each label value; unnamed labels are called ``Label_<value>``.
    """
    labels = np.asarray(labels_kji)
    labelmap = add_labelmap_volume(context, labels.astype(np.uint16), geometry, f"{name} labels")
    segmentation = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    segmentation.CreateDefaultDisplayNodes()
    try:
        if not context.logic("Segmentations").ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise RuntimeError(f"could not convert the labels of '{name}' into segments")
    finally:
        context.scene.RemoveNode(labelmap)
    _name_segments(segmentation, np.unique(labels[labels != 0]), segment_names or {})
    return segmentation


def _name_segments(segmentation_node, label_values: np.ndarray, names: Mapping[int, str]) -> None:
    segmentation = segmentation_node.GetSegmentation()
    for index, value in enumerate(label_values):
        segment = segmentation.GetNthSegment(index)
        segment.SetName(names.get(int(value), f"Label_{int(value)}"))


def labels_from_segmentation(context: MRMLContext, segmentation_node, reference_volume) -> np.ndarray:
    """Export all segments onto ``reference_volume``'s grid as a label array ``(k, j, i)``.

    Segment n (in segmentation order) gets label n + 1.
    """
    labelmap = context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    try:
        exported = context.logic("Segmentations").ExportAllSegmentsToLabelmapNode(
            segmentation_node, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        )
        if not exported:
            raise RuntimeError(f"could not export segmentation '{segmentation_node.GetName()}'")
        return np.array(slicer.util.arrayFromVolume(labelmap))
    finally:
        context.scene.RemoveNode(labelmap)


def add_table(context: MRMLContext, columns: Mapping[str, Sequence], name: str):
    """Add a table node with one column per entry of ``columns`` (numbers or strings)."""
    table = context.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for column_name, column_values in columns.items():
        values = np.asarray(column_values)
        if values.dtype.kind in "biuf":
            column = vtk.vtkDoubleArray()
            for value in values.astype(float):
                column.InsertNextValue(value)
        else:
            column = vtk.vtkStringArray()
            for value in values:
                column.InsertNextValue(str(value))
        column.SetName(column_name)
        table.AddColumn(column)
    return table


def add_plot_chart(
    context: MRMLContext,
    table_node,
    x_column: str,
    y_columns: Sequence[str],
    name: str,
    *,
    x_title: str,
    y_title: str,
):
    """Add a line chart with one series per ``y_columns`` entry, all against ``x_column``."""
    chart = context.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    for column in y_columns:
        series = context.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", column)
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(x_column)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def add_to_folder(context: MRMLContext, folder_name: str, nodes: Sequence) -> int:
    """Put ``nodes`` under a new subject-hierarchy folder named ``folder_name``; return its item ID."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(context.scene)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), folder_name)
    for node in nodes:
        item = hierarchy.GetItemByDataNode(node)
        if item == hierarchy.GetInvalidItemID():
            hierarchy.CreateItem(folder, node)  # headless scenes do not add every node class to the hierarchy
        else:
            hierarchy.SetItemParent(item, folder)
    return folder


def node_ids(context: MRMLContext) -> set[str]:
    """IDs of every node now in the scene."""
    scene = context.scene
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


def remove_nodes_added_since(context: MRMLContext, previous_ids: set[str]) -> None:
    """Remove every node whose ID is not in ``previous_ids`` (see :func:`node_ids`)."""
    scene = context.scene
    added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
    for node in [node for node in added if node.GetID() not in previous_ids]:
        if scene.IsNodePresent(node):
            scene.RemoveNode(node)


@contextmanager
def scene_rollback(context: MRMLContext) -> Iterator[None]:
    """Remove every node added inside the block if the block raises (failure or cancellation)."""
    before = node_ids(context)
    try:
        yield
    except BaseException:
        remove_nodes_added_since(context, before)
        raise
