"""Tests of the spoiled gradient-echo signal <-> concentration conversion.

Reference data: OSIPI DCE-DSC-MRI CodeCollection, test/SI_to_Conc (tolerance 1e-5 mM + 1e-5 relative,
as in OSIPI's own tests). OSIPI's reference baseline is the mean of frames 1 .. numbaselinepts-1 (the
first frame is excluded because it is not in steady state), i.e. ``slice(1, numbaselinepts)``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from DCEKineticsLib.signal_model import (
    ConversionFailure,
    baseline_signal,
    concentration_from_signal,
    signal_from_concentration,
    spgr_signal,
)
from SpatioTemporalCommonLib.errors import InputError

SI_TO_CONC_CSV = (
    Path(__file__).resolve().parents[2].parent / "shared/data/osipi/test/SI_to_Conc/data/SI2Conc_data.csv"
)


def _osipi_cases() -> list:
    if not SI_TO_CONC_CSV.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{SI_TO_CONC_CSV} is absent"))]
    with SI_TO_CONC_CSV.open(encoding="utf-8-sig", newline="") as handle:
        return [pytest.param(row, id=row["label"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("case", _osipi_cases())
def test_osipi_signal_to_concentration(case: dict) -> None:
    signal = np.array(case["s"].split(), dtype=float)
    expected = np.array(case["conc"].split(), dtype=float)
    result = concentration_from_signal(
        signal,
        t1_pre_ms=float(case["T1base"]) * 1000.0,
        flip_angle_deg=float(case["FA"]),
        tr_ms=float(case["TR"]) * 1000.0,
        r1_per_mM_per_s=float(case["r1"]),
        baseline_frames=slice(1, int(case["numbaselinepts"])),
    )
    np.testing.assert_allclose(result.concentration_mM, expected, atol=1e-5, rtol=1e-5)
    assert result.failure == ConversionFailure.NONE


def test_round_trip_concentration_signal_concentration() -> None:
    rng = np.random.default_rng(7)
    concentration = np.clip(rng.normal(1.0, 1.0, size=(3, 4, 40)), 0.0, 6.0)
    concentration[..., :6] = 0.0
    t1_ms = rng.uniform(300.0, 2500.0, size=(3, 4))
    m0 = rng.uniform(50.0, 5000.0, size=(3, 4))
    signal = signal_from_concentration(concentration, t1_ms, 12.0, 3.5, m0=m0, r1_per_mM_per_s=3.9)
    result = concentration_from_signal(signal, t1_ms, 12.0, 3.5, r1_per_mM_per_s=3.9, baseline_frames=6)
    np.testing.assert_allclose(result.concentration_mM, concentration, atol=1e-9)
    assert not np.any(result.failure)


def test_spgr_signal_peaks_at_the_ernst_angle() -> None:
    tr_ms, r1 = 5.0, 1.0 / 1.2
    angles = np.linspace(0.5, 90.0, 2000)
    signal = spgr_signal(1.0, r1, angles, tr_ms)
    ernst = np.rad2deg(np.arccos(np.exp(-tr_ms / 1000.0 * r1)))
    assert abs(angles[np.argmax(signal)] - ernst) < angles[1] - angles[0]


def test_spgr_signal_saturates_at_m0_sin_alpha_for_infinite_r1() -> None:
    np.testing.assert_allclose(spgr_signal(250.0, 1e9, 30.0, 4.0), 250.0 * np.sin(np.deg2rad(30.0)))


def test_unconvertible_voxels_are_nan_with_reason_codes() -> None:
    concentration = np.zeros((6, 20))
    concentration[:, 5:] = 2.0
    t1_ms = np.full(6, 1000.0)
    signal = signal_from_concentration(concentration, t1_ms, 20.0, 4.0, m0=100.0)
    signal[0, :5] = -3.0
    t1_ms[1] = np.nan
    signal[2, 9] = np.nan
    signal[3, 10] = 0.0
    signal[4, 11] = 100.0 * np.sin(np.deg2rad(20.0)) * 1.01

    result = concentration_from_signal(signal, t1_ms, 20.0, 4.0, baseline_frames=5)

    expected_codes = [
        ConversionFailure.BASELINE_NOT_POSITIVE | ConversionFailure.SIGNAL_NOT_POSITIVE,
        ConversionFailure.T1_UNKNOWN,
        ConversionFailure.SIGNAL_NOT_FINITE,
        ConversionFailure.SIGNAL_NOT_POSITIVE,
        ConversionFailure.SIGNAL_ABOVE_LIMIT,
        ConversionFailure.NONE,
    ]
    assert [ConversionFailure(int(code)) for code in result.failure] == expected_codes
    nan_counts = np.isnan(result.concentration_mM).sum(axis=1)
    np.testing.assert_array_equal(nan_counts, [20, 20, 1, 1, 1, 0])
    np.testing.assert_allclose(result.concentration_mM[5], concentration[5], atol=1e-9)
    finite = np.isfinite(result.concentration_mM[2:5])
    np.testing.assert_allclose(result.concentration_mM[2:5][finite], concentration[2:5][finite], atol=1e-9)


def test_baseline_frame_selections() -> None:
    signal = np.arange(2 * 10, dtype=float).reshape(2, 10)
    np.testing.assert_allclose(baseline_signal(signal, 3), signal[:, :3].mean(axis=1))
    np.testing.assert_allclose(baseline_signal(signal, slice(1, 4)), signal[:, 1:4].mean(axis=1))
    mask = np.zeros((2, 10), dtype=bool)
    mask[0, :2] = True
    mask[1, 4:7] = True
    np.testing.assert_allclose(baseline_signal(signal, mask), [signal[0, :2].mean(), signal[1, 4:7].mean()])
    assert np.isnan(baseline_signal(signal, np.zeros(10, dtype=bool))).all()


def test_automatic_baseline_ends_at_the_bolus_arrival() -> None:
    times = np.arange(30) * 2.0
    concentration = np.where(times > 17.0, 0.002 * (times - 17.0) ** 2, 0.0) * np.ones((5, 1))
    signal = signal_from_concentration(concentration, 1200.0, 15.0, 4.0, m0=300.0)
    expected = signal[:, times < 17.0].mean(axis=1)
    np.testing.assert_allclose(baseline_signal(signal, None, times_s=times), expected)
    result = concentration_from_signal(signal, 1200.0, 15.0, 4.0, baseline_frames=None, times_s=times)
    np.testing.assert_allclose(result.concentration_mM, concentration, atol=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"t1_pre_ms": -5.0}, "give T1 in milliseconds"),
        ({"t1_pre_ms": np.zeros((2, 3))}, "give T1 in milliseconds"),
        ({"t1_pre_ms": np.full(4, 1000.0)}, "give one T1 value, or a map"),
        ({"flip_angle_deg": 120.0}, "outside (0, 90]: give the excitation flip angle in degrees"),
        ({"flip_angle_deg": 0.0}, "outside (0, 90]"),
        ({"tr_ms": 0.0}, "give the repetition time in milliseconds"),
        ({"r1_per_mM_per_s": -4.5}, "give the contrast agent's r1"),
        ({"baseline_frames": 0}, "give the number of pre-contrast frames"),
        ({"baseline_frames": 11}, "give the number of pre-contrast frames"),
        ({"baseline_frames": slice(20, 30)}, "give a slice of the pre-contrast frames"),
        ({"baseline_frames": np.ones(7, dtype=bool)}, "give a boolean mask with the signal's shape"),
        ({"baseline_frames": 2.5}, "give a number of frames, a slice, a boolean mask"),
    ],
)
def test_invalid_input_names_the_fix(change: dict, message: str) -> None:
    arguments = {
        "signal": np.full((2, 3, 10), 100.0),
        "t1_pre_ms": 1000.0,
        "flip_angle_deg": 15.0,
        "tr_ms": 4.0,
        "baseline_frames": 3,
    }
    arguments.update(change)
    with pytest.raises(InputError, match=re.escape(message)):
        concentration_from_signal(**arguments)


def test_automatic_baseline_without_arrival_asks_for_frames() -> None:
    with pytest.raises(InputError, match="give baseline_frames"):
        concentration_from_signal(np.full((4, 12), 50.0), 1000.0, 15.0, 4.0, baseline_frames=None)
