"""Echo 4D Features on real MRML: outputs on the input's grid and in its browser, LV against the phantom
truth, seeds in RAS, cancellation, and the one parameter definition."""

import argparse

import numpy as np
import pytest
import slicer
import slicer.util
from Echo4DFeaturesLib.cli import add_arguments
from Echo4DFeaturesLib.logic import CAVITY_SEGMENT, run_echo
from Echo4DFeaturesLib.parameters import EchoParameters, check_parameters, phase_scale_index
from Echo4DFeaturesLib.phantom import CAVITY, make_echo_phantom
from SpatioTemporalCommonLib.errors import InputError, ProcessingCancelled
from SpatioTemporalCommonLib.nodes import add_scalar_volume
from SpatioTemporalCommonLib.sequences import add_volume_sequence, index_values, volume_geometry
from SpatioTemporalCommonLib.synthetic import oblique_geometry

FRAME_INTERVAL_S = 0.1


@pytest.fixture(scope="module")
def phantom():
    """A beating ventricle on anisotropic voxels (0.9 x 1.3 x 1.1 mm along k, j, i), 8 frames."""
    return make_echo_phantom((60, 40, 46), (0.9, 1.3, 1.1), n_frames=8, seed=2)


def phantom_sequence(context, phantom, name="patient"):
    geometry = oblique_geometry(phantom.image.shape[:3], spacing_ijk=phantom.spacing_mm[::-1])
    times = np.arange(phantom.image.shape[3]) * FRAME_INTERVAL_S
    return add_volume_sequence(context, np.moveaxis(phantom.image, -1, 0), times, geometry, name), geometry


def true_ejection_fraction(phantom) -> float:
    volumes = phantom.cavity_volumes_ml
    return 100.0 * (volumes.max() - volumes.min()) / volumes.max()


def test_outputs_join_the_input_browser_on_its_grid(mrml_context, phantom):
    sequence, geometry = phantom_sequence(mrml_context, phantom)
    result = run_echo(mrml_context, sequence, EchoParameters())
    analysis = result.analysis
    outputs = (result.feature_asymmetry_sequence, result.local_phase_sequence, result.lv_sequence)
    for output in outputs:
        assert index_values(output) == index_values(sequence)
        for n in range(output.GetNumberOfDataNodes()):
            assert volume_geometry(output.GetNthDataNode(n)).mismatch(geometry) is None
    assert result.lv_sequence.GetNthDataNode(0).IsA("vtkMRMLLabelMapVolumeNode")
    browser = mrml_context.logic("Sequences").GetFirstBrowserNodeForSequenceNode(sequence)
    assert browser is result.browser
    assert browser.GetMasterSequenceNode() is sequence
    es = analysis.indices.es_frame
    browser.SetSelectedItemNumber(es)
    mrml_context.logic("Sequences").UpdateProxyNodesFromSequences(browser)
    assert np.array_equal(slicer.util.arrayFromVolume(browser.GetProxyNode(sequence)), phantom.image[..., es])
    assert np.array_equal(
        slicer.util.arrayFromVolume(browser.GetProxyNode(result.lv_sequence)), analysis.labels[..., es]
    )
    assert np.array_equal(
        slicer.util.arrayFromVolume(browser.GetProxyNode(result.feature_asymmetry_sequence)),
        analysis.feature_asymmetry[..., es],
    )
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_context.scene)
    assert hierarchy.GetItemName(result.folder_item) == "patient echo"
    for node in (*outputs, result.lv_segmentation, result.volume_table, result.volume_chart):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == result.folder_item
    segmentation = result.lv_segmentation.GetSegmentation()
    assert (
        segmentation.GetNumberOfSegments() == 1 and segmentation.GetNthSegment(0).GetName() == CAVITY_SEGMENT
    )
    table = result.volume_table
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        "frame",
        "time_s",
        "volume_ml",
    ]
    assert table.GetNumberOfRows() == phantom.image.shape[3]
    assert float(table.GetCellText(3, 1)) == pytest.approx(3 * FRAME_INTERVAL_S)
    assert result.volume_chart.GetNumberOfPlotSeriesNodes() == 1
    # The cavity is found automatically, inside the true cavity in every frame.
    assert analysis.seed_automatic
    assert np.all(phantom.labels[tuple(np.round(analysis.seed_kji).astype(int))] == CAVITY)
    np.testing.assert_allclose(result.seed_ras, geometry.kji_to_ras(analysis.seed_kji))
    assert abs(analysis.indices.ef_percent - true_ejection_fraction(phantom)) < 3.0
    assert (analysis.indices.ed_frame, analysis.indices.es_frame) == (phantom.ed_frame, phantom.es_frame)
    assert np.all((analysis.local_phase >= 0) & (analysis.local_phase <= np.pi))


