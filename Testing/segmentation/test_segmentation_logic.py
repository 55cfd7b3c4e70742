"""Tumour segmentation on MRML nodes: outputs on the input's oblique, anisotropic grid, the folder and the
statistics table, acquisition times counted from the pre-contrast phase, determinism, the three-volume
input, and bad input refused with the scene left unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
import torch
import vtk
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.io import read_mask, write_node
from SpatioTemporalCommonLib.nodes import add_scalar_volume, labels_from_segmentation
from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry
from SpatioTemporalCommonLib.synthetic import oblique_geometry
from TumorSegmentation4DLib.logic import (
    add_tumor_segmentation,
    run_segmentation,
    run_segmentation_on_volumes,
    tumor_statistics,
)
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet
from TumorSegmentation4DLib.parameters import SegmentationParameters
from TumorSegmentation4DLib.phantom import generate_breast_phantom
from TumorSegmentation4DLib.weights import save_weights

SPACING_IJK_MM = (0.7, 0.8, 1.6)
SHAPE_KJI = (16, 32, 32)
CLOCK_OFFSET_S = 3600.0
"""Frame times given as clock times: the pre-contrast phase an hour after midnight. The phantom's times are
rounded to 0.1 s, which the 6 significant digits of a sequence's index values keep exactly."""
FAST = SegmentationParameters(device="cpu", n4=False, overlap=0.25)
ONE_SAMPLE = SegmentationParameters(device="cpu", n4=False, overlap=0.25, phases=(0, 1, 3))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run the tiny networks on one thread: on a busy CPU, thread synchronisation costs more than it saves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory) -> Path:
    """An untrained four-level network (inputs divisible by 8) whose 32^3 window covers the test volume."""
    torch.manual_seed(0)
    network = TemporalMambaUNet(NetworkConfig(features=(4, 8, 8, 16), d_state=4, time_embedding=8))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(path, network, {"roi_size": [32, 32, 32], "training": {"n4": False}})
    return path


@pytest.fixture(scope="module")
def geometry():
    return oblique_geometry(SHAPE_KJI, spacing_ijk=SPACING_IJK_MM)


@pytest.fixture(scope="module")
def phantom(geometry):
    """Four phases (three post-contrast) on the oblique grid, with a malignant lesion."""
    return generate_breast_phantom(
        3,
        shape=SHAPE_KJI,
        spacing=geometry.spacing_kji,
        n_post_contrast=3,
        n_benign=0,
        lesion_radius_mm=(2.5, 3.5),
    )


def study_times(phantom) -> np.ndarray:
    """The phantom's acquisition times rounded to 0.1 s (s after injection)."""
    return np.round(phantom.times, 1)


def add_study(context, phantom, geometry, times=None, name="study"):
    times = study_times(phantom) + CLOCK_OFFSET_S if times is None else times
    return add_volume_sequence(context, phantom.phases, np.asarray(times, float), geometry, name)


@pytest.fixture(scope="module")
def reference(weights_path, phantom, geometry):
    """Phases 0, 1 and 3 of the study (clock times) segmented in a scene of their own."""
    context = MRMLContext.create_headless()
    return run_segmentation(
        context, add_study(context, phantom, geometry), ONE_SAMPLE, weights_path=weights_path
    )


def node_count(context) -> int:
    return context.scene.GetNumberOfNodes()


