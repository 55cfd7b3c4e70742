"""Frame times of a series: from a text file, a NIfTI header's TR, or DICOM tags.

Precedence on the command line: a ``--times`` file wins; otherwise the ``.seq.nrrd`` index values;
otherwise the NIfTI repetition time ``pixdim[4]`` read with its ``xyzt_units``. A TR above
:data:`MAX_PLAUSIBLE_TR_S` read as seconds is almost certainly milliseconds written with the wrong
unit (nibabel's own ``example4d.nii.gz`` has this trap), so it is refused, never silently used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

#: A repetition time above this many seconds is treated as a unit error.
MAX_PLAUSIBLE_TR_S = 100.0

_NIFTI_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def read_times_file(path: str | Path) -> np.ndarray:
    """Read frame times (s) from a text file with one number per line.

    Blank lines and lines starting with ``#`` are ignored; commas and tabs also separate values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"times file '{path}' does not exist: give a text file with one time (s) per line")
    values = []
    for line_number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").replace("\t", " ").strip()
        for token in text.split():
            try:
                values.append(float(token))
            except ValueError:
                raise InputError(
                    f"times file '{path}' line {line_number}: '{token}' is not a number; "
                    "write one time in seconds per line"
                ) from None
    if not values:
        raise InputError(f"times file '{path}' is empty: write one time in seconds per line")
    return np.asarray(values, dtype=float)


def nifti_repetition_time_s(path: str | Path) -> tuple[float | None, str]:
    """Repetition time of a NIfTI file in seconds, from ``pixdim[4]`` and ``xyzt_units``.

    Returns
    -------
    tr_s : float or None
        The TR in seconds, or None when the header has none (``pixdim[4]`` zero).
    description : str
        What was read, e.g. ``"NIfTI TR 2 s (pixdim[4] = 2, unit sec)"``.

    Raises
    ------
    InputError
        When the TR is implausibly large for its unit (a milliseconds value labelled seconds).
    """
    import nibabel

    header = nibabel.load(str(path)).header
    raw = float(header["pixdim"][4])
    if raw <= 0 or not np.isfinite(raw):
        return None, "none in the NIfTI header (pixdim[4] is 0)"
    unit = header.get_xyzt_units()[1]
    scale = _NIFTI_TIME_UNIT_SECONDS.get(unit, 1.0)
    unit_text = unit if unit in _NIFTI_TIME_UNIT_SECONDS else f"{unit}, read as seconds"
    tr_s = raw * scale
    if tr_s > MAX_PLAUSIBLE_TR_S:
        raise InputError(
            f"'{Path(path).name}' has a repetition time of {raw:g} {unit_text} = {tr_s:g} s, which is not "
            "plausible (probably milliseconds stored as seconds): give the frame times with --times FILE"
        )
    return tr_s, f"NIfTI TR {tr_s:g} s (pixdim[4] = {raw:g}, unit {unit_text})"


def times_from_repetition_time(tr_s: float, n_frames: int) -> np.ndarray:
    """Frame start times ``0, TR, 2 TR, ...`` in seconds."""
    return np.arange(n_frames, dtype=float) * float(tr_s)
