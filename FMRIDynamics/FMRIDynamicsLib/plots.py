"""Figures of an fMRI analysis (PNG, matplotlib's Agg backend): carpet plot, map montage, region matrix.

The carpet plot follows Power (2017): one row per voxel (detrended, z-scored, grey scale from -2 to
2), with framewise displacement and standardised DVARS above it and censored frames marked.

References
----------
Power JD. A simple but useful way to assess fMRI scan qualities. NeuroImage 2017;154:150-158.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .quality import CarpetMatrix

MAX_CARPET_ROWS = 1200
MAX_MONTAGE_SLICES = 12


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    return pyplot


def save_carpet_plot(
    path: str | Path,
    carpet: CarpetMatrix,
    times_s: np.ndarray,
    fd_mm: np.ndarray,
    dvars_standardised: np.ndarray,
    censored: np.ndarray,
) -> Path:
    """Write the carpet plot with FD and standardised DVARS traces.

    Parameters
    ----------
    carpet : CarpetMatrix
        Rows of the plot (:func:`FMRIDynamicsLib.quality.carpet_matrix`); at most 1200 evenly spaced
        rows are drawn.
    times_s : numpy.ndarray
        ``(T,)`` frame times, in s.
    fd_mm, dvars_standardised : numpy.ndarray
        ``(T,)`` framewise displacement (mm) and standardised DVARS per frame (NaN where undefined).
    censored : numpy.ndarray
        ``(T,)`` bool, censored frames (shaded).
    """
    pyplot = _pyplot()
    rows = carpet.values[:: max(1, carpet.values.shape[0] // MAX_CARPET_ROWS)]
    figure, (trace_axis, carpet_axis) = pyplot.subplots(
        2, 1, figsize=(9, 6), dpi=110, sharex=True, gridspec_kw={"height_ratios": (1, 3)}
    )
    trace_axis.plot(times_s, fd_mm, color="tab:red", label="FD (mm)")
    trace_axis.plot(times_s, dvars_standardised, color="tab:blue", label="standardised DVARS")
    for time in times_s[censored]:
        trace_axis.axvspan(
            time - 0.5 * (times_s[1] - times_s[0]),
            time + 0.5 * (times_s[1] - times_s[0]),
            color="0.85",
            linewidth=0,
        )
    trace_axis.legend(loc="upper right", fontsize=8)
    extent = (times_s[0], times_s[-1], rows.shape[0], 0)
    carpet_axis.imshow(
        rows, aspect="auto", cmap="gray", vmin=-2.0, vmax=2.0, extent=extent, interpolation="nearest"
    )
    carpet_axis.set_xlabel("time (s)")
    carpet_axis.set_ylabel(f"voxels ({carpet.values.shape[0]}, z-scored)")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)


def save_map_montage(path: str | Path, values_kji: np.ndarray, *, title: str, unit: str) -> Path:
    """Write up to 12 evenly spaced k-slices of a map with a symmetric diverging colour scale.

    Parameters
    ----------
    values_kji : numpy.ndarray
        ``(k, j, i)`` map; NaN voxels are not drawn.
    title, unit : str
        Figure title and colour-bar unit.
    """
    pyplot = _pyplot()
    finite = values_kji[np.isfinite(values_kji)]
    limit = float(np.percentile(np.abs(finite), 98)) if finite.size else 0.0
    limit = limit if limit > 0 else 1.0
    slices = np.unique(
        np.linspace(0, values_kji.shape[0] - 1, min(MAX_MONTAGE_SLICES, values_kji.shape[0]))
        .round()
        .astype(int)
    )
    n_columns = min(4, slices.size)
    n_rows = int(np.ceil(slices.size / n_columns))
    figure, axes = pyplot.subplots(
        n_rows, n_columns, figsize=(2.4 * n_columns + 1, 2.4 * n_rows + 0.5), dpi=110, squeeze=False
    )
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, k in zip(axes.ravel(), slices, strict=False):
        axis.set_facecolor("black")
        image = axis.imshow(
            values_kji[k], origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        axis.set_title(f"k = {k}", fontsize=8)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=unit)
    figure.suptitle(title)
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)


def save_matrix_figure(
    path: str | Path, matrix: np.ndarray, names: Sequence[str], *, title: str, unit: str
) -> Path:
    """Write a region x region matrix as a heat map with a symmetric colour scale.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``(R, R)`` values (NaN drawn blank).
    names : sequence of str
        Region names, in row order.
    title, unit : str
        Figure title and colour-bar unit.
    """
    pyplot = _pyplot()
    finite = matrix[np.isfinite(matrix)]
    limit = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
    size = min(12.0, 3.0 + 0.35 * len(names))
    figure, axis = pyplot.subplots(figsize=(size + 1.2, size), dpi=110)
    image = axis.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    figure.colorbar(image, ax=axis, label=unit)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)
