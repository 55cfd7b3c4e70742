"""A 4D series as arrays: frames ``(t, k, j, i)``, frame times in seconds and the voxel geometry.

This is the hand-over object between file or MRML input and the science: readers produce it, the
logic validates it with :func:`validate_series` and gives ``series.voxel_series()`` (time last) to
the science functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry

#: Fewest frames any analysis accepts.
MIN_FRAMES = 3


@dataclass
class Series:
    """Frames of one 4D acquisition on one voxel grid.

    Parameters
    ----------
    frames : ndarray, shape (t, k, j, i)
        Voxel values of every frame.
    times_s : ndarray, shape (t,), or None
        Frame times in seconds, or None when the input carries no time information.
    geometry : VolumeGeometry
        The grid shared by every frame.
    time_source : str
        Where the frame times came from (shown to the user), e.g. ``"sequence index values"``.
    name : str
        A name for output nodes and messages.
    acquisition : dict of str to float
        Acquisition parameters found in the file (e.g. ``flip_angle_deg``, ``repetition_time_ms``,
        ``echo_time_ms``), used to prefill analysis parameters the user did not give.
    """

    frames: np.ndarray
    times_s: np.ndarray | None
    geometry: VolumeGeometry
    time_source: str
    name: str = "series"
    acquisition: dict[str, float] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    def voxel_series(self) -> np.ndarray:
        """The data with time on the last axis, ``(k, j, i, t)`` (a view, no copy)."""
        return np.moveaxis(self.frames, 0, -1)

    def require_times(self) -> np.ndarray:
        """Return the frame times, or explain how to provide them."""
        if self.times_s is None:
            raise InputError(
                f"'{self.name}' carries no frame times: give them with --times FILE "
                "(one time in seconds per line, one line per frame)"
            )
        return self.times_s


def validate_frame_times(times_s: np.ndarray, n_frames: int, source: str = "frame times") -> np.ndarray:
    """Check frame times for shape, count, finiteness and strict increase.

    Parameters
    ----------
    times_s : array_like, shape (t,)
        Frame times in seconds.
    n_frames : int
        Number of frames the times must describe.
    source : str
        Where the times came from, for the message (e.g. ``"times file 'times.txt'"``).

    Returns
    -------
    ndarray of float64
        The validated times.
    """
    times = np.asarray(times_s, dtype=float)
    if times.ndim != 1:
        raise InputError(f"{source} have shape {times.shape}: give one time in seconds per frame as a 1-D array")
    if times.size != n_frames:
        raise InputError(
            f"{source} gives {times.size} frame times for {n_frames} frames: give exactly one time (s) per frame"
        )
    if not np.all(np.isfinite(times)):
        raise InputError(f"{source} contains a frame time that is not finite: give finite times in seconds")
    steps = np.diff(times)
    if np.any(steps == 0):
        frame = int(np.flatnonzero(steps == 0)[0]) + 1
        raise InputError(
            f"{source} has a duplicate frame time ({times[frame]:g} s at frames {frame - 1} and {frame}): "
            "every frame needs its own time; sort the frames by acquisition time and remove duplicates"
        )
    if np.any(steps < 0):
        frame = int(np.flatnonzero(steps < 0)[0]) + 1
        raise InputError(
            f"{source} is not increasing ({times[frame - 1]:g} s then {times[frame]:g} s at frame {frame}): "
            "sort the frames by acquisition time"
        )
    return times


def validate_series(series: Series, *, min_frames: int = MIN_FRAMES, require_times: bool = True) -> None:
    """Refuse a series that no analysis can use.

    Checks the number of frames, that some data is finite, and (optionally) the frame times.
    """
    if series.frames.ndim != 4:
        raise InputError(f"'{series.name}' is not a 4D series (array of {series.frames.ndim} dimensions)")
    if series.n_frames < min_frames:
        raise InputError(
            f"'{series.name}' has {series.n_frames} frame(s); at least {min_frames} are needed: "
            "give the whole time series"
        )
    if not np.any(np.isfinite(series.frames)):
        raise InputError(f"'{series.name}' contains no finite values (all NaN): check the input file")
    if require_times:
        validate_frame_times(series.require_times(), series.n_frames, series.time_source)