def test_seed_in_ras_is_used_and_unknown_times_plot_against_frames(mrml_context, phantom):
    sequence, geometry = phantom_sequence(mrml_context, phantom)
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.TextIndex)  # frames without times
    seed_ras = geometry.kji_to_ras(phantom.cavity_centre_kji)
    result = run_echo(mrml_context, sequence, EchoParameters(), seed_ras=seed_ras)
    np.testing.assert_allclose(result.analysis.seed_kji, phantom.cavity_centre_kji, atol=1e-6)
    assert not result.analysis.seed_automatic
    assert abs(result.analysis.indices.ef_percent - true_ejection_fraction(phantom)) < 3.0
    assert np.all(np.isnan(result.analysis.times_s))
    assert result.volume_chart.GetNthPlotSeriesNode(0).GetXColumnName() == "frame"


def test_bad_seed_and_cancellation_leave_the_scene_unchanged(mrml_context, phantom):
    sequence, geometry = phantom_sequence(mrml_context, phantom)
    before = mrml_context.scene.GetNumberOfNodes()
    beyond_corner = geometry.kji_to_ras(np.array(phantom.image.shape[:3]) + 2.0)
    with pytest.raises(InputError, match="outside the volume"):
        run_echo(mrml_context, sequence, EchoParameters(), seed_ras=beyond_corner)

    def cancel_at_local_phase(fraction, message):
        if message == "local phase":
            raise ProcessingCancelled("cancelled by the user")

    with pytest.raises(ProcessingCancelled):
        run_echo(mrml_context, sequence, EchoParameters(mode="3d"), progress=cancel_at_local_phase)
    assert mrml_context.scene.GetNumberOfNodes() == before


def test_a_single_volume_is_refused(mrml_context, phantom):
    _, geometry = phantom_sequence(mrml_context, phantom)
    volume = add_scalar_volume(mrml_context, phantom.image[..., 0], geometry, "one frame")
    with pytest.raises(InputError, match="not a sequence"):
        run_echo(mrml_context, volume, EchoParameters())


def test_command_line_options_come_from_the_parameters():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = {option for action in parser._actions for option in action.option_strings}
    assert {
        "--out",
        "--times",
        "--seed",
        "--mode",
        "--scales",
        "--min-wavelength",
        "--mult",
        "--sigma-onf",
        "--space-time",
        "--k",
        "--format",
    } <= options
    parsed = parser.parse_args(
        ["in.seq.nrrd", "--out", "o", "--mode", "3d", "--space-time", "4.5", "--scales", "2"]
    )
    assert (parsed.mode, parsed.space_time_mm_per_frame, parsed.scales) == ("3d", 4.5, 2)
    assert phase_scale_index(EchoParameters()) == 1
    for bad, fragment in (
        (EchoParameters(sigma_onf=1.2), "--sigma-onf"),
        (EchoParameters(mult=1.0), "--mult"),
        (EchoParameters(mode="2d"), "--mode"),
        (EchoParameters(scales=2, phase_scale=2), "--phase-scale"),
    ):
        with pytest.raises(InputError, match=fragment):
            check_parameters(bad)
