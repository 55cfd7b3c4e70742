"""Quality measures of BOLD fMRI runs: framewise displacement, DVARS, temporal SNR and carpet plots.

References
----------
- Power J.D., Barnes K.A., Snyder A.Z., Schlaggar B.L., Petersen S.E. (2012). Spurious but systematic
  correlations in functional connectivity MRI networks arise from subject motion. NeuroImage
  59:2142-2154. (Framewise displacement.)
- Nichols T.E. (2013). Notes on creating a standardized version of DVARS. arXiv:1704.01469.
  Afyouni S., Nichols T.E. (2018). Insight and inference for DVARS. NeuroImage 172:291-312.
  (Standardised, non-standardised and voxel-wise standardised DVARS.)
- Power J.D. (2017). A simple but useful way to assess fMRI scan qualities. NeuroImage 154:150-158.
  (Carpet plot, "grayplot".)
- Krüger G., Glover G.H. (2001). Physiological noise in oxygenation-sensitive magnetic resonance
  imaging. Magn Reson Med 46:631-637. (Temporal SNR.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import as_series, detrend_polynomial, varying_series_mask

IQR_TO_SD = 1.349
"""Inter-quartile range of a unit normal distribution: IQR / 1.349 is a robust standard deviation."""


def framewise_displacement(motion: np.ndarray, head_radius_mm: float = 50.0) -> np.ndarray:
    """Framewise displacement (Power et al. 2012).

    ``FD[i] = sum(|d trans|) + r * sum(|d rot|)`` between frames ``i`` and ``i + 1``, rotations
    converted to arc length on a sphere of radius ``r``.

    Parameters
    ----------
    motion : array_like, shape (6, T)
        Rigid-body parameters in FSL order: rotations about x, y, z in radians, then translations
        along x, y, z in mm. An FSL/MCFLIRT ``.par`` file is (T, 6): pass ``numpy.loadtxt(path).T``.
    head_radius_mm : float
        Radius of the sphere approximating the head, in mm.

    Returns
    -------
    ndarray, shape (T - 1,)
        Framewise displacement in mm; value ``i`` is the motion from frame ``i`` to frame ``i + 1``.
    """
    params = as_series(motion)
    if params.ndim != 2 or params.shape[0] != 6:
        raise InputError(
            f"motion parameters have shape {params.shape} but (6, T) is needed (rotX rotY rotZ in rad, "
            "transX transY transZ in mm): transpose an FSL .par array"
        )
    if not np.isfinite(head_radius_mm) or head_radius_mm <= 0:
        raise InputError(f"head radius {head_radius_mm} mm must be positive, typically 50 mm")
    steps = np.abs(np.diff(params, axis=-1))
    return steps[3:].sum(axis=0) + head_radius_mm * steps[:3].sum(axis=0)


@dataclass(frozen=True)
class DVARS:
    """The three DVARS variants of Nichols (2013), each of shape (T - 1,).

    Attributes
    ----------
    standardised : ndarray
        DVARS divided by its expected value under temporal stationarity (dimensionless, ~1 when clean).
    non_standardised : ndarray
        Root mean square over voxels of the frame-to-frame intensity change (image intensity units).
    voxelwise_standardised : ndarray
        Root mean square over voxels of the change, each voxel divided by its own expected change
        (dimensionless).
    n_voxels : int
        Number of voxels used (in the mask and with non-zero robust standard deviation).
    """

    standardised: np.ndarray
    non_standardised: np.ndarray
    voxelwise_standardised: np.ndarray
    n_voxels: int


def _lag1_autocorrelation(rows: np.ndarray) -> np.ndarray:
    """Yule-Walker lag-1 autocorrelation of each row (mean removed, biased covariance estimates)."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    return np.sum(centred[:, 1:] * centred[:, :-1], axis=-1) / np.sum(centred**2, axis=-1)


