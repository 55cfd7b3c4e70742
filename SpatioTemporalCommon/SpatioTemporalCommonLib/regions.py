"""Masks and region labels on the input's voxel grid, and per-region statistics of maps.

A mask may be a labelmap volume, a scalar volume (non-zero = inside) or a segmentation. A volume on
another grid is refused unless resampling is asked for (nearest neighbour, in RAS); a segmentation
is always exported onto the input grid, as Slicer does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import slicer.util

from .context import MRMLContext
from .errors import InputError
from .geometry import VolumeGeometry
from .nodes import add_scalar_volume, labels_from_segmentation
from .sequences import volume_geometry


@dataclass(frozen=True)
class RegionLabels:
    """Integer labels on the input grid (0 = outside) and a name per label."""

    labels: np.ndarray
    names: dict[int, str]

    @property
    def mask(self) -> np.ndarray:
        """Boolean union of all regions."""
        return self.labels > 0


def resample_nearest(values: np.ndarray, source: VolumeGeometry, target: VolumeGeometry) -> np.ndarray:
    """Resample ``values`` (on ``source``) onto ``target`` by nearest neighbour in RAS; outside = 0."""
    k, j, i = np.indices(target.shape).reshape(3, -1)
    ras = target.ijk_to_ras @ np.vstack([i, j, k, np.ones_like(i)])
    source_ijk = np.rint(np.linalg.solve(source.ijk_to_ras, ras)[:3]).astype(int)
    inside = np.all((source_ijk >= 0) & (source_ijk < np.array(source.shape[::-1])[:, None]), axis=0)
    result = np.zeros(i.size, dtype=values.dtype)
    result[inside] = values[source_ijk[2, inside], source_ijk[1, inside], source_ijk[0, inside]]
    return result.reshape(target.shape)


def region_labels(context: MRMLContext, node, geometry: VolumeGeometry, *, what: str = "mask",
                  resample: bool = False) -> RegionLabels:
    """Labels of a mask node on ``geometry``.

    Parameters
    ----------
    node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode
        The mask: non-zero voxels of a volume, or the segments of a segmentation.
    geometry : VolumeGeometry
        The input's grid.
    what : str
        How to call the node in messages (e.g. ``"AIF mask"``).
    resample : bool
        Resample a volume on another grid instead of refusing it.

    Raises
    ------
    InputError
        When a volume has another geometry (and ``resample`` is off) or the mask is empty.
    """
    if node.IsA("vtkMRMLSegmentationNode"):
        reference = add_scalar_volume(context, np.zeros(geometry.shape, np.uint8), geometry, "reference")
        try:
            labels = labels_from_segmentation(context, node, reference)
        finally:
            context.scene.RemoveNode(reference)
        segmentation = node.GetSegmentation()
        names = {n + 1: segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())}
    else:
        labels = np.array(slicer.util.arrayFromVolume(node))
        difference = volume_geometry(node).mismatch(geometry)
        if difference and not resample:
            raise InputError(
                f"the {what} '{node.GetName()}' lies on another grid than the input ({difference}): "
                "resample it onto the input grid, or pass --resample-mask to resample it by nearest neighbour"
            )
        if difference:
            labels = resample_nearest(labels, volume_geometry(node), geometry)
        labels = np.where(np.isfinite(labels), labels, 0).astype(np.int64)
        names = {int(v): f"label {int(v)}" for v in np.unique(labels) if v > 0}
    if not np.any(labels > 0):
        raise InputError(f"the {what} '{node.GetName()}' is empty on the input grid: draw it over the region to analyse")
    return RegionLabels(labels.astype(np.int32), names)


def region_statistics(maps: Mapping[str, np.ndarray], regions: RegionLabels) -> dict[str, list]:
    """Mean, median, SD and IQR of every map inside every region (finite voxels only).

    Returns
    -------
    dict of str to list
        Columns ``region``, ``map``, ``voxels`` (finite), ``mean``, ``median``, ``sd``, ``iqr`` with
        one row per region and map.
    """
    columns: dict[str, list] = {key: [] for key in ("region", "map", "voxels", "mean", "median", "sd", "iqr")}
    for label, name in regions.names.items():
        inside = regions.labels == label
        for map_name, values in maps.items():
            finite = values[inside]
            finite = finite[np.isfinite(finite)]
            quartiles = np.percentile(finite, [25, 50, 75]) if finite.size else (np.nan,) * 3
            columns["region"].append(name)
            columns["map"].append(map_name)
            columns["voxels"].append(int(finite.size))
            columns["mean"].append(float(np.mean(finite)) if finite.size else np.nan)
            columns["median"].append(float(quartiles[1]))
            columns["sd"].append(float(np.std(finite, ddof=1)) if finite.size > 1 else np.nan)
            columns["iqr"].append(float(quartiles[2] - quartiles[0]))
    return columns