def segment_image(segmentation_node):
    """The binary labelmap of the first segment and its IJK-to-RAS matrix."""
    image = segmentation_node.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return image, np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_outputs_lie_on_the_input_grid_in_a_folder_named_after_it(
    mrml_context, weights_path, phantom, geometry
):
    sequence = add_study(mrml_context, phantom, geometry)
    parameters = SegmentationParameters(device="cpu", n4=False, overlap=0.25, probability=True)
    result = run_segmentation(mrml_context, sequence, parameters, weights_path=weights_path)

    assert result.analysis.samples == [(0, 1, 2), (0, 1, 3)]
    np.testing.assert_allclose(result.times_after_injection_s, study_times(phantom), atol=1e-9)
    assert volume_geometry(result.probability_node).mismatch(geometry) is None
    probability = slicer.util.arrayFromVolume(result.probability_node)
    np.testing.assert_array_equal(result.analysis.label, (probability > 0.5).astype(np.uint8))
    image, ijk_to_ras = segment_image(result.segmentation_node)
    assert image.GetExtent() == (0, SHAPE_KJI[2] - 1, 0, SHAPE_KJI[1] - 1, 0, SHAPE_KJI[0] - 1)
    np.testing.assert_allclose(ijk_to_ras, geometry.ijk_to_ras, atol=1e-6)
    exported = labels_from_segmentation(mrml_context, result.segmentation_node, result.probability_node)
    np.testing.assert_array_equal(exported, result.analysis.label)
    assert result.segmentation_node.GetName() == "study tumor"
    assert result.segmentation_node.GetSegmentation().GetNthSegment(0).GetName() == "tumor"

    table = result.statistics_table.GetTable()
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert columns == ["segment", "voxels", "volume_ml", "components", "largest_component_ml"]
    voxel_ml = np.prod(SPACING_IJK_MM) / 1000.0
    assert table.GetValueByName(0, "voxels").ToInt() == int(result.analysis.label.sum())
    assert table.GetValueByName(0, "volume_ml").ToDouble() == pytest.approx(
        result.analysis.label.sum() * voxel_ml
    )

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_context.scene)
    assert hierarchy.GetItemName(result.folder_item) == "study tumor segmentation"
    for node in (result.segmentation_node, result.statistics_table, result.probability_node):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == result.folder_item


def test_runs_repeat_exactly_and_times_count_from_the_pre_contrast_phase(
    mrml_context, weights_path, phantom, geometry, reference
):
    def segment(sequence, parameters=ONE_SAMPLE):
        return run_segmentation(mrml_context, sequence, parameters, weights_path=weights_path)

    again = segment(add_study(mrml_context, phantom, geometry))
    from_zero = segment(add_study(mrml_context, phantom, geometry, study_times(phantom)))
    np.testing.assert_array_equal(again.analysis.probability, reference.analysis.probability)
    np.testing.assert_array_equal(from_zero.analysis.probability, reference.analysis.probability)
    assert reference.analysis.samples == [(0, 1, 3)]

    later_pre = SegmentationParameters(device="cpu", n4=False, overlap=0.25, phases=(1, 2, 3))
    shifted = segment(add_study(mrml_context, phantom, geometry), later_pre)
    times = study_times(phantom)
    np.testing.assert_allclose(shifted.times_after_injection_s, times - times[1], atol=1e-9)
    assert shifted.analysis.samples == [(1, 2, 3)]


def test_three_volumes_with_times_give_the_result_of_their_sequence(
    mrml_context, weights_path, phantom, geometry
):
    three = [0, 1, 3]
    times = study_times(phantom)[three] + CLOCK_OFFSET_S
    sequence = add_volume_sequence(mrml_context, phantom.phases[three], times, geometry, "three")
    volumes = [add_scalar_volume(mrml_context, phantom.phases[p], geometry, f"phase {p}") for p in three]
    from_sequence = run_segmentation(mrml_context, sequence, FAST, weights_path=weights_path)
    from_volumes = run_segmentation_on_volumes(mrml_context, volumes, times, FAST, weights_path=weights_path)
    np.testing.assert_array_equal(from_volumes.analysis.probability, from_sequence.analysis.probability)
    assert from_volumes.segmentation_node.GetName() == "phase 0 tumor"


