"""Every output lands on exactly the input's voxels: round trips through files, not memory."""

import nibabel
import numpy as np
import pytest
import slicer.util
from SpatioTemporalCommonLib.io import read_series, read_volume, write_node
from SpatioTemporalCommonLib.nodes import add_scalar_volume, add_segmentation, labels_from_segmentation
from SpatioTemporalCommonLib.sequences import series_from_sequence_node, volume_geometry

TOLERANCE_MM = 1e-4


def oblique_affine():
    """RAS affine with rotation about two axes and anisotropic voxels (0.8, 1.3, 3.1 mm)."""
    a, b = np.deg2rad(20.0), np.deg2rad(-12.0)
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rot_x @ rot_z @ np.diag([0.8, 1.3, 3.1])
    affine[:3, 3] = [-40.5, 12.25, 63.0]
    return affine


def corner_indices(shape_ijk):
    """The eight outer voxel corners, as homogeneous IJK coordinates (4, 8)."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape_ijk], indexing="ij")).reshape(3, -1)
    return np.vstack([corners, np.ones(corners.shape[1])])


def assert_corners_match(geometry, affine):
    shape_ijk = geometry.shape[::-1]
    expected = affine @ corner_indices(shape_ijk)
    actual = geometry.ijk_to_ras @ corner_indices(shape_ijk)
    assert np.max(np.abs(actual - expected)) < TOLERANCE_MM


@pytest.fixture
def oblique_nifti(tmp_path):
    data = np.random.default_rng(1).normal(100, 10, (9, 7, 5, 4)).astype(np.float32)  # (i, j, k, t)
    image = nibabel.Nifti1Image(data, oblique_affine())
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 1.5
    image.set_qform(oblique_affine(), code="scanner")
    image.set_sform(oblique_affine(), code="scanner")
    path = tmp_path / "oblique.nii.gz"
    nibabel.save(image, path)
    return path, data


def test_nifti_to_derived_map_file(mrml_context, oblique_nifti, tmp_path):
    path, data = oblique_nifti
    _, series = read_series(mrml_context, path)
    assert np.array_equal(series.frames, np.transpose(data, (3, 2, 1, 0)))
    derived = add_scalar_volume(mrml_context, series.frames.mean(axis=0), series.geometry, "mean")
    written = write_node(derived, tmp_path / "mean.nrrd")
    back = read_volume(mrml_context, written)
    assert_corners_match(volume_geometry(back), oblique_affine())
    assert np.allclose(np.asarray(slicer.util.arrayFromVolume(back)), series.frames.mean(axis=0))


def test_nifti_to_seq_nrrd_file(mrml_context, oblique_nifti, tmp_path):
    path, data = oblique_nifti
    sequence, _ = read_series(mrml_context, path)
    written = write_node(sequence, tmp_path / "series.seq.nrrd")
    _, back = read_series(mrml_context, written)
    assert_corners_match(back.geometry, oblique_affine())
    assert np.array_equal(back.frames, np.transpose(data, (3, 2, 1, 0)))
    assert np.allclose(back.times_s, [0, 1.5, 3.0, 4.5])


def test_nifti_to_4d_nifti_file(mrml_context, oblique_nifti, tmp_path):
    path, data = oblique_nifti
    sequence, _ = read_series(mrml_context, path)
    written = write_node(sequence, tmp_path / "copy.nii.gz")
    image = nibabel.load(written)
    assert np.max(np.abs(image.affine - oblique_affine())) < TOLERANCE_MM
    assert np.array_equal(image.get_fdata(dtype=np.float32), data)
    _, back = read_series(mrml_context, written)
    assert np.allclose(back.times_s, [0, 1.5, 3.0, 4.5])


def test_labelmap_to_segmentation_file(mrml_context, oblique_nifti, tmp_path):
    path, _ = oblique_nifti
    _, series = read_series(mrml_context, path)
    labels = np.zeros(series.geometry.shape, np.uint8)
    labels[1:4, 2:5, 3:7] = 1
    labels[0, 0:2, 0:3] = 2
    segmentation = add_segmentation(mrml_context, labels, series.geometry, "regions", {1: "lesion", 2: "edge"})
    written = write_node(segmentation, tmp_path / "regions.seg.nrrd")
    reference = add_scalar_volume(mrml_context, series.frames[0], series.geometry, "reference")
    back = mrml_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read")
    storage = mrml_context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(written))
    assert storage.ReadData(back)
    names = [back.GetSegmentation().GetNthSegment(n).GetName() for n in range(2)]
    assert names == ["lesion", "edge"]
    assert np.array_equal(labels_from_segmentation(mrml_context, back, reference), labels)
    assert_corners_match(volume_geometry(reference), oblique_affine())


def test_sequence_with_mixed_geometry_is_refused(mrml_context, oblique_nifti):
    from SpatioTemporalCommonLib.errors import InputError

    path, _ = oblique_nifti
    sequence, _ = read_series(mrml_context, path)
    frame = sequence.GetNthDataNode(2)
    frame.SetOrigin(*(np.array(frame.GetOrigin()) + np.array([0.0, 0.0, 1.0])))
    with pytest.raises(InputError, match=r"frame 2 .* different geometry .* resample"):
        series_from_sequence_node(sequence)


def test_ras_and_voxel_coordinates_are_inverse(oblique_nifti, mrml_context):
    path, _ = oblique_nifti
    _, series = read_series(mrml_context, path)
    geometry = series.geometry
    point_kji = np.array([2.0, 4.25, 7.5])
    ras = geometry.kji_to_ras(point_kji)
    expected_ras = oblique_affine() @ np.array([7.5, 4.25, 2.0, 1.0])
    assert np.allclose(ras, expected_ras[:3])
    assert np.allclose(geometry.ras_to_kji(ras), point_kji)
    assert geometry.contains_kji(point_kji) and geometry.contains_kji([-0.5, -0.5, 8.5])
    assert not geometry.contains_kji([0.0, 0.0, 8.6])
