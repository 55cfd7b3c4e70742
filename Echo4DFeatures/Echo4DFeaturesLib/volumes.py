"""Left-ventricular volume curve and the global function indices derived from it.

The end-diastolic frame is the frame of largest cavity volume and the end-systolic frame the frame of
smallest volume (the volumetric definition used in 3D echocardiography; Lang et al. 2015, "Recommendations
for cardiac chamber quantification by echocardiography in adults", J Am Soc Echocardiogr 28:1-39).
Stroke volume SV = EDV - ESV and ejection fraction EF = SV / EDV, reported in percent.

Arrays: label series ``(k, j, i, T)`` (time last), spacing ``(sk, sj, si)`` in mm, volumes in ml.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from SpatioTemporalCommonLib.errors import InputError

from .monogenic import check_spacing

MM3_PER_ML = 1000.0


@dataclass(frozen=True)
class VolumeIndices:
    """End-diastolic / end-systolic volumes and the indices derived from them.

    Attributes
    ----------
    edv_ml, esv_ml, sv_ml : float
        End-diastolic, end-systolic and stroke volumes, ml.
    ef_percent : float
        Ejection fraction, percent (NaN when EDV is 0).
    ed_frame, es_frame : int
        Frames (0-based) of end-diastole and end-systole.
    """

    edv_ml: float
    esv_ml: float
    sv_ml: float
    ef_percent: float
    ed_frame: int
    es_frame: int


def volume_curve_ml(labels: np.ndarray, spacing_mm: tuple[float, float, float], label: int = 1) -> np.ndarray:
    """Volume of ``label`` in every frame of a label series.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels ``(k, j, i, T)``.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    label : int
        Label whose volume is measured (1 = cavity).

    Returns
    -------
    numpy.ndarray
        Volume per frame, ml, shape ``(T,)``.
    """
    if labels.ndim != 4:
        raise InputError(
            f"expected a label series (k, j, i, T) but got {labels.ndim} dimensions: give time on the last axis"
        )
    voxel_ml = float(np.prod(check_spacing(spacing_mm))) / MM3_PER_ML
    return np.count_nonzero(labels == label, axis=(0, 1, 2)) * voxel_ml


def cardiac_phases(volumes_ml: np.ndarray) -> tuple[int, int]:
    """End-diastolic (largest volume) and end-systolic (smallest volume) frames of a volume curve.

    Parameters
    ----------
    volumes_ml : numpy.ndarray
        Cavity volume per frame, ml, shape ``(T,)`` with T >= 3 and no NaN.

    Returns
    -------
    tuple of int
        ``(ed_frame, es_frame)``.
    """
    curve = np.asarray(volumes_ml, dtype=float)
    if curve.ndim != 1 or curve.size < 3:
        raise InputError(f"volume curve of shape {curve.shape} is not one value per frame for 3+ frames")
    if not np.isfinite(curve).all():
        raise InputError("the volume curve contains NaN: segment every frame before measuring volumes")
    return int(np.argmax(curve)), int(np.argmin(curve))


def volume_indices(volumes_ml: np.ndarray) -> VolumeIndices:
    """EDV, ESV, SV and EF from a cavity volume curve.

    Parameters
    ----------
    volumes_ml : numpy.ndarray
        Cavity volume per frame, ml.

    Returns
    -------
    VolumeIndices
        Volumes in ml, EF in percent, ED / ES frames.
    """
    ed_frame, es_frame = cardiac_phases(volumes_ml)
    edv = float(volumes_ml[ed_frame])
    esv = float(volumes_ml[es_frame])
    stroke = edv - esv
    ef = 100.0 * stroke / edv if edv > 0 else float("nan")
    return VolumeIndices(edv, esv, stroke, ef, ed_frame, es_frame)
