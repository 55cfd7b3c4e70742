"""Reading and writing files through Slicer's storage nodes (and SimpleITK where Slicer has none).

Supported: 3D volumes ``.nrrd`` / ``.nhdr`` / ``.nii`` / ``.nii.gz`` (Slicer's archetype storage
node); 4D series ``.seq.nrrd`` / 4D ``.nrrd`` (Slicer's volume-sequence storage node), 4D
``.nii`` / ``.nii.gz`` (grid from ITK, the reader Slicer itself uses for 3D NIfTI, so both apply the
same sform/qform rules; values from nibabel) and DICOM series folders (SimpleITK/GDCM, 4D grouped by trigger or
acquisition time); segmentations ``.seg.nrrd``; tables ``.csv`` / ``.tsv``.
Every failure becomes an :class:`~SpatioTemporalCommonLib.errors.InputError` that names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer

from .context import MRMLContext
from .errors import InputError
from .frame_times import (
    MAX_PLAUSIBLE_TR_S,
    nifti_repetition_time_s,
    read_times_file,
    times_from_repetition_time,
)
from .geometry import geometry_from_affine, lps_to_ras_affine
from .sequences import (
    ACQUISITION_ATTRIBUTES,
    add_volume_sequence,
    series_from_sequence_node,
    set_acquisition_attributes,
)
from .series import Series, validate_frame_times

SEQUENCE_SUFFIXES = (".seq.nrrd", ".seq.nhdr")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def file_suffix(path: str | Path) -> str:
    """Lower-case suffix including double suffixes such as ``.seq.nrrd`` and ``.nii.gz``."""
    name = Path(path).name.lower()
    for suffix in (*SEQUENCE_SUFFIXES, ".seg.nrrd", ".nii.gz"):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def stem(path: str | Path) -> str:
    """File name without its (possibly double) suffix."""
    name = Path(path).name
    return name[: len(name) - len(file_suffix(path))] if file_suffix(path) else name


def require_existing(path: str | Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise an InputError naming ``what`` was expected."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} '{path}' does not exist: check the path")
    return path


# --------------------------------------------------------------------------- 4D series


def read_series(context: MRMLContext, path: str | Path, *, times_file: str | Path | None = None,
                repetition_time_s: float | None = None):
    """Read a 4D series into a new sequence node.

    Parameters
    ----------
    path : str or Path
        ``.seq.nrrd``, 4D ``.nrrd``, 4D ``.nii(.gz)`` or a folder with one DICOM series.
    times_file : str or Path, optional
        Text file with one frame time (s) per line; wins over every other source of frame times.
    repetition_time_s : float, optional
        Time between frames (s), e.g. a ``--tr`` option; wins over the times stored in the file
        (a NIfTI header's TR is then not read, so an implausible one does not stop the reading).

    Returns
    -------
    sequence_node : vtkMRMLSequenceNode
        Its index holds the frame times that were chosen, in seconds.
    series : Series
        The frames, geometry and frame times (with their source).
    """
    path = require_existing(path, "input")
    suffix = file_suffix(path)
    override = _override_times(times_file, repetition_time_s)
    if path.is_dir():
        sequence, series = _read_dicom_series(context, path)
    elif suffix in SEQUENCE_SUFFIXES or suffix in NRRD_SUFFIXES:
        sequence, series = _read_nrrd_series(context, path)
    elif suffix in NIFTI_SUFFIXES:
        sequence, series = _read_nifti_series(context, path, read_header_times=override is None)
    else:
        raise InputError(
            f"'{path.name}' is not a supported 4D format: give a .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz "
            "or a DICOM folder"
        )
    if override is not None:
        times, source = override(series.n_frames)
        series.times_s, series.time_source = times, source
        _remove_nodes(context, sequence.GetStorageNode(), sequence)
        sequence = _sequence_from_series(context, series)
    return sequence, series


def _override_times(times_file: str | Path | None, repetition_time_s: float | None):
    """A function of the frame count giving ``(times, source)`` from the user's options, or None."""
    if times_file is not None:
        values = read_times_file(times_file)
        return lambda n: (validate_frame_times(values, n, f"times file '{times_file}'"),
                          f"times file {Path(times_file).name}")
    if repetition_time_s is not None:
        if not 0 < repetition_time_s <= MAX_PLAUSIBLE_TR_S:
            raise InputError(f"a repetition time of {repetition_time_s:g} s is not plausible: give the time "
                             f"between frames in seconds (at most {MAX_PLAUSIBLE_TR_S:g})")
        return lambda n: (times_from_repetition_time(repetition_time_s, n), f"given TR {repetition_time_s:g} s")
    return None


def _read_nrrd_series(context: MRMLContext, path: Path):
    header = _nrrd_header(path)
    dimension = _nrrd_dimension(header)
    if dimension == 3:
        raise InputError(f"'{path.name}' is a 3D image but a 4D series (3D + time) is needed")
    sequence = context.scene.AddNewNodeByClass("vtkMRMLSequenceNode", stem(path))
    storage = context.scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(path))
    sequence.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(sequence):
        _remove_nodes(context, sequence, storage)
        raise InputError(f"could not read '{path.name}' as a volume sequence: the file is damaged or not NRRD")
    key_values = _nrrd_key_values(header)
    for attribute in ACQUISITION_ATTRIBUTES.values():
        if attribute in key_values and not sequence.GetAttribute(attribute):
            sequence.SetAttribute(attribute, key_values[attribute].strip())
    return sequence, series_from_sequence_node(sequence, stem(path))


