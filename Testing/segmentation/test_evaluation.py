"""Segmentation metrics against hand-computed values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.evaluation import (
    covered_fraction,
    evaluate_case,
    evaluate_cases,
    report_table,
    write_report_csv,
)


def cube(start: tuple[int, int, int], size: int, shape: tuple[int, int, int] = (20, 20, 20)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[tuple(slice(s, s + size) for s in start)] = 1
    return mask


def test_overlap_metrics_of_shifted_cubes() -> None:
    # 4^3 cubes shifted by one voxel: 48 voxels in common out of 64 each.
    metrics = evaluate_case(cube((2, 2, 2), 4), cube((3, 2, 2), 4), (1.0, 1.0, 1.0))
    assert metrics["dice"] == pytest.approx(48 / 64)
    assert metrics["jaccard"] == pytest.approx(48 / 80)
    assert metrics["precision"] == pytest.approx(48 / 64)
    assert metrics["recall"] == pytest.approx(48 / 64)


def test_distances_are_in_mm_using_the_spacing() -> None:
    # 10^3 cubes shifted by two voxels along i: every surface point is within 2 voxels of the other surface,
    # and the two end faces (20% of the surface) are exactly 2 voxels away.
    prediction, truth = cube((5, 5, 5), 10), cube((5, 5, 7), 10)
    metrics = evaluate_case(prediction, truth, (1.0, 1.0, 0.5))
    assert metrics["hd95_mm"] == pytest.approx(1.0)
    assert 0.0 < metrics["asd_mm"] < metrics["hd95_mm"]
    doubled = evaluate_case(prediction, truth, (2.0, 2.0, 1.0))
    assert doubled["hd95_mm"] == pytest.approx(2.0)
    assert doubled["asd_mm"] == pytest.approx(2.0 * metrics["asd_mm"])
    same = evaluate_case(truth, truth, (1.0, 1.0, 0.5))
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and same["asd_mm"] == 0.0


def test_undefined_metrics_are_nan_and_counted(tmp_path: Path) -> None:
    empty = np.zeros((20, 20, 20), dtype=np.uint8)
    truth = cube((2, 2, 2), 4)
    missed = evaluate_case(empty, truth, (1.0, 1.0, 1.0))
    assert missed["dice"] == 0.0 and missed["recall"] == 0.0
    assert math.isnan(missed["precision"]) and math.isnan(missed["hd95_mm"]) and math.isnan(missed["asd_mm"])
    no_truth = evaluate_case(truth, empty, (1.0, 1.0, 1.0))
    assert math.isnan(no_truth["dice"]) and no_truth["precision"] == 0.0

    report = evaluate_cases([("hit", truth, truth, (1, 1, 1)), ("missed", empty, truth, (1, 1, 1))])
    assert report.overall["dice"] == pytest.approx(0.5)
    assert (
        report.overall["hd95_mm"] == 0.0
        and report.undefined["hd95_mm"] == 1
        and report.undefined["dice"] == 0
    )
    table = report_table(report)
    assert "overall (mean)" in table and "missed" in table
    write_report_csv(report, tmp_path / "metrics.csv")
    rows = list(csv.reader(open(tmp_path / "metrics.csv", encoding="utf-8")))
    assert rows[0][0] == "case" and [row[0] for row in rows[1:]] == [
        "hit",
        "missed",
        "overall (mean)",
        "undefined (cases)",
    ]
    assert float(rows[3][1]) == pytest.approx(0.5)


def test_covered_fraction() -> None:
    region = cube((0, 0, 0), 4)
    assert covered_fraction(cube((0, 0, 0), 2), region) == pytest.approx(8 / 64)
    assert math.isnan(covered_fraction(region, np.zeros_like(region)))


def test_mismatched_shapes_and_empty_case_lists_are_refused() -> None:
    with pytest.raises(InputError, match="one shape"):
        evaluate_case(cube((0, 0, 0), 2), cube((0, 0, 0), 2, (10, 10, 10)), (1, 1, 1))
    with pytest.raises(InputError, match="no cases"):
        evaluate_cases([])