def dvars(series: np.ndarray, mask: np.ndarray | None = None) -> DVARS:
    """DVARS in the three variants of Nichols (2013), without intensity normalisation.

    For each voxel the robust standard deviation ``s = IQR / 1.349`` (quartiles with "lower"
    interpolation, as FSL) and the lag-1 autocorrelation ``a`` (Yule-Walker) give the expected
    standard deviation of the temporal difference, ``s_d = s * sqrt(2 (1 - a))``. With the frame
    differences ``d[v, i] = y[v, i + 1] - y[v, i]``:

    - non-standardised: ``sqrt(mean_v d^2)``;
    - standardised: non-standardised divided by ``mean_v s_d``;
    - voxel-wise standardised: ``sqrt(mean_v (d / s_d)^2)``.

    These are the definitions of nipype's ``ComputeDVARS`` (``intensity_normalization=0``). Voxels
    whose robust standard deviation is zero or not finite are left out of all three.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis (e.g. a 4D image (k, j, i, T)).
    mask : array_like of bool, shape (...), optional
        Voxels to use (the brain mask); all voxels when None.

    Returns
    -------
    DVARS
        The three variants, each (T - 1,), and the number of voxels used.
    """
    values = as_series(series, min_frames=3)
    rows = _masked_rows(values, mask)
    robust_sd = (np.percentile(rows, 75, axis=-1, method="lower")
                 - np.percentile(rows, 25, axis=-1, method="lower")) / IQR_TO_SD
    usable = np.isfinite(robust_sd) & (robust_sd > 0)
    if not usable.any():
        raise InputError("no voxel in the mask varies over time: check the mask and the 4D data")
    rows, robust_sd = rows[usable], robust_sd[usable]
    expected_diff_sd = robust_sd * np.sqrt(2.0 * (1.0 - _lag1_autocorrelation(rows)))
    differences = np.diff(rows, axis=-1)
    non_standardised = np.sqrt(np.mean(differences**2, axis=0))
    voxelwise = np.sqrt(np.mean((differences / expected_diff_sd[:, None]) ** 2, axis=0))
    return DVARS(
        standardised=non_standardised / expected_diff_sd.mean(),
        non_standardised=non_standardised,
        voxelwise_standardised=voxelwise,
        n_voxels=int(usable.sum()),
    )


