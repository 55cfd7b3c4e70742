"""fMRI Dynamics on real MRML: result nodes on the input's voxels, folder, ICA sequence, side-file readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
from FMRIDynamicsLib.logic import (
    ras_to_voxel,
    read_confounds_tsv,
    read_reference_signal,
    read_slice_timing,
    repetition_time,
    run_fmri,
)
from FMRIDynamicsLib.parameters import FMRIParameters
from FMRIDynamicsLib.phantom import make_phantom
from SpatioTemporalCommonLib.errors import InputError, ProcessingCancelled
from SpatioTemporalCommonLib.nodes import add_labelmap_volume, add_segmentation
from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry
from SpatioTemporalCommonLib.series import Series
from SpatioTemporalCommonLib.synthetic import oblique_geometry

FEATURES = "lag,fc,dfc,ica,qc"


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_kji=(8, 16, 16), n_frames=150)


def phantom_sequence(context, phantom):
    geometry = oblique_geometry(phantom.brain.shape, spacing_ijk=phantom.spacing_kji[::-1])
    times = np.arange(phantom.data.shape[-1]) * phantom.tr_s
    sequence = add_volume_sequence(context, np.moveaxis(phantom.data, -1, 0), times, geometry, "bold")
    return geometry, sequence


def test_maps_tables_charts_and_ica_sequence_land_in_the_input_folder_on_its_grid(mrml_context, phantom):
    geometry, sequence = phantom_sequence(mrml_context, phantom)
    labels = add_labelmap_volume(mrml_context, phantom.labels, geometry, "slabs")
    seed_regions = add_segmentation(
        mrml_context, np.where(phantom.labels == 2, 1, 0), geometry, "seeds", {1: "left motor"}
    )
    parameters = FMRIParameters(motion_correction=False, features=FEATURES, ica_components=4)
    result = run_fmri(mrml_context, sequence, parameters, labels_node=labels, seed_regions_node=seed_regions)
    assert set(result.map_nodes) == {
        "lag",
        "lag_correlation",
        "lag_projection",
        "tsnr",
        "seed_left_motor_correlation",
    }
    assert result.map_nodes["seed_left_motor_correlation"].GetName() == "bold seed_left_motor_correlation"
    for name, node in result.map_nodes.items():
        assert volume_geometry(node).mismatch(geometry) is None, name
        np.testing.assert_array_equal(
            slicer.util.arrayFromVolume(node), result.analysis.maps[name].astype(np.float32)
        )
    assert result.ica_sequence.GetNumberOfDataNodes() == 4
    assert result.ica_sequence.GetIndexName() == "component"
    first = result.ica_sequence.GetNthDataNode(0)
    assert volume_geometry(first).mismatch(geometry) is None
    assert result.ica_browser.GetMasterSequenceNode() is result.ica_sequence
    assert set(result.table_nodes) == {
        "qc",
        "fc_matrix",
        "dfc",
        "delay_matrix",
        "region_lags",
        "time_courses",
        "lag_reference",
        "ica_time_courses",
    }
    assert result.table_nodes["fc_matrix"].GetNumberOfRows() == 6
    assert set(result.chart_nodes) == {"qc", "time_courses", "ica_time_courses", "lag_reference"}
    assert result.chart_nodes["ica_time_courses"].GetNumberOfPlotSeriesNodes() == 4
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_context.scene)
    assert hierarchy.GetItemName(result.folder_item) == "bold fMRI"
    for node in (
        result.map_nodes["lag"],
        result.table_nodes["qc"],
        result.chart_nodes["qc"],
        result.ica_sequence,
    ):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == result.folder_item
    assert result.tr_source.startswith("sequence index values")


def test_cancel_leaves_the_scene_unchanged(mrml_context, phantom):
    _, sequence = phantom_sequence(mrml_context, phantom)
    before = mrml_context.scene.GetNumberOfNodes()

    def cancel_at_ica(fraction, message):
        if message == "ica":
            raise ProcessingCancelled("cancelled by the user")

    with pytest.raises(ProcessingCancelled):
        run_fmri(
            mrml_context,
            sequence,
            FMRIParameters(motion_correction=False, features="qc,ica"),
            progress=cancel_at_ica,
        )
    assert mrml_context.scene.GetNumberOfNodes() == before


def test_masks_and_labels_of_another_grid_or_with_an_empty_region_are_refused(mrml_context, phantom):
    geometry, sequence = phantom_sequence(mrml_context, phantom)
    parameters = FMRIParameters(motion_correction=False, features="qc")
    tilted = add_labelmap_volume(
        mrml_context,
        phantom.brain.astype(np.uint8),
        oblique_geometry(phantom.brain.shape, angle_deg=5.0),
        "tilted",
    )
    with pytest.raises(InputError, match=r"another grid .* --resample-mask"):
        run_fmri(mrml_context, sequence, parameters, mask_node=tilted)
    regions = np.where(phantom.labels == 1, 1, 0)
    regions[0, 0, 0] = 2  # outside the brain: a region without analysed voxels
    segmentation = add_segmentation(mrml_context, regions, geometry, "regions", {1: "left", 2: "corner"})
    with pytest.raises(InputError, match="region 'corner' has no voxel"):
        run_fmri(mrml_context, sequence, parameters, labels_node=segmentation)
    with pytest.raises(InputError, match="seed region 'corner' has no voxel"):
        run_fmri(mrml_context, sequence, parameters, seed_regions_node=segmentation)


def test_repetition_time_comes_from_the_parameter_or_uniform_frame_times(phantom):
    geometry = oblique_geometry((2, 2, 2))

    def series(times):
        return Series(
            np.zeros((len(times), 2, 2, 2)) if times is not None else np.zeros((3, 2, 2, 2)),
            None if times is None else np.asarray(times, float),
            geometry,
            "header",
            "bold",
        )

    assert repetition_time(series([0, 2, 4]), None) == (2.0, "header")
    assert repetition_time(series([0, 2, 5]), 1.5)[0] == 1.5
    with pytest.raises(InputError, match="not evenly spaced"):
        repetition_time(series([0, 2, 5]), None)
    with pytest.raises(InputError, match=r"no repetition time .* --tr"):
        repetition_time(series(None), None)
    with pytest.raises(InputError, match="not plausible"):
        repetition_time(series([0, 2000, 4000]), None)


def test_side_file_readers(tmp_path):
    confounds = tmp_path / "confounds.tsv"
    confounds.write_text(
        "trans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\tcsf\n"
        "n/a\t0\t0\t0.01\t0\t0\t5\n2\t0\t1\t0.03\t0\t0\t7\n"
    )
    table = read_confounds_tsv(confounds)
    assert table.names[-1] == "csf" and table.values.shape == (2, 7)
    np.testing.assert_allclose(table.values[:, 0], [2.0, 2.0])  # n/a takes the column mean
    np.testing.assert_allclose(table.motion, [[0.01, 0, 0, 2, 0, 0], [0.03, 0, 0, 2, 0, 1]])
    sidecar = tmp_path / "bold.json"
    sidecar.write_text(json.dumps({"SliceTiming": [0.0, 0.5, 1.0], "SliceEncodingDirection": "j-"}))
    timing = read_slice_timing(sidecar)
    assert timing.axis == 1 and timing.times_s.tolist() == [1.0, 0.5, 0.0]
    listing = tmp_path / "slices.txt"
    listing.write_text("0\n0.5 # middle\n1.0\n")
    assert (
        read_slice_timing(listing).times_s.tolist() == [0.0, 0.5, 1.0]
        and read_slice_timing(listing).axis == 0
    )
    reference = tmp_path / "reference.txt"
    reference.write_text("1, 2\n3\n")
    assert read_reference_signal(reference).tolist() == [1.0, 2.0, 3.0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\tx\n")
    with pytest.raises(InputError, match="'x' is not a number"):
        read_confounds_tsv(bad)
    with pytest.raises(InputError, match="no SliceTiming"):
        sidecar.write_text("{}")
        read_slice_timing(sidecar)


def test_seed_points_map_to_the_nearest_voxel_and_outside_points_are_refused():
    geometry = oblique_geometry((6, 14, 16))
    point = geometry.ijk_to_ras @ np.array([3.2, 5.9, 2.4, 1.0])
    assert ras_to_voxel(geometry, point[:3], 1) == (2, 6, 3)
    with pytest.raises(InputError, match=r"seed 2 .* outside the image"):
        ras_to_voxel(geometry, geometry.ijk_to_ras[:3] @ np.array([20.0, 0, 0, 1]), 2)