def _nrrd_header(path: Path) -> list[str]:
    """The header lines of a NRRD file (refusing files without the NRRD magic)."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(65536).split(b"\n\n", 1)[0].decode("latin-1")
    except OSError as error:
        raise InputError(f"cannot read '{path.name}' ({error.strerror}): check the file's permissions") from None
    if not header.startswith("NRRD"):
        raise InputError(f"'{path.name}' is not a NRRD file (no NRRD magic): check the file")
    return header.splitlines()


def _nrrd_dimension(header: list[str]) -> int | None:
    """The ``dimension`` field of a NRRD header, or None if absent."""
    for line in header:
        if line.lower().startswith("dimension:"):
            return int(line.split(":", 1)[1])
    return None


def _nrrd_key_values(header: list[str]) -> dict[str, str]:
    """The ``key:=value`` pairs of a NRRD header."""
    return dict(line.split(":=", 1) for line in header if ":=" in line)


def _read_nifti_series(context: MRMLContext, path: Path, *, read_header_times: bool):
    """Read a 4D NIfTI; its TR is only read (and checked) when no times file replaces it.

    The voxel grid comes from ITK's reading of the header (so it agrees with the 3D masks that
    Slicer's storage node reads through ITK, also for headers without qform/sform); the voxel values
    come from nibabel, which keeps NaN values (ITK's NIfTI reader turns them into 0).
    """
    import nibabel
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        image = nibabel.load(str(path))
    except (RuntimeError, OSError, ValueError, nibabel.filebasedimages.ImageFileError):
        raise InputError(f"could not read '{path.name}' as NIfTI: the file is damaged or not NIfTI") from None
    dimension = len(image.shape)
    if dimension != 4:
        raise InputError(f"'{path.name}' is a {dimension}D image but a 4D series (3D + time) is needed")
    frames = np.transpose(np.asanyarray(image.dataobj), (3, 2, 1, 0))  # (i, j, k, t) -> (t, k, j, i)
    direction = np.array(reader.GetDirection()).reshape(4, 4)[:3, :3]
    affine = lps_to_ras_affine(direction, np.array(reader.GetSpacing()[:3]), np.array(reader.GetOrigin()[:3]))
    geometry = geometry_from_affine(affine, frames.shape[1:])
    tr_s, source = nifti_repetition_time_s(path) if read_header_times else (None, "replaced by a times file")
    times = times_from_repetition_time(tr_s, frames.shape[0]) if tr_s is not None else None
    series = Series(np.ascontiguousarray(frames), times, geometry, source, stem(path))
    return _sequence_from_series(context, series), series


def _read_dicom_series(context: MRMLContext, folder: Path):
    from .dicom import read_dicom_frames

    frames, affine, times, source, acquisition = read_dicom_frames(folder)
    series = Series(frames, times, geometry_from_affine(affine, frames.shape[1:]), source, folder.name, acquisition)
    return _sequence_from_series(context, series), series


def _sequence_from_series(context: MRMLContext, series: Series):
    times = series.times_s if series.times_s is not None else np.arange(series.n_frames, dtype=float)
    sequence = add_volume_sequence(context, series.frames, times, series.geometry, series.name)
    set_acquisition_attributes(sequence, series.acquisition)
    if series.times_s is None:
        sequence.SetIndexName("frame")
        sequence.SetIndexUnit("")
    return sequence


# --------------------------------------------------------------------------- 3D volumes


def read_volume(context: MRMLContext, path: str | Path, *, labelmap: bool = False, what: str = "volume"):
    """Read a 3D volume (scalar or labelmap) through Slicer's archetype storage node."""
    path = require_existing(path, what)
    if path.is_dir():
        raise InputError(f"{what} '{path}' is a folder: give a single .nrrd or .nii(.gz) file")
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = context.scene.AddNewNodeByClass(class_name, stem(path))
    storage = context.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if labelmap:
        storage.SetCenterImage(False)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node) or node.GetImageData() is None:
        _remove_nodes(context, node, storage)
        raise InputError(f"could not read {what} '{path.name}': the file is damaged or not an image")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        _remove_nodes(context, node, storage)
        raise InputError(f"{what} '{path.name}' has several components per voxel: give a single-component image")
    return node


