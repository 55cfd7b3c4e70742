"""Figures of an echo analysis: the left-ventricular volume curve; feature asymmetry on a long-axis slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .volumes import VolumeIndices

FA_OPAQUE_AT = 0.5
"""Feature asymmetry at and above which the overlay is fully opaque (lower values fade out)."""
FA_COLORMAP = "autumn"


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    return pyplot


def plot_volume_curve(
    axis,
    times_s: np.ndarray,
    volumes_ml: np.ndarray,
    indices: VolumeIndices,
    *,
    true_volumes_ml: np.ndarray | None = None,
) -> None:
    """Draw V(t) with end-diastole and end-systole marked, and EDV / ESV / SV / EF in the title.

    Parameters
    ----------
    axis : matplotlib.axes.Axes
        Where to draw.
    times_s : ndarray, shape (T,)
        Frame times (s); when any is NaN the curve is drawn against the frame number.
    volumes_ml : ndarray, shape (T,)
        Measured cavity volume per frame (ml).
    indices : VolumeIndices
        EDV, ESV, SV (ml), EF (percent), ED and ES frames.
    true_volumes_ml : ndarray, shape (T,), optional
        Known volumes (ml) drawn for comparison.
    """
    timed = bool(np.isfinite(times_s).all())
    x = np.asarray(times_s) if timed else np.arange(volumes_ml.size)
    if true_volumes_ml is not None:
        axis.plot(x, true_volumes_ml, "--", color="0.45", label="true")
    axis.plot(x, volumes_ml, "o-", color="tab:blue", markersize=4, label="measured")
    ed, es = indices.ed_frame, indices.es_frame
    axis.plot(x[ed], volumes_ml[ed], "s", color="tab:red", label=f"end-diastole (frame {ed})")
    axis.plot(x[es], volumes_ml[es], "v", color="tab:green", label=f"end-systole (frame {es})")
    axis.set_xlabel("time (s)" if timed else "frame")
    axis.set_ylabel("LV cavity volume (ml)")
    axis.set_title(
        f"EDV {indices.edv_ml:.1f} ml, ESV {indices.esv_ml:.1f} ml, SV {indices.sv_ml:.1f} ml, "
        f"EF {indices.ef_percent:.1f} %",
        fontsize=9,
    )
    axis.legend(fontsize=8)


def save_volume_curve_figure(
    path: str | Path, times_s: np.ndarray, volumes_ml: np.ndarray, indices: VolumeIndices
) -> Path:
    """Write a PNG of the volume curve (see :func:`plot_volume_curve`)."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(6.5, 4.2), dpi=110)
    plot_volume_curve(axis, times_s, volumes_ml, indices)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)


def save_long_axis_figure(
    path: str | Path,
    image: np.ndarray,
    feature_asymmetry: np.ndarray,
    cavity: np.ndarray,
    pixel_mm: tuple[float, float],
    times_s: np.ndarray,
    volumes_ml: np.ndarray,
    indices: VolumeIndices,
    *,
    true_volumes_ml: np.ndarray | None = None,
) -> Path:
    """Write a PNG: feature asymmetry and the cavity outline over a long-axis slice, beside V(t).

    Parameters
    ----------
    image, feature_asymmetry, cavity : ndarray, shape (rows, columns)
        One slice of the echo image, of the feature asymmetry (in [0, 1]) and of the cavity mask;
        rows run along the beam (depth, drawn downwards).
    pixel_mm : tuple of float
        Pixel size (row, column) in mm.
    times_s, volumes_ml, indices, true_volumes_ml
        As for :func:`plot_volume_curve`.
    """
    pyplot = _pyplot()
    figure, (slice_axis, curve_axis) = pyplot.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    rows, columns = image.shape
    extent = (0.0, columns * pixel_mm[1], rows * pixel_mm[0], 0.0)
    slice_axis.imshow(image, cmap="gray", extent=extent, interpolation="nearest")
    colormap = pyplot.get_cmap(FA_COLORMAP)
    overlay = colormap(np.clip(feature_asymmetry, 0.0, 1.0))
    overlay[..., 3] = np.clip(feature_asymmetry / FA_OPAQUE_AT, 0.0, 1.0)
    slice_axis.imshow(overlay, extent=extent, interpolation="nearest")
    row_mm = (np.arange(rows) + 0.5) * pixel_mm[0]
    column_mm = (np.arange(columns) + 0.5) * pixel_mm[1]
    slice_axis.contour(column_mm, row_mm, cavity.astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
    slice_axis.set_xlabel("lateral (mm)")
    slice_axis.set_ylabel("depth (mm)")
    slice_axis.set_title("feature asymmetry (end-diastole) and LV outline (cyan)", fontsize=9)
    scale = pyplot.cm.ScalarMappable(cmap=colormap, norm=pyplot.Normalize(0.0, 1.0))
    figure.colorbar(scale, ax=slice_axis, label="feature asymmetry")
    plot_volume_curve(curve_axis, times_s, volumes_ml, indices, true_volumes_ml=true_volumes_ml)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)
