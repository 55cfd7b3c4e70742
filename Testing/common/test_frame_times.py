"""Frame times from each source, in the documented order of precedence, and the millisecond trap."""

import nibabel
import numpy as np
import pytest
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.frame_times import nifti_repetition_time_s, read_times_file
from SpatioTemporalCommonLib.io import read_series, write_node
from SpatioTemporalCommonLib.sequences import add_volume_sequence
from SpatioTemporalCommonLib.synthetic import synthetic_series


def write_nifti(path, pixdim4, time_unit, n_frames=5):
    image = nibabel.Nifti1Image(np.ones((4, 3, 2, n_frames), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    image.header.set_xyzt_units("mm", time_unit)
    image.header["pixdim"][4] = pixdim4
    nibabel.save(image, path)
    return path


@pytest.mark.parametrize(
    ("pixdim4", "unit", "expected_tr"),
    [(2.0, "sec", 2.0), (1500.0, "msec", 1.5), (750000.0, "usec", 0.75), (2.5, "unknown", 2.5)],
)
def test_nifti_tr_with_its_unit(tmp_path, mrml_context, pixdim4, unit, expected_tr):
    path = write_nifti(tmp_path / "bold.nii.gz", pixdim4, unit)
    _, series = read_series(mrml_context, path)
    assert np.allclose(series.times_s, np.arange(5) * expected_tr)
    assert "NIfTI TR" in series.time_source


def test_millisecond_tr_stored_as_seconds_is_refused(tmp_path, mrml_context):
    path = write_nifti(tmp_path / "example4d.nii.gz", 2000.0, "sec")
    with pytest.raises(InputError, match=r"2000 sec .* not plausible .*--times"):
        read_series(mrml_context, path)


def test_times_file_wins_over_the_millisecond_trap(tmp_path, mrml_context):
    path = write_nifti(tmp_path / "example4d.nii.gz", 2000.0, "sec")
    times = tmp_path / "times.txt"
    times.write_text("# acquisition times\n0\n2.0\n4.5\n7\n9.5\n")
    _, series = read_series(mrml_context, path, times_file=times)
    assert np.allclose(series.times_s, [0, 2, 4.5, 7, 9.5])
    assert series.time_source == "times file times.txt"


def test_missing_tr_leaves_times_unknown(tmp_path, mrml_context):
    path = write_nifti(tmp_path / "no_tr.nii.gz", 0.0, "sec")
    _, series = read_series(mrml_context, path)
    assert series.times_s is None
    with pytest.raises(InputError, match="--times"):
        series.require_times()
    assert nifti_repetition_time_s(path)[0] is None


def test_seq_nrrd_index_values(tmp_path, mrml_context):
    series = synthetic_series(n_frames=4)
    irregular = np.array([0.0, 3.5, 5.0, 11.25])
    sequence = add_volume_sequence(mrml_context, series.frames, irregular, series.geometry, "irregular")
    path = write_node(sequence, tmp_path / "irregular.seq.nrrd")
    _, back = read_series(mrml_context, path)
    assert np.allclose(back.times_s, irregular)
    assert back.time_source.startswith("sequence index values")


def test_seq_nrrd_index_in_milliseconds(tmp_path, mrml_context):
    series = synthetic_series(n_frames=3)
    sequence = add_volume_sequence(mrml_context, series.frames, [0, 1500, 3000], series.geometry, "ms")
    sequence.SetIndexUnit("ms")
    path = write_node(sequence, tmp_path / "ms.seq.nrrd")
    _, back = read_series(mrml_context, path)
    assert np.allclose(back.times_s, [0, 1.5, 3.0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0\n1\n1\n3\n4\n", "duplicate frame time"),
        ("0\n2\n1\n3\n4\n", "not increasing"),
        ("0\n1\n2\n", "3 frame times for 5 frames"),
        ("0\n1\ntwo\n3\n4\n", "'two' is not a number"),
        ("", "empty"),
    ],
)
def test_bad_times_file(tmp_path, mrml_context, content, message):
    path = write_nifti(tmp_path / "bold.nii.gz", 2.0, "sec")
    times = tmp_path / "times.txt"
    times.write_text(content)
    with pytest.raises(InputError, match=message):
        read_series(mrml_context, path, times_file=times)


def test_missing_times_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_times_file(tmp_path / "absent.txt")


def test_times_file_replaces_the_sequence_index(tmp_path, mrml_context):
    """The sequence node the logic reads carries the chosen times, not the file's frame numbers."""
    from SpatioTemporalCommonLib.sequences import series_from_sequence_node

    path = write_nifti(tmp_path / "no_tr.nii.gz", 0.0, "sec")
    times = tmp_path / "times.txt"
    times.write_text("0\n1.5\n3\n6\n12\n")
    sequence, _ = read_series(mrml_context, path, times_file=times)
    assert np.allclose(series_from_sequence_node(sequence).times_s, [0, 1.5, 3, 6, 12])
    assert mrml_context.scene.GetNodesByClass("vtkMRMLSequenceNode").GetNumberOfItems() == 1


@pytest.mark.parametrize("suffix", [".nii.gz", ".seq.nrrd"])
def test_given_repetition_time_wins_over_the_file(tmp_path, mrml_context, suffix):
    from SpatioTemporalCommonLib.sequences import series_from_sequence_node

    path = write_nifti(tmp_path / "example4d.nii.gz", 2000.0, "sec")
    if suffix == ".seq.nrrd":
        sequence, _ = read_series(mrml_context, path, repetition_time_s=1.0)
        path = write_node(sequence, tmp_path / "series.seq.nrrd")
    sequence, series = read_series(mrml_context, path, repetition_time_s=2.5)
    assert np.allclose(series.times_s, np.arange(5) * 2.5)
    assert series.time_source == "given TR 2.5 s"
    assert np.allclose(series_from_sequence_node(sequence).times_s, np.arange(5) * 2.5)


def test_implausible_given_repetition_time(tmp_path, mrml_context):
    path = write_nifti(tmp_path / "bold.nii.gz", 2.0, "sec")
    with pytest.raises(InputError, match="not plausible"):
        read_series(mrml_context, path, repetition_time_s=2000.0)
