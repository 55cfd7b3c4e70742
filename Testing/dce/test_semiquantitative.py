"""Tests of the semi-quantitative maps on curves whose descriptors are known in closed form."""

from __future__ import annotations

import re

import numpy as np
import pytest
from DCEKineticsLib.semiquantitative import PERSISTENT, PLATEAU, WASHOUT, semiquantitative_maps
from SpatioTemporalCommonLib.errors import InputError

TIMES = np.arange(0.0, 400.0, 2.0)
BASELINE, ARRIVAL, RISE, HEIGHT, EARLY = 10.0, 30.0, 30.0, 10.0, 90.0
LATE_SLOPES = np.array([0.01, 0.002, 0.0, -0.01])
"""Enhancement slopes (per s) after the rise: persistent, two plateaus, wash-out."""


def _piecewise_linear(late_slope: float) -> np.ndarray:
    """Baseline, linear rise of HEIGHT over RISE seconds from ARRIVAL, then a straight line."""
    since = TIMES - ARRIVAL
    enhancement = np.where(
        since <= RISE, HEIGHT * np.clip(since, 0.0, None) / RISE, HEIGHT + late_slope * (since - RISE)
    )
    return BASELINE + enhancement


def _enhancement(late_slope: float, since_arrival: float) -> float:
    """Closed-form enhancement of :func:`_piecewise_linear` (after the rise)."""
    return HEIGHT + late_slope * (since_arrival - RISE)


def _expected_maps(late_slope: float) -> dict[str, float]:
    last = TIMES[-1] - ARRIVAL
    at_early_end = _enhancement(late_slope, EARLY)
    at_last = _enhancement(late_slope, last)
    early_peak = max(HEIGHT, at_early_end)
    peak = max(HEIGHT, at_last)
    late_change = (at_last - early_peak) / early_peak
    expected = {
        "TTP": last if late_slope > 0 else RISE,
        "MaxEnhancement": peak,
        "RelativeEnhancement": peak / BASELINE,
        "InitialRate": at_early_end / EARLY,
        "MaxSlope": HEIGHT / RISE,
        "WashoutSlope": 100.0 * 60.0 * late_slope / early_peak,
        "SER": at_early_end / at_last,
        "CurveType": PERSISTENT if late_change > 0.1 else WASHOUT if late_change < -0.1 else PLATEAU,
    }
    for window in (60.0, 90.0):
        after_rise = window - RISE
        expected[f"iAUC{window:g}"] = HEIGHT * RISE / 2 + HEIGHT * after_rise + late_slope * after_rise**2 / 2
    return expected


def test_piecewise_linear_curves_have_their_closed_form_descriptors() -> None:
    curves = np.stack([_piecewise_linear(slope) for slope in LATE_SLOPES])
    maps = semiquantitative_maps(curves, TIMES, baseline_frames=10, early_phase_s=EARLY, arrival_s=ARRIVAL)
    for index, slope in enumerate(LATE_SLOPES):
        for name, value in _expected_maps(slope).items():
            np.testing.assert_allclose(maps[name][index], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_curve_types_of_three_constructed_curves() -> None:
    curves = np.stack([_piecewise_linear(slope) for slope in (0.02, 0.0005, -0.02)])
    maps = semiquantitative_maps(curves, TIMES, baseline_frames=10, early_phase_s=EARLY, arrival_s=ARRIVAL)
    np.testing.assert_array_equal(maps["CurveType"], [PERSISTENT, PLATEAU, WASHOUT])


def test_keys_follow_the_windows_and_maps_keep_the_voxel_shape() -> None:
    curves = np.broadcast_to(_piecewise_linear(0.0), (2, 3, TIMES.size))
    maps = semiquantitative_maps(
        curves, TIMES, 10, iauc_windows_s=(30.0, 45.5), arrival_s=np.full((2, 3), ARRIVAL)
    )
    assert list(maps) == [
        "TTP",
        "MaxEnhancement",
        "RelativeEnhancement",
        "InitialRate",
        "MaxSlope",
        "WashoutSlope",
        "iAUC30",
        "iAUC45.5",
        "SER",
        "CurveType",
    ]
    assert all(values.shape == (2, 3) for values in maps.values())
    np.testing.assert_allclose(maps["iAUC30"], HEIGHT * RISE / 2)


def test_arrival_is_estimated_when_not_given() -> None:
    arrival = np.array([24.0, 31.0, 47.0])
    since = TIMES - arrival[:, np.newaxis]
    curves = np.where(since <= 40.0, 0.002 * np.clip(since, 0.0, None) ** 2, 3.2)
    maps = semiquantitative_maps(curves, TIMES, baseline_frames=10)
    expected_iauc60 = 0.002 * 40.0**3 / 3.0 + 3.2 * 20.0
    np.testing.assert_allclose(maps["iAUC60"], expected_iauc60, rtol=0.01)
    first_frame_at_peak = TIMES[np.searchsorted(TIMES, arrival + 40.0)]
    np.testing.assert_allclose(maps["TTP"], first_frame_at_peak - arrival, atol=0.3)


def test_undefined_maps_are_nan() -> None:
    concentration = np.stack(
        [_piecewise_linear(0.0) - BASELINE, _piecewise_linear(0.0), _piecewise_linear(0.0)]
    )
    concentration[2, 50] = np.nan
    maps = semiquantitative_maps(
        concentration, TIMES, 10, iauc_windows_s=(60.0, 500.0), arrival_s=np.array([ARRIVAL, np.nan, ARRIVAL])
    )
    assert np.isnan(maps["RelativeEnhancement"][0])
    np.testing.assert_allclose(maps["MaxEnhancement"][:2], HEIGHT)
    assert np.isnan(maps["iAUC500"]).all()
    for name in ("TTP", "InitialRate", "WashoutSlope", "iAUC60", "SER", "CurveType"):
        assert np.isnan(maps[name][1:]).all(), name
        assert np.isfinite(maps[name][0]), name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"early_phase_s": 0.0}, "give the duration of the early phase in seconds"),
        ({"iauc_windows_s": (60.0, -90.0)}, "give integration windows in seconds"),
        ({"curve_type_threshold": -0.1}, "give a fraction such as 0.10"),
        ({"arrival_s": np.ones(3)}, "give one arrival time (s) or a map"),
        ({"baseline_frames": 0}, "give the number of pre-contrast frames"),
        ({"times_s": TIMES[:-1]}, "give exactly one time (s) per frame"),
    ],
)
def test_invalid_input_names_the_fix(arguments: dict, message: str) -> None:
    call = {"curves": np.ones((2, TIMES.size)), "times_s": TIMES, "baseline_frames": 5}
    call.update(arguments)
    with pytest.raises(InputError, match=re.escape(message)):
        semiquantitative_maps(**call)