def read_mask(context: MRMLContext, path: str | Path, *, what: str = "mask"):
    """Read a mask: a segmentation (``.seg.nrrd``) or a label volume (non-zero = inside)."""
    path = require_existing(path, what)
    if file_suffix(path) != ".seg.nrrd":
        return read_volume(context, path, labelmap=True, what=what)
    node = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", stem(path))
    storage = context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_nodes(context, node, storage)
        raise InputError(f"could not read {what} '{path.name}' as a segmentation: the file is damaged")
    return node


def _remove_nodes(context: MRMLContext, *nodes) -> None:
    for node in nodes:
        if node is not None and context.scene.IsNodePresent(node):
            context.scene.RemoveNode(node)


# --------------------------------------------------------------------------- writing


def write_node(node, path: str | Path) -> Path:
    """Write a volume, labelmap, volume sequence, segmentation or table node to ``path``.

    The storage class follows Slicer's choice for the node and extension; 4D NIfTI is written with
    SimpleITK (Slicer's sequence storage node writes NRRD only).
    """
    path = Path(path)
    suffix = file_suffix(path)
    if node.IsA("vtkMRMLSequenceNode") and suffix in NIFTI_SUFFIXES:
        _write_nifti_sequence(node, path)
        return path
    storage_class = _storage_class_for(node)
    storage = getattr(slicer, storage_class)()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"could not write '{path}'")
    return path


def _storage_class_for(node) -> str:
    if node.IsA("vtkMRMLSequenceNode"):
        return "vtkMRMLVolumeSequenceStorageNode"
    if node.IsA("vtkMRMLSegmentationNode"):
        return "vtkMRMLSegmentationStorageNode"
    if node.IsA("vtkMRMLTableNode"):
        return "vtkMRMLTableStorageNode"
    if node.IsA("vtkMRMLVolumeNode"):
        return "vtkMRMLVolumeArchetypeStorageNode"
    raise TypeError(f"no file format for {node.GetClassName()}")


def _write_nifti_sequence(sequence_node, path: Path) -> None:
    import SimpleITK as sitk

    series = series_from_sequence_node(sequence_node)
    image = sitk.GetImageFromArray(series.frames, isVector=False)
    affine = series.geometry.ijk_to_ras
    spacing = series.geometry.spacing_ijk
    lps_direction = np.diag([-1.0, -1.0, 1.0]) @ (affine[:3, :3] / np.array(spacing))
    direction = np.eye(4)
    direction[:3, :3] = lps_direction
    frame_step = float(np.median(np.diff(series.times_s))) if series.times_s is not None else 1.0
    image.SetSpacing((*spacing, frame_step))
    image.SetOrigin((*(np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]), 0.0))
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(path), useCompression=True)

