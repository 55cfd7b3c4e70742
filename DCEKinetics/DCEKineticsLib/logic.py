"""DCE Kinetics on MRML nodes: sequence in, map volumes, statistics table and curve plot out.

The Slicer panel, the Python console and the ``spatiotemporal dce`` command all call
:func:`run_dce`; the analysis itself is :func:`DCEKineticsLib.pipeline.analyse_dce`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import slicer.util
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.nodes import (
    add_plot_chart,
    add_scalar_volume,
    add_table,
    add_to_folder,
    scene_rollback,
)
from SpatioTemporalCommonLib.parameters import validate_parameters
from SpatioTemporalCommonLib.progress import Progress, as_progress
from SpatioTemporalCommonLib.regions import RegionLabels, region_labels, region_statistics, resample_nearest
from SpatioTemporalCommonLib.sequences import series_from_sequence_node, volume_geometry
from SpatioTemporalCommonLib.series import validate_series

from .parameters import DCEParameters
from .pipeline import DCEAnalysis, analyse_dce
from .t1_mapping import t1_from_vfa

#: Colour table of each kind of map (others are grey).
MAP_COLORS = {name: "vtkMRMLColorTableNodeLabels"
              for name in ("CurveType", "FitFailed", "FailureReason", "ConversionFailure")}
PARAMETER_MAP_COLOR = "vtkMRMLColorTableNodeRainbow"
PARAMETER_MAPS = ("Ktrans", "ve", "kep", "vp", "Fp", "PS", "E", "MTT", "Tc", "delay")


@dataclass
class DCEResult:
    """Nodes created by :func:`run_dce` and the analysis behind them."""

    analysis: DCEAnalysis
    parameters: DCEParameters
    prefilled: dict[str, str]
    map_nodes: dict
    statistics_table: object
    curves_table: object
    curves_chart: object
    folder_item: int


#: Parameters that may be taken from the input's acquisition metadata, by their metadata name.
PREFILLABLE = {"flip_angle_deg": "flip_angle_deg", "tr_ms": "repetition_time_ms"}


def prefill_acquisition(parameters: DCEParameters, acquisition: dict[str, float]) -> tuple[DCEParameters, dict]:
    """Fill the flip angle and TR the user left unset from the input's acquisition metadata.

    Returns the completed parameters and, for each filled field, where its value came from.
    """
    filled = {field: acquisition[key] for field, key in PREFILLABLE.items()
              if getattr(parameters, field) is None and key in acquisition}
    return replace(parameters, **filled), {field: "acquisition metadata of the input" for field in filled}


def volume_on_grid(node, geometry, *, what: str, resample: bool) -> np.ndarray:
    """Values of a scalar volume on the input grid (refused, or resampled, if on another grid)."""
    values = np.array(slicer.util.arrayFromVolume(node), dtype=float)
    difference = volume_geometry(node).mismatch(geometry)
    if difference and not resample:
        raise InputError(f"the {what} '{node.GetName()}' lies on another grid than the input ({difference}): "
                         "resample it onto the input grid, or pass --resample-mask")
    return resample_nearest(values, volume_geometry(node), geometry) if difference else values


def run_t1_mapping(context: MRMLContext, vfa_sequence_node, flip_angles_deg, tr_ms: float,
                   method: str = "nonlinear"):
    """T1 map (ms) from a variable-flip-angle series, added to the scene as a volume.

    Parameters
    ----------
    vfa_sequence_node : vtkMRMLSequenceNode
        One spoiled gradient-echo volume per flip angle, all on one grid.
    flip_angles_deg : sequence of float
        Flip angle of each frame (deg).
    tr_ms : float
        Repetition time of the VFA images (ms).
    method : {"linear", "nonlinear"}
        DESPOT1 linear fit, or nonlinear least squares started from it.

    Returns
    -------
    node : vtkMRMLScalarVolumeNode
        T1 in ms; NaN where the fit failed.
    n_failed : int
        Voxels without a T1.
    """
    series = series_from_sequence_node(vfa_sequence_node)
    if series.n_frames != len(flip_angles_deg):
        raise InputError(f"the variable-flip-angle series '{series.name}' has {series.n_frames} frames but "
                         f"{len(flip_angles_deg)} flip angles were given: give one flip angle per frame")
    fit = t1_from_vfa(series.voxel_series(), np.asarray(flip_angles_deg, float), tr_ms, method)
    node = add_scalar_volume(context, fit.t1_ms.astype(np.float32), series.geometry, f"{series.name} T1", color_node_id=PARAMETER_MAP_COLOR)
    return node, int(np.count_nonzero(fit.failed))


def run_dce(context: MRMLContext, sequence_node, parameters: DCEParameters, *, mask_node=None, aif_mask_node=None,
            t1_map_node=None, resample_masks: bool = False,
            progress: Progress | Callable[[float, str], None] | None = None) -> DCEResult:
    """Analyse a DCE series and add the results to the scene.

    Parameters
    ----------
    context : MRMLContext
        Scene and logics.
    sequence_node : vtkMRMLSequenceNode
        The DCE series (signal or concentration, see ``parameters.input_kind``).
    parameters : DCEParameters
        Analysis parameters (validated here).
    mask_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Voxels to fit, and regions of the statistics table (default: all voxels, one region).
    aif_mask_node : vtkMRMLVolumeNode or vtkMRMLSegmentationNode, optional
        Artery for ``aif="auto"``.
    t1_map_node : vtkMRMLScalarVolumeNode, optional
        Pre-contrast T1 map (ms) instead of ``parameters.t1_ms``.
    resample_masks : bool
        Resample masks and the T1 map on other grids by nearest neighbour instead of refusing them.
    progress : callable(fraction, message), optional
        Progress and cancellation; a cancelled run leaves the scene unchanged.
    """
    progress = as_progress(progress)
    series = series_from_sequence_node(sequence_node)
    validate_series(series)
    parameters, prefilled = prefill_acquisition(parameters, series.acquisition)
    validate_parameters(parameters)
    geometry = series.geometry
    regions = (region_labels(context, mask_node, geometry, resample=resample_masks) if mask_node is not None
               else RegionLabels(np.ones(geometry.shape, np.int32), {1: "all voxels"}))
    aif_mask = (region_labels(context, aif_mask_node, geometry, what="AIF mask", resample=resample_masks).mask
                if aif_mask_node is not None else None)
    t1_map = (volume_on_grid(t1_map_node, geometry, what="T1 map", resample=resample_masks)
              if t1_map_node is not None else None)
    analysis = analyse_dce(series.voxel_series(), series.times_s, parameters, mask=regions.mask if mask_node is not None else None,
                           aif_mask=aif_mask, t1_map_ms=t1_map, progress=progress.subrange(0.0, 0.95))
    with scene_rollback(context):
        result = _add_result_nodes(context, series.name, geometry, analysis, regions, parameters, prefilled)
    progress(1.0, f"{analysis.n_fitted} voxels fitted, {analysis.n_failed} failed")
    return result


def _add_result_nodes(context: MRMLContext, name: str, geometry, analysis: DCEAnalysis, regions: RegionLabels,
                      parameters: DCEParameters, prefilled: dict) -> DCEResult:
    map_nodes = {}
    for map_name, values in analysis.maps.items():
        color = MAP_COLORS.get(map_name, PARAMETER_MAP_COLOR if map_name in PARAMETER_MAPS else
                               "vtkMRMLColorTableNodeGrey")
        map_nodes[map_name] = add_scalar_volume(context, np.asarray(values, np.float32), geometry,
                                                f"{name} {map_name}", color_node_id=color)
    statistics = add_table(context, region_statistics(analysis.maps, regions), f"{name} DCE statistics")
    curves = add_table(context, {"time_s": analysis.times_s, "tissue_mM": analysis.mean_concentration_mM,
                                 "fit_mM": analysis.mean_fit_mM, "aif_plasma_mM": analysis.aif_plasma_mM},
                       f"{name} DCE curves")
    chart = add_plot_chart(context, curves, "time_s", ["tissue_mM", "fit_mM", "aif_plasma_mM"],
                           f"{name} {parameters.model} fit",
                           x_title="time (s)", y_title="concentration (mM)")
    folder = add_to_folder(context, f"{name} DCE", [*map_nodes.values(), statistics, curves, chart])
    return DCEResult(analysis, parameters, prefilled, map_nodes, statistics, curves, chart, folder)