def test_bad_input_is_refused_with_the_fix_and_leaves_the_scene_unchanged(
    mrml_context, weights_path, phantom, geometry, tmp_path
):
    context = mrml_context
    study = add_study(context, phantom, geometry)
    two_phases = add_volume_sequence(context, phantom.phases[:2], phantom.times[:2], geometry, "two")
    frame_numbers = add_study(context, phantom, geometry, np.arange(4.0), name="frames")
    frame_numbers.SetIndexUnit("")
    moved = add_study(context, phantom, geometry, name="moved")
    shifted_grid = oblique_geometry(SHAPE_KJI, spacing_ijk=SPACING_IJK_MM, origin_ras=(-10.0, 20.0, 7.25))
    moved_frame = moved.GetNthDataNode(2)
    moved_frame.SetOrigin(*shifted_grid.origin_ras)
    volumes = [add_scalar_volume(context, phantom.phases[p], geometry, f"v{p}") for p in range(3)]
    other_grid = add_scalar_volume(context, phantom.phases[2], shifted_grid, "other grid")

    def on_sequence(sequence, parameters=FAST, weights=weights_path):
        return lambda: run_segmentation(context, sequence, parameters, weights_path=weights)

    def on_volumes(nodes, times):
        return lambda: run_segmentation_on_volumes(context, nodes, times, FAST, weights_path=weights_path)

    cases = [
        (on_sequence(two_phases), "the study has 2 phase(s): give at least 3"),
        (on_sequence(frame_numbers), "carries no acquisition times"),
        (on_sequence(moved), "frame 2 of 'moved' has a different geometry from frame 0 (origin"),
        (on_volumes(volumes, [0.0, 90.0, 80.0]), "must increase strictly"),
        (on_volumes(volumes, [0.0, 90.0]), "2 acquisition time(s) for 3 phases"),
        (on_volumes(volumes, None), "acquisition times are missing"),
        (
            on_volumes([*volumes[:2], other_grid], [0.0, 90.0, 180.0]),
            "phase 2 'other grid' has a different geometry",
        ),
        (on_sequence(study, weights=tmp_path / "absent.safetensors"), "does not exist"),
        (on_sequence(study, SegmentationParameters(phases=(0, 1))), "is too short"),
        (on_sequence(study, SegmentationParameters(phases=(0, 1, 4))), "is outside 0..3"),
        (on_sequence(study, SegmentationParameters(threshold=1.0)), "--threshold 1.0 is outside (0, 1)"),
    ]
    before = node_count(context)
    for run, message in cases:
        with pytest.raises(InputError) as raised:
            run()
        assert message in str(raised.value), (message, str(raised.value))
        assert node_count(context) == before, message


def test_a_segmentation_without_tumour_keeps_the_input_grid_in_its_file(mrml_context, geometry, tmp_path):
    segmentation = add_tumor_segmentation(mrml_context, np.zeros(geometry.shape, np.uint8), geometry, "empty")
    write_node(segmentation, tmp_path / "empty.seg.nrrd")
    image, ijk_to_ras = segment_image(read_mask(mrml_context, tmp_path / "empty.seg.nrrd"))
    assert image.GetExtent() == (0, SHAPE_KJI[2] - 1, 0, SHAPE_KJI[1] - 1, 0, SHAPE_KJI[0] - 1)
    np.testing.assert_allclose(ijk_to_ras, geometry.ijk_to_ras, atol=1e-6)


def test_tumour_statistics_of_two_cubes() -> None:
    label = np.zeros((10, 12, 14), np.uint8)
    label[1:3, 1:3, 1:3] = 1  # 8 voxels
    label[5:9, 5:9, 5:9] = 1  # 64 voxels
    label[3, 3, 3] = 1  # touches the first cube at a corner: 26-connected to it
    statistics = tumor_statistics(label, (2.0, 0.5, 1.0))
    assert (statistics.voxels, statistics.components) == (73, 2)
    assert statistics.volume_ml == pytest.approx(73 * 1e-3)
    assert statistics.largest_component_ml == pytest.approx(64 * 1e-3)
    empty = tumor_statistics(np.zeros_like(label), (1.0, 1.0, 1.0))
    assert (empty.voxels, empty.components, empty.volume_ml, empty.largest_component_ml) == (0, 0, 0.0, 0.0)
