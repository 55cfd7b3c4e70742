"""Reading a DICOM folder as a 4D series with SimpleITK (GDCM).

The files of the largest series in the folder are grouped into frames by the first tag that varies
between them: Trigger Time (0018,1060, ms), Acquisition Time (0008,0032, hhmmss.frac), Temporal
Position Identifier (0020,0100). Within a frame, slices are ordered by their position along the
slice normal, as Slicer's DICOM scalar-volume plugin does.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import lps_to_ras_affine

TRIGGER_TIME = "0018|1060"
ACQUISITION_TIME = "0008|0032"
TEMPORAL_POSITION = "0020|0100"
IMAGE_POSITION = "0020|0032"
IMAGE_ORIENTATION = "0020|0037"

#: DICOM tags of acquisition parameters, by the name the analyses use (values in the tags' units).
ACQUISITION_TAGS = {
    "flip_angle_deg": "0018|1314",
    "repetition_time_ms": "0018|0080",
    "echo_time_ms": "0018|0081",
    "magnetic_field_strength_T": "0018|0087",
}


def _acquisition_time_seconds(text: str) -> float:
    """Seconds since midnight from a DICOM TM value ``hhmmss.frac``."""
    text = text.strip()
    hours, minutes, seconds = float(text[0:2]), float(text[2:4] or 0), float(text[4:] or 0)
    return 3600.0 * hours + 60.0 * minutes + seconds


_TIME_TAGS = (
    (TRIGGER_TIME, lambda text: float(text) / 1000.0, "DICOM trigger time"),
    (ACQUISITION_TIME, _acquisition_time_seconds, "DICOM acquisition time"),
    (TEMPORAL_POSITION, float, "none (DICOM temporal position identifiers order the frames but carry no time)"),
)


def _file_tags(path: str) -> dict[str, str]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}


def _largest_series_files(folder: Path) -> list[str]:
    import SimpleITK as sitk

    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(f"folder '{folder}' contains no DICOM series: give a folder of DICOM image files")
    file_lists = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids]
    return list(max(file_lists, key=len))


def _group_by_time(files: list[str], tags: list[dict[str, str]]):
    for tag, to_seconds, description in _TIME_TAGS:
        values = [entry.get(tag) for entry in tags]
        if any(value is None or not value.strip() for value in values) or len(set(values)) < 2:
            continue
        groups: dict[float, list[int]] = defaultdict(list)
        for index, value in enumerate(values):
            groups[to_seconds(value)].append(index)
        times = np.array(sorted(groups))
        return times, [[files[i] for i in groups[t]] for t in times], [[tags[i] for i in groups[t]] for t in times], description
    raise InputError(
        "the DICOM series has no tag that tells frames apart (trigger time, acquisition time or temporal "
        "position): export it as a 4D NIfTI or .seq.nrrd, or load it as a 3D volume"
    )


def _sort_by_slice_position(files: list[str], tags: list[dict[str, str]]) -> list[str]:
    orientation = np.array([float(v) for v in tags[0][IMAGE_ORIENTATION].split("\\")])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [np.dot(normal, [float(v) for v in entry[IMAGE_POSITION].split("\\")]) for entry in tags]
    return [files[i] for i in np.argsort(positions)]


def acquisition_parameters(tags: dict[str, str]) -> dict[str, float]:
    """Numeric acquisition parameters present in one file's tags (see :data:`ACQUISITION_TAGS`)."""
    found = {}
    for name, tag in ACQUISITION_TAGS.items():
        try:
            found[name] = float(tags[tag].strip())
        except (KeyError, ValueError):
            continue
    return found


def read_dicom_frames(folder: Path):
    """Read the frames of the largest DICOM series in ``folder``.

    Returns
    -------
    frames : ndarray, shape (t, k, j, i)
    affine_ras : ndarray, shape (4, 4)
        IJK-to-RAS of every frame.
    times_s : ndarray, shape (t,), or None
        Frame times relative to the first frame (s); None when only temporal position identifiers
        tell the frames apart.
    source : str
        Which tag gave the times.
    acquisition : dict of str to float
        Acquisition parameters of the first file (:func:`acquisition_parameters`).
    """
    import SimpleITK as sitk

    files = _largest_series_files(folder)
    tags = [_file_tags(f) for f in files]
    times, frame_files, frame_tags, source = _group_by_time(files, tags)
    sizes = {len(group) for group in frame_files}
    if len(sizes) != 1:
        raise InputError(
            f"the DICOM frames in '{folder}' have different numbers of slices ({sorted(sizes)}): "
            "the series is incomplete; export it again"
        )
    frames, affine = [], None
    for group, group_tags in zip(frame_files, frame_tags, strict=True):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(_sort_by_slice_position(group, group_tags))
        image = reader.Execute()
        frame_affine = lps_to_ras_affine(
            np.array(image.GetDirection()).reshape(3, 3), np.array(image.GetSpacing()), np.array(image.GetOrigin())
        )
        if affine is not None and not np.allclose(affine, frame_affine, atol=1e-4):
            raise InputError(f"the DICOM frames in '{folder}' lie on different grids: resample them onto one grid")
        affine = frame_affine
        frames.append(sitk.GetArrayFromImage(image))
    relative_times = None if source.startswith("none") else times - times[0]
    return np.stack(frames), affine, relative_times, source, acquisition_parameters(tags[0])
