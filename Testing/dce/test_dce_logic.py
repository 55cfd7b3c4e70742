"""DCE Kinetics on real MRML: maps on the input's voxels, truth recovered, cancellation, NaN failures."""

import numpy as np
import pytest
import slicer
import slicer.util
from DCEKineticsLib.dro import make_dro
from DCEKineticsLib.fitting import FailureReason
from DCEKineticsLib.logic import run_dce
from DCEKineticsLib.parameters import DCEParameters
from DCEKineticsLib.signal_model import ConversionFailure
from SpatioTemporalCommonLib.errors import InputError, ProcessingCancelled
from SpatioTemporalCommonLib.nodes import add_labelmap_volume
from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry
from SpatioTemporalCommonLib.synthetic import oblique_geometry


def dro_sequence(context, snr=np.inf):
    dro = make_dro(snr=snr, patch_size=3, n_frames=40)
    geometry = oblique_geometry(dro.patch_labels.shape)
    sequence = add_volume_sequence(context, np.moveaxis(dro.signal, -1, 0), dro.times_s, geometry, "dro")
    parameters = DCEParameters(t1_ms=dro.t1_ms, flip_angle_deg=dro.flip_angle_deg, tr_ms=dro.tr_ms)
    return dro, geometry, sequence, parameters


def test_noise_free_dro_is_recovered_on_the_input_grid(mrml_context):
    dro, geometry, sequence, parameters = dro_sequence(mrml_context)
    result = run_dce(mrml_context, sequence, parameters)
    for name in ("Ktrans", "ve", "vp"):
        node = result.map_nodes[name]
        assert volume_geometry(node).mismatch(geometry) is None
        estimate = slicer.util.arrayFromVolume(node)
        # 1 %: the population AIF's delay is estimated from the data, unlike the fits of test_fitting.
        assert np.allclose(estimate, dro.truth[name], rtol=0.01), name
    assert result.analysis.n_failed == 0 and result.analysis.n_fitted == dro.patch_labels.size
    assert result.statistics_table.GetNumberOfRows() == len(result.analysis.maps)
    assert result.curves_chart.GetNumberOfPlotSeriesNodes() == 3
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_context.scene)
    assert hierarchy.GetItemName(result.folder_item) == "dro DCE"
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(result.statistics_table)) == result.folder_item


def test_mask_regions_give_one_statistics_row_per_region_and_map(mrml_context):
    dro, geometry, sequence, parameters = dro_sequence(mrml_context)
    labels = np.where(dro.patch_labels <= 9, 1, 2)
    mask = add_labelmap_volume(mrml_context, labels, geometry, "halves")
    result = run_dce(mrml_context, sequence, parameters, mask_node=mask)
    table = result.statistics_table
    rows = {(table.GetCellText(r, 0), table.GetCellText(r, 1)): float(table.GetCellText(r, 3))
            for r in range(table.GetNumberOfRows())}
    assert rows[("label 1", "vp")] == pytest.approx(0.02, rel=0.01)
    assert rows[("label 2", "vp")] == pytest.approx(0.08, rel=0.01)


def test_cancel_leaves_the_scene_unchanged(mrml_context):
    _, _, sequence, parameters = dro_sequence(mrml_context)
    before = mrml_context.scene.GetNumberOfNodes()

    def cancel_when_fitting(fraction, message):
        if "fitting" in message:
            raise ProcessingCancelled("cancelled by the user")

    with pytest.raises(ProcessingCancelled):
        run_dce(mrml_context, sequence, parameters, progress=cancel_when_fitting)
    assert mrml_context.scene.GetNumberOfNodes() == before


def test_zero_baseline_voxels_become_nan_and_are_counted(mrml_context):
    dro = make_dro(snr=np.inf, patch_size=3, n_frames=40)
    signal = dro.signal.copy()
    signal[0, 0, :2] = 0.0
    geometry = oblique_geometry(dro.patch_labels.shape)
    sequence = add_volume_sequence(mrml_context, np.moveaxis(signal, -1, 0), dro.times_s, geometry, "zeros")
    parameters = DCEParameters(t1_ms=dro.t1_ms, flip_angle_deg=dro.flip_angle_deg, tr_ms=dro.tr_ms)
    result = run_dce(mrml_context, sequence, parameters)
    ktrans = slicer.util.arrayFromVolume(result.map_nodes["Ktrans"])
    failed = slicer.util.arrayFromVolume(result.map_nodes["FitFailed"])
    assert np.all(np.isnan(ktrans[0, 0, :2])) and np.all(failed[0, 0, :2] == 1)
    assert result.analysis.n_failed == 2
    conversion = slicer.util.arrayFromVolume(result.map_nodes["ConversionFailure"])
    reason = slicer.util.arrayFromVolume(result.map_nodes["FailureReason"])
    assert np.all(conversion[0, 0, :2].astype(int) & ConversionFailure.BASELINE_NOT_POSITIVE)
    assert np.all(reason[0, 0, :2] == FailureReason.NON_FINITE_DATA)
    assert np.all(conversion[0, 0, 2:] == 0) and np.all(reason[0, 0, 2:] == FailureReason.OK)


def test_mask_on_another_grid_is_refused(mrml_context):
    dro, _, sequence, parameters = dro_sequence(mrml_context)
    other = oblique_geometry(dro.patch_labels.shape, angle_deg=5.0)
    mask = add_labelmap_volume(mrml_context, np.ones(dro.patch_labels.shape, np.uint8), other, "tilted")
    with pytest.raises(InputError, match=r"another grid .* --resample-mask"):
        run_dce(mrml_context, sequence, parameters, mask_node=mask)
    result = run_dce(mrml_context, sequence, parameters, mask_node=mask, resample_masks=True)
    assert result.analysis.n_fitted > 0
