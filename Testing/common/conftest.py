"""Fixtures of the common tests: a writer of small synthetic 4D DICOM series."""

import numpy as np
import pytest
import SimpleITK as sitk


def _write_dicom_series(folder, frames, spacing_ijk, direction_lps, origin_lps, times_s, shifted_frame=None):
    """Write ``frames (t, k, j, i)`` as MR slices with Acquisition Time tags ``times_s`` (s after 10:00:00).

    ``shifted_frame``: index of a frame written 5 mm off the grid of the others (a broken series).
    """
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(direction_lps, float).reshape(3, 3)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.4242"
    for t, frame in enumerate(frames):
        offset = np.array([0.0, 0.0, 5.0]) if t == shifted_frame else np.zeros(3)
        seconds = 36000.0 + times_s[t]
        acquisition_time = f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}{seconds % 60:09.6f}"
        for k, plane in enumerate(frame):
            image = sitk.GetImageFromArray(plane.astype(np.int16))
            image.SetSpacing((spacing_ijk[0], spacing_ijk[1]))
            position = np.asarray(origin_lps) + offset + k * spacing_ijk[2] * direction[:, 2]
            tags = {
                "0008|0060": "MR",
                "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                "0008|0018": f"{series_uid}.{t}.{k}",
                "0020|000d": "1.2.826.0.1.3680043.2.1125.1.4241",
                "0020|000e": series_uid,
                "0020|0013": str(t * len(frame) + k + 1),
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": "\\".join(f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])),
                "0018|0050": f"{spacing_ijk[2]:.6f}",
                "0008|0032": acquisition_time,
                "0018|1314": "12",
                "0018|0080": "4.5",
            }
            for key, value in tags.items():
                image.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"IM_{t:03d}_{k:03d}.dcm"))
            writer.Execute(image)
    return folder


@pytest.fixture
def write_dicom_series():
    """The function that writes a synthetic 4D DICOM series into a folder."""
    return _write_dicom_series
