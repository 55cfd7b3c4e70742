"""Tests of the population, file-based and image-derived arterial input functions.

Reference data: OSIPI DCE-DSC-MRI CodeCollection, test/PopulationAIF_DCE. The reference curves are
whole-blood concentrations (column ``Cb``, time in minutes, zero before the delay), so they are
compared with the blood functions; tolerance 1e-4 mM + 1 % as in OSIPI's tests.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from DCEKineticsLib.aif import (
    GEORGIOU_TABLE3_PARAMETERS,
    georgiou_aif,
    georgiou_blood_aif,
    image_derived_aif,
    parker_aif,
    parker_blood_aif,
    population_aif,
    read_aif_csv,
    score_arterial_curves,
    select_arterial_voxels,
    weinmann_aif,
)
from SpatioTemporalCommonLib.errors import InputError

AIF_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/osipi/test/PopulationAIF_DCE/data"


def _osipi_curves(filename: str) -> list:
    """One pytest parameter (times in s, blood concentration, delay in s) per labelled reference curve."""
    path = AIF_DATA_DIR / filename
    if not path.is_file():
        return [pytest.param(None, None, 0.0, marks=pytest.mark.skip(reason=f"{path} is absent"))]
    curves: dict[str, list[dict]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            curves.setdefault(row["label"], []).append(row)
    return [
        pytest.param(
            np.array([float(row["time"]) for row in rows]) * 60.0,
            np.array([float(row["Cb"]) for row in rows]),
            float(rows[0].get("delay") or 0.0),
            id=f"{Path(filename).stem}-{label}",
        )
        for label, rows in curves.items()
    ]


@pytest.mark.parametrize(
    ("times_s", "blood_mM", "delay_s"),
    _osipi_curves("ParkerAIF_ref.csv") + _osipi_curves("ParkerAIF_ref_with_delay.csv"),
)
def test_osipi_parker(times_s: np.ndarray, blood_mM: np.ndarray, delay_s: float) -> None:
    np.testing.assert_allclose(parker_blood_aif(times_s, delay_s=delay_s), blood_mM, atol=1e-4, rtol=0.01)


@pytest.mark.parametrize(("times_s", "blood_mM", "delay_s"), _osipi_curves("GeorgiouAIF_ref.csv"))
def test_osipi_georgiou(times_s: np.ndarray, blood_mM: np.ndarray, delay_s: float) -> None:
    np.testing.assert_allclose(georgiou_blood_aif(times_s, delay_s=delay_s), blood_mM, atol=1e-4, rtol=0.01)


def test_georgiou_table3_parameters_give_nearly_the_same_curve() -> None:
    times = np.arange(0.0, 600.0, 0.5)
    published = georgiou_blood_aif(times, parameters=GEORGIOU_TABLE3_PARAMETERS)
    default = georgiou_blood_aif(times)
    assert np.max(np.abs(published - default)) < 0.015 * np.max(default)
    assert abs(times[np.argmax(published)] - times[np.argmax(default)]) <= 0.5


@pytest.mark.parametrize(
    ("plasma", "blood"), [(parker_aif, parker_blood_aif), (georgiou_aif, georgiou_blood_aif)]
)
def test_plasma_is_blood_over_one_minus_hematocrit(plasma, blood) -> None:
    times = np.linspace(0.0, 400.0, 97)
    np.testing.assert_allclose(
        plasma(times, hematocrit=0.45, delay_s=12.0), blood(times, delay_s=12.0) / 0.55, rtol=1e-12
    )


def test_weinmann_biexponential_values() -> None:
    times = np.array([-5.0, 10.0, 10.0 + 60.0, 10.0 + 600.0])
    plasma = weinmann_aif(times, dose_mmol_per_kg=0.2, delay_s=10.0)
    minutes = np.array([0.0, 1.0, 10.0])
    expected = 0.2 * (3.99 * np.exp(-0.144 * minutes) + 4.78 * np.exp(-0.0111 * minutes))
    assert plasma[0] == 0.0
    np.testing.assert_allclose(plasma[1:], expected, rtol=1e-12)


def test_population_curves_are_zero_before_the_delay() -> None:
    times = np.arange(0.0, 30.0, 0.5)
    for name in ("parker", "georgiou", "weinmann"):
        curve = population_aif(name, times, delay_s=20.0)
        assert np.all(curve[times < 20.0] == 0.0)
        assert np.all(curve[times > 20.0] > 0.0)


def test_population_dispatcher_matches_the_functions() -> None:
    times = np.linspace(0.0, 300.0, 61)
    np.testing.assert_array_equal(population_aif("Parker", times, hematocrit=0.4), parker_aif(times, 0.4))
    np.testing.assert_array_equal(
        population_aif("georgiou", times, delay_s=3.0), georgiou_aif(times, delay_s=3.0)
    )
    np.testing.assert_array_equal(
        population_aif("weinmann", times, dose_mmol_per_kg=0.05), weinmann_aif(times, 0.05)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: population_aif("fritz-hansen", [0.0]), "choose one of parker, georgiou, weinmann"),
        (lambda: population_aif("parker", [0.0], dose_mmol_per_kg=0.1), "use hematocrit, delay_s"),
        (lambda: parker_aif([0.0], hematocrit=1.2), "give it as a fraction"),
        (lambda: weinmann_aif([0.0], dose_mmol_per_kg=0.0), "give the injected dose in mmol per kg"),
        (lambda: georgiou_aif([0.0, np.nan]), "give finite times in seconds"),
    ],
)
def test_invalid_population_input_names_the_fix(call, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        call()


def test_read_aif_csv_interpolates_onto_the_acquisition(tmp_path: Path) -> None:
    path = tmp_path / "aif.csv"
    path.write_text("time_s,concentration_mM\n0,0\n10,5\n20,3\n40,1\n")
    acquisition = np.array([0.0, 5.0, 15.0, 30.0, 40.0])
    np.testing.assert_allclose(read_aif_csv(path, acquisition), [0.0, 2.5, 4.0, 2.0, 1.0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,conc\n0,0\n10,1\n", "its first line must be the header time_s,concentration_mM"),
        ("", "its first line must be the header"),
        ("time_s,concentration_mM\n0,0\n10,abc\n", "line 3 of AIF file"),
        ("time_s,concentration_mM\n0,0\n10,1,2\n", "give exactly two"),
        ("time_s,concentration_mM\n0,0\n10,nan\n", "give finite numbers"),
        ("time_s,concentration_mM\n0,0\n", "give at least two rows"),
        ("time_s,concentration_mM\n0,0\n20,1\n10,2\n40,0\n", "sort the rows by increasing time_s"),
        ("time_s,concentration_mM\n0,0\n10,1\n10,2\n40,0\n", "keep one sample per time"),
        ("time_s,concentration_mM\n0,0\n10,1\n30,2\n", "give AIF samples over the whole acquisition"),
    ],
)
def test_read_aif_csv_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "aif.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)):
        read_aif_csv(path, np.array([0.0, 20.0, 40.0]))


def test_read_aif_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist: give the path of a CSV file"):
        read_aif_csv(tmp_path / "absent.csv", np.array([0.0, 1.0]))


def _candidate_curves(times: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five arterial curves (early, high, narrow) among twenty tissue curves, then three unusable ones
    (no enhancement, NaN, negative)."""
    arterial = np.stack([parker_blood_aif(times, delay_s=20.0 + shift) for shift in rng.uniform(0, 1, 5)])
    fine = np.arange(0.0, times[-1] + 1.0, 0.25)
    tissue = []
    for ktrans, ve, delay in zip(
        rng.uniform(0.1, 0.4, 20), rng.uniform(0.2, 0.5, 20), rng.uniform(24, 30, 20), strict=True
    ):
        kernel = ktrans / 60.0 * np.exp(-ktrans / ve / 60.0 * fine)
        response = np.convolve(parker_aif(fine, delay_s=delay), kernel)[: fine.size] * 0.25
        tissue.append(np.interp(times, fine, response))
    enhancing = np.vstack([tissue[:10], arterial, tissue[10:]])
    enhancing += rng.normal(0.0, 0.01, enhancing.shape)
    unusable = np.vstack([np.zeros(times.size), np.full(times.size, np.nan), np.full(times.size, -1.0)])
    return np.vstack([enhancing, unusable]), np.arange(10, 15)


def test_arterial_voxels_are_selected_and_averaged() -> None:
    rng = np.random.default_rng(5)
    times = np.arange(0.0, 240.0, 2.0)
    curves, arterial_rows = _candidate_curves(times, rng)

    selected = select_arterial_voxels(curves, times, n_voxels=5)
    aif = image_derived_aif(curves, times, hematocrit=0.4, n_voxels=5)

    assert set(selected) == set(arterial_rows)
    np.testing.assert_array_equal(aif.voxel_indices, selected)
    np.testing.assert_allclose(aif.plasma_mM, curves[arterial_rows].mean(axis=0) / 0.6, rtol=1e-12)
    scores = score_arterial_curves(curves, times)
    assert np.isnan(scores[-3:]).all() and np.isfinite(scores[:-3]).all()


def test_empty_or_unusable_aif_mask_is_rejected() -> None:
    times = np.arange(0.0, 60.0, 2.0)
    with pytest.raises(InputError, match="the AIF mask yields no curve: it contains no voxel"):
        image_derived_aif(np.empty((0, times.size)), times)
    with pytest.raises(InputError, match="the AIF mask yields no curve: none of its 4 voxels"):
        image_derived_aif(np.zeros((4, times.size)), times)