def _masked_rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Voxel series (n_voxels, T) inside ``mask`` (all voxels when None)."""
    if mask is None:
        return values.reshape(-1, values.shape[-1])
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape[:-1]:
        raise InputError(
            f"mask shape {mask.shape} does not match the image grid {values.shape[:-1]}: give a mask on "
            "the fMRI grid"
        )
    if not mask.any():
        raise InputError("the mask contains no voxel: give a mask that covers the brain")
    return values[mask]


def temporal_snr(series: np.ndarray, detrend_order: int | None = None) -> np.ndarray:
    """Temporal signal-to-noise ratio: temporal mean over temporal standard deviation.

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis.
    detrend_order : int or None
        When given, the standard deviation is taken from the residuals after removing a polynomial
        trend of this degree (the mean always comes from the raw series).

    Returns
    -------
    ndarray, shape (...)
        tSNR (dimensionless); standard deviation with ``ddof=0``. Constant or non-finite series are NaN.
    """
    values = as_series(series)
    residuals = values if detrend_order is None else detrend_polynomial(values, detrend_order)
    sd = residuals.std(axis=-1)
    usable = varying_series_mask(values) & (sd > 0)
    tsnr = np.full(values.shape[:-1], np.nan)
    tsnr[usable] = values.mean(axis=-1)[usable] / sd[usable]
    return tsnr


@dataclass(frozen=True)
class CarpetMatrix:
    """Rows of a carpet plot.

    Attributes
    ----------
    values : ndarray, shape (n_voxels, T)
        Detrended, z-scored voxel series, one row per voxel in display order. Rows of constant or
        non-finite series are NaN.
    labels : ndarray of int, shape (n_voxels,)
        Label (tissue class) of each row; rows of a label are contiguous.
    voxel_index : ndarray of int, shape (n_voxels,)
        Flat (C-order) index of each row's voxel in the spatial grid.
    """

    values: np.ndarray
    labels: np.ndarray
    voxel_index: np.ndarray


def carpet_matrix(
    series: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    detrend_order: int = 1,
    row_order: Literal["correlation", "index"] = "correlation",
) -> CarpetMatrix:
    """Voxel-by-time matrix for a carpet plot (Power 2017).

    Every voxel series is detrended (polynomial of degree ``detrend_order``) and z-scored (``ddof=0``).
    Rows are grouped by label in increasing label order; within a label they are sorted by decreasing
    Pearson correlation with the label's mean detrended signal (``row_order="correlation"``), or kept
    in voxel order (``"index"``).

    Parameters
    ----------
    series : array_like, shape (..., T)
        BOLD series, time on the last axis (e.g. (k, j, i, T)).
    mask : array_like of bool, shape (...), optional
        Voxels to show; default: all voxels with a non-zero label, or all voxels without labels.
    labels : array_like of int, shape (...), optional
        Tissue classes (e.g. 1 grey matter, 2 white matter, 3 CSF); 0 is background.
    detrend_order : int
        Degree of the polynomial trend removed from each row.
    row_order : {"correlation", "index"}
        Row order within a label.

    Returns
    -------
    CarpetMatrix
        Rows, their labels and their voxel indices.
    """
    values = as_series(series)
    spatial = values.shape[:-1]
    label_map = np.ones(spatial, dtype=int) if labels is None else np.asarray(labels).astype(int)
    if label_map.shape != spatial:
        raise InputError(f"labels shape {label_map.shape} does not match the image grid {spatial}")
    selected = label_map != 0
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial:
            raise InputError(f"mask shape {mask.shape} does not match the image grid {spatial}")
        selected &= mask
    if not selected.any():
        raise InputError("no voxel selected for the carpet plot: give a mask or labels that cover the brain")
    if row_order not in ("correlation", "index"):
        raise InputError(f"row order {row_order!r} is unknown: choose 'correlation' or 'index'")
    flat_index = np.flatnonzero(selected)
    rows = values.reshape(-1, values.shape[-1])[flat_index]
    row_labels = label_map.reshape(-1)[flat_index]
    zscored = _zscore_rows(rows, detrend_polynomial(rows, detrend_order))
    order = np.concatenate([
        _rows_of_label(zscored, row_labels, label, row_order) for label in np.unique(row_labels)
    ])
    return CarpetMatrix(values=zscored[order], labels=row_labels[order], voxel_index=flat_index[order])


def _zscore_rows(rows: np.ndarray, detrended: np.ndarray) -> np.ndarray:
    """Z-score detrended rows (``ddof=0``).

    Rows whose raw series is constant or not finite, or whose detrended series is rounding noise
    (standard deviation below 1e-12 of the raw magnitude, i.e. a pure polynomial), become NaN.
    """
    sd = detrended.std(axis=-1)
    usable = varying_series_mask(rows) & (sd > 1e-12 * np.max(np.abs(rows), axis=-1))
    out = np.full_like(detrended, np.nan)
    centred = detrended[usable] - detrended[usable].mean(axis=-1, keepdims=True)
    out[usable] = centred / sd[usable, None]
    return out


def _rows_of_label(zscored: np.ndarray, row_labels: np.ndarray, label: int, row_order: str) -> np.ndarray:
    """Row indices of one label, in display order."""
    members = np.flatnonzero(row_labels == label)
    if row_order == "index":
        return members
    block = zscored[members]
    usable = ~np.isnan(block[:, 0])
    mean_signal = block[usable].mean(axis=0) if usable.any() else np.zeros(block.shape[-1])
    spread = mean_signal.std()
    if spread == 0:
        return members
    correlation = block @ ((mean_signal - mean_signal.mean()) / spread) / block.shape[-1]
    correlation = np.where(np.isnan(correlation), -np.inf, correlation)
    return members[np.argsort(-correlation, kind="stable")]
