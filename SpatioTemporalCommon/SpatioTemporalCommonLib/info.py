"""A readable summary of a 4D series: frames, frame times and their source, geometry, values, size.

Used by ``spatiotemporal info`` and by the module panels' input summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .series import Series


@dataclass(frozen=True)
class SeriesSummary:
    """What a user needs to know about a series before analysing it."""

    name: str
    n_frames: int
    times_s: tuple[float, ...] | None
    time_source: str
    shape_ijk: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_ras_mm: tuple[float, float, float]
    directions: tuple[tuple[float, float, float], ...]
    value_range: tuple[float, float]
    n_nonfinite: int
    dtype: str
    memory_bytes: int

    def to_dict(self) -> dict:
        """The summary as plain JSON-friendly values."""
        return {field: getattr(self, field) for field in self.__dataclass_fields__}

    def to_text(self) -> str:
        """Multi-line text, one fact per line."""
        lines = [
            f"name:        {self.name}",
            f"frames:      {self.n_frames}",
            f"frame times: {_format_times(self.times_s)}",
            f"time source: {self.time_source}",
            f"size:        {' x '.join(str(n) for n in self.shape_ijk)} voxels (i x j x k)",
            f"spacing:     {', '.join(f'{v:.4g}' for v in self.spacing_mm)} mm",
            f"origin:      {', '.join(f'{v:.4g}' for v in self.origin_ras_mm)} mm (RAS)",
            "directions:  " + "; ".join(
                f"{axis} = ({', '.join(f'{c:.4f}' for c in vector)})" for axis, vector in zip("ijk", self.directions, strict=True)
            ),
            f"values:      {self.value_range[0]:.6g} to {self.value_range[1]:.6g} ({self.dtype})"
            + (f", {self.n_nonfinite} non-finite" if self.n_nonfinite else ""),
            f"memory:      {_format_bytes(self.memory_bytes)}",
        ]
        return "\n".join(lines)


def summarize_series(series: Series) -> SeriesSummary:
    """Build the :class:`SeriesSummary` of a series."""
    frames = series.frames
    finite = np.isfinite(frames)
    n_finite = int(np.count_nonzero(finite))
    value_range = (float(np.min(frames[finite])), float(np.max(frames[finite]))) if n_finite else (np.nan, np.nan)
    geometry = series.geometry
    return SeriesSummary(
        name=series.name,
        n_frames=series.n_frames,
        times_s=None if series.times_s is None else tuple(float(t) for t in series.times_s),
        time_source=series.time_source,
        shape_ijk=tuple(reversed(geometry.shape)),
        spacing_mm=geometry.spacing_ijk,
        origin_ras_mm=geometry.origin_ras,
        directions=tuple(tuple(float(c) for c in column) for column in geometry.directions.T),
        value_range=value_range,
        n_nonfinite=int(frames.size - n_finite),
        dtype=str(frames.dtype),
        memory_bytes=int(frames.nbytes),
    )


def summarize_sequence_node(sequence_node) -> str:
    """Text summary of a volume sequence node, for the module panels.

    Raises
    ------
    InputError
        If the node is not a usable volume sequence (the message says why).
    """
    from .sequences import series_from_sequence_node

    return summarize_series(series_from_sequence_node(sequence_node)).to_text()


def _format_times(times: tuple[float, ...] | None) -> str:
    if times is None:
        return "none (give --times FILE)"
    shown = ", ".join(f"{t:g}" for t in times[:6]) + (", ..." if len(times) > 6 else "")
    if len(times) < 2:
        return f"{shown} s"
    steps = np.diff(times)
    step = f"step {steps[0]:g} s" if np.allclose(steps, steps[0]) else f"steps {steps.min():g} to {steps.max():g} s"
    return f"{shown} s ({step}, last {times[-1]:g} s)"


def _format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size:.1f} GiB"
