"""Overlap and surface-distance metrics of binary segmentations, per case and over a set of cases.

Dice, Jaccard, precision and recall come from MONAI's overlap and confusion-matrix metrics; the 95th
percentile Hausdorff distance (HD95) and the symmetric average surface distance (ASD) from MONAI's
surface-distance metrics, in mm using the voxel spacing (Taha and Hanbury, BMC Med Imaging
2015;15:29 for the definitions). Undefined values are NaN and counted, never replaced by 0: Dice,
Jaccard and recall are undefined for an empty truth, precision for an empty prediction, the distances
when either mask is empty. The overall row is the mean over cases where a metric is defined.

Masks are ``(k, j, i)`` with spacing ``(sk, sj, si)`` in mm.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from SpatioTemporalCommonLib.errors import InputError

from .preprocessing import validate_spacing

METRIC_NAMES = ("dice", "jaccard", "precision", "recall", "hd95_mm", "asd_mm")


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics of a set of cases.

    Attributes
    ----------
    case_ids : list of str
        Case names, in input order.
    per_case : list of dict
        One ``{metric: value}`` per case (NaN where undefined).
    overall : dict
        Mean of each metric over the cases where it is defined (NaN if none).
    undefined : dict
        Number of cases where each metric is undefined.
    """

    case_ids: list[str]
    per_case: list[dict[str, float]]
    overall: dict[str, float]
    undefined: dict[str, int]


def _as_batch(mask: np.ndarray) -> torch.Tensor:
    """Binary ``(k, j, i)`` mask as a MONAI ``(1, 1, k, j, i)`` float tensor."""
    return torch.from_numpy(np.asarray(mask) > 0).float()[None, None]


def _finite_or_nan(value: torch.Tensor) -> float:
    """Scalar of a one-element tensor, with infinities turned into NaN."""
    number = float(value.reshape(-1)[0])
    return number if np.isfinite(number) else float("nan")


def _check_masks(prediction: np.ndarray, truth: np.ndarray) -> None:
    """Raise ``InputError`` unless prediction and truth are 3D masks of one shape."""
    if np.shape(prediction) != np.shape(truth) or np.ndim(truth) != 3:
        raise InputError(
            f"prediction {np.shape(prediction)} and truth {np.shape(truth)} must be 3D masks of one "
            "shape: resample the prediction onto the truth's grid"
        )


def dice_coefficient(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two binary ``(k, j, i)`` masks (MONAI); NaN when the truth is empty."""
    _check_masks(prediction, truth)
    return _finite_or_nan(compute_dice(_as_batch(prediction), _as_batch(truth), include_background=True))


def evaluate_case(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Overlap and distance metrics of one binary prediction against the truth.

    Parameters
    ----------
    prediction, truth : numpy.ndarray
        Binary ``(k, j, i)`` masks (non-zero = foreground) of one shape.
    spacing : sequence of float
        ``(sk, sj, si)`` in mm.

    Returns
    -------
    dict
        ``dice``, ``jaccard``, ``precision``, ``recall`` (0..1) and ``hd95_mm``, ``asd_mm`` (mm);
        NaN where undefined.
    """
    _check_masks(prediction, truth)
    spacing_mm = list(validate_spacing(spacing))
    predicted, actual = _as_batch(prediction), _as_batch(truth)
    confusion = get_confusion_matrix(predicted, actual, include_background=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = {
            "dice": compute_dice(predicted, actual, include_background=True),
            "jaccard": compute_iou(predicted, actual, include_background=True),
            "precision": compute_confusion_matrix_metric("precision", confusion),
            "recall": compute_confusion_matrix_metric("sensitivity", confusion),
            "hd95_mm": compute_hausdorff_distance(
                predicted, actual, include_background=True, percentile=95, spacing=spacing_mm
            ),
            "asd_mm": compute_average_surface_distance(
                predicted, actual, include_background=True, symmetric=True, spacing=spacing_mm
            ),
        }
    if not actual.any() or not predicted.any():
        values["hd95_mm"] = values["asd_mm"] = torch.tensor(float("nan"))
    return {name: _finite_or_nan(value) for name, value in values.items()}


def covered_fraction(prediction: np.ndarray, region: np.ndarray) -> float:
    """Fraction of a region's voxels that the prediction marks as foreground (NaN for an empty region).

    Parameters
    ----------
    prediction, region : numpy.ndarray
        Binary masks of one shape.

    Returns
    -------
    float
        Covered fraction in 0..1.
    """
    inside = np.asarray(region) > 0
    if not inside.any():
        return float("nan")
    return float(np.mean(np.asarray(prediction)[inside] > 0))


def evaluate_cases(cases: Iterable[tuple[str, np.ndarray, np.ndarray, Sequence[float]]]) -> EvaluationReport:
    """Metrics of every case and their means.

    Parameters
    ----------
    cases : iterable of (case_id, prediction, truth, spacing)
        Binary ``(k, j, i)`` masks and spacing ``(sk, sj, si)`` in mm.

    Returns
    -------
    EvaluationReport
        Per-case metrics, means over defined values and counts of undefined values.
    """
    case_ids: list[str] = []
    per_case: list[dict[str, float]] = []
    for case_id, prediction, truth, spacing in cases:
        case_ids.append(str(case_id))
        per_case.append(evaluate_case(prediction, truth, spacing))
    if not per_case:
        raise InputError("no cases to evaluate: give at least one prediction with its truth")
    table = np.array([[row[name] for name in METRIC_NAMES] for row in per_case], dtype=float)
    defined = np.isfinite(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(table, axis=0)
    return EvaluationReport(
        case_ids=case_ids,
        per_case=per_case,
        overall={name: float(value) for name, value in zip(METRIC_NAMES, means, strict=True)},
        undefined={
            name: int(count) for name, count in zip(METRIC_NAMES, (~defined).sum(axis=0), strict=True)
        },
    )


def _rows(report: EvaluationReport) -> list[list[str]]:
    """Header, one row per case and the overall row, formatted."""
    rows = [["case", *METRIC_NAMES]]
    for case_id, values in zip(report.case_ids, report.per_case, strict=True):
        rows.append([case_id, *(f"{values[name]:.4f}" for name in METRIC_NAMES)])
    rows.append(["overall (mean)", *(f"{report.overall[name]:.4f}" for name in METRIC_NAMES)])
    rows.append(["undefined (cases)", *(str(report.undefined[name]) for name in METRIC_NAMES)])
    return rows


def report_table(report: EvaluationReport) -> str:
    """Fixed-width text table of a report (one line per case, then the mean and undefined counts)."""
    rows = _rows(report)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


def write_report_csv(report: EvaluationReport, path: str | os.PathLike) -> None:
    """Write a report as CSV: one row per case, then ``overall (mean)`` and ``undefined (cases)`` rows."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(_rows(report))
