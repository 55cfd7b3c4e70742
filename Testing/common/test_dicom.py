"""4D DICOM series: frames grouped by acquisition time, geometry converted from LPS to RAS."""

import numpy as np
import pytest
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.io import read_series

ROTATION_LPS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # sagittal slices


def make_frames():
    rng = np.random.default_rng(3)
    return rng.integers(0, 1000, size=(4, 3, 5, 6)).astype(np.int16)  # (t, k, j, i)


def test_4d_dicom_by_acquisition_time(tmp_path, mrml_context, write_dicom_series):
    frames = make_frames()
    times = [0.0, 4.5, 9.0, 13.5]
    folder = write_dicom_series(tmp_path / "dce", frames, (0.7, 0.9, 2.0), ROTATION_LPS, (10.0, -5.0, 3.0), times)
    _, series = read_series(mrml_context, folder)
    assert np.array_equal(series.frames, frames)
    assert np.allclose(series.times_s, times)
    assert series.time_source == "DICOM acquisition time"
    assert series.acquisition == {"flip_angle_deg": 12.0, "repetition_time_ms": 4.5}
    expected = np.eye(4)
    expected[:3, :3] = np.diag([-1, -1, 1]) @ ROTATION_LPS @ np.diag([0.7, 0.9, 2.0])
    expected[:3, 3] = [-10.0, 5.0, 3.0]
    assert np.allclose(series.geometry.ijk_to_ras, expected, atol=1e-4)


def test_dicom_frames_on_different_grids_are_refused(tmp_path, mrml_context, write_dicom_series):
    folder = write_dicom_series(tmp_path / "broken", make_frames(), (1.0, 1.0, 2.0), np.eye(3), (0.0, 0.0, 0.0),
                                [0, 5, 10, 15], shifted_frame=2)
    with pytest.raises(InputError, match="different grids"):
        read_series(mrml_context, folder)


def test_folder_without_dicom(tmp_path, mrml_context):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM series"):
        read_series(mrml_context, tmp_path)
