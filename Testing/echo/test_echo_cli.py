"""``echo`` end to end through files: output names, every output on the input's voxels, LV volumes against
the phantom truth on anisotropic oblique voxels, seeds and frame times, bad input (exit 2, nothing written),
demo."""

import csv
import itertools
import json
import shutil

import numpy as np
import pytest
from Echo4DFeaturesLib.cli import COMMAND
from Echo4DFeaturesLib.phantom import CAVITY, MYOCARDIUM, make_echo_phantom
from scipy import ndimage
from SpatioTemporalCommonLib.cli import main
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.io import read_series, write_node
from SpatioTemporalCommonLib.nodes import add_scalar_volume
from SpatioTemporalCommonLib.sequences import add_volume_sequence
from SpatioTemporalCommonLib.synthetic import oblique_geometry

FRAME_INTERVAL_S = 0.1
VOLUME_TOLERANCE = 0.15
"""Relative tolerance of EDV and ESV: the boundary found lies about 0.4 mm inside the true endocardium
(log-compressed speckle of the wall spreads into the dark blood pool), 7-10 % of these small volumes."""
EF_TOLERANCE_POINTS = 3.0
OUTPUT_FILES = {
    "nrrd": ("feature_asymmetry.seq.nrrd", "local_phase.seq.nrrd", "lv.seq.nrrd"),
    "nifti": ("feature_asymmetry.nii.gz", "local_phase.nii.gz", "lv.nii.gz"),
}
TABLE_AND_FIGURES = ("volumes.csv", "volumes.schema.csv", "volume_curve.png", "summary.json")


@pytest.fixture(scope="module")
def echo_files(tmp_path_factory):
    """The phantom on an oblique grid of 0.9 x 1.3 x 1.1 mm voxels (k, j, i) as .seq.nrrd, and bad inputs."""
    folder = tmp_path_factory.mktemp("echo")
    phantom = make_echo_phantom((60, 40, 46), (0.9, 1.3, 1.1), n_frames=8, seed=5)
    geometry = oblique_geometry(phantom.image.shape[:3], spacing_ijk=phantom.spacing_mm[::-1])
    context = MRMLContext.create_headless()
    frames = np.moveaxis(phantom.image, -1, 0)
    times = np.arange(frames.shape[0]) * FRAME_INTERVAL_S
    write_node(add_volume_sequence(context, frames, times, geometry, "echo"), folder / "echo.seq.nrrd")
    write_node(
        add_volume_sequence(context, frames[:2], times[:2], geometry, "short"), folder / "two_frames.seq.nrrd"
    )
    write_node(add_scalar_volume(context, frames[0], geometry, "frame"), folder / "one_frame.nrrd")
    return folder, phantom, geometry


def echo(capsys, *argv):
    status = main(["--quiet", "echo", *map(str, argv)], commands=[COMMAND])
    return status, capsys.readouterr()


def corners_ras(geometry) -> np.ndarray:
    """RAS (mm) of the 8 outer voxel corners of a grid."""
    size_ijk = np.array(geometry.shape[::-1], dtype=float)
    corners = np.array(
        [[*(c - 0.5 for c in corner), 1.0] for corner in itertools.product(*((0, n) for n in size_ijk))]
    )
    return (geometry.ijk_to_ras @ corners.T).T[:, :3]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def check_volumes_against_truth(results: dict, phantom) -> None:
    truth = phantom.cavity_volumes_ml
    true_ef = 100.0 * (truth.max() - truth.min()) / truth.max()
    assert results["EDV_ml"] == pytest.approx(truth.max(), rel=VOLUME_TOLERANCE)
    assert results["ESV_ml"] == pytest.approx(truth.min(), rel=VOLUME_TOLERANCE)
    assert results["SV_ml"] == pytest.approx(results["EDV_ml"] - results["ESV_ml"])
    assert abs(results["EF"] - true_ef) < EF_TOLERANCE_POINTS
    assert (results["ed_frame"], results["es_frame"]) == (phantom.ed_frame, phantom.es_frame)


@pytest.mark.parametrize("file_format", ["nrrd", "nifti"])
def test_anisotropic_oblique_input_gives_named_outputs_on_its_voxels(
    capsys, tmp_path, mrml_context, echo_files, file_format
):
    folder, phantom, _ = echo_files
    out = tmp_path / "out"
    status, captured = echo(capsys, folder / "echo.seq.nrrd", "--out", out, "--format", file_format)
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES[file_format] + TABLE_AND_FIGURES)
    _, source = read_series(mrml_context, folder / "echo.seq.nrrd")
    outputs = {name: read_series(mrml_context, out / name)[1] for name in OUTPUT_FILES[file_format]}
    for name, series in outputs.items():
        assert series.n_frames == phantom.image.shape[3], name
        assert series.geometry.shape == source.geometry.shape, name
        assert np.abs(corners_ras(series.geometry) - corners_ras(source.geometry)).max() < 1e-4, name
        np.testing.assert_allclose(series.times_s, source.times_s, atol=1e-6)
    lv = outputs[OUTPUT_FILES[file_format][2]].frames
    assert set(np.unique(lv)) <= {0, 1}
    truth = phantom.labels == CAVITY
    assert min(dice(lv[t] == 1, truth[..., t]) for t in range(lv.shape[0])) > 0.9
    results = json.loads((out / "summary.json").read_text())["results"]
    check_volumes_against_truth(results, phantom)
    assert results["seed_automatic"] is True
    seed_kji = np.linalg.solve(source.geometry.ijk_to_ras, [*results["seed_ras_mm"], 1.0])[2::-1]
    assert np.all(phantom.labels[tuple(np.round(seed_kji).astype(int))] == CAVITY)
    with open(out / "volumes.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["frame", "time_s", "volume_ml"]
    assert [int(row["frame"]) for row in rows] == list(range(lv.shape[0]))
    np.testing.assert_allclose(
        [float(row["volume_ml"]) for row in rows], results["volumes_ml"], rtol=1e-5
    )  # 6 digits
    assert "automatic" in captured.out


def test_given_seed_and_times_file_are_used(capsys, tmp_path, mrml_context, echo_files):
    folder, phantom, geometry = echo_files
    times = 0.25 + 0.04 * np.arange(phantom.image.shape[3])
    times_file = tmp_path / "times.txt"
    times_file.write_text("\n".join(f"{t:g}" for t in times) + "\n")
    seed_ras = geometry.kji_to_ras(phantom.cavity_centre_kji)
    out = tmp_path / "out"
    status, captured = echo(
        capsys,
        folder / "echo.seq.nrrd",
        "--out",
        out,
        "--times",
        times_file,
        "--seed=" + ",".join(f"{v:.6f}" for v in seed_ras),
    )
    assert status == 0, captured.err
    results = json.loads((out / "summary.json").read_text())["results"]
    assert results["seed_automatic"] is False
    np.testing.assert_allclose(results["seed_ras_mm"], seed_ras, atol=1e-4)
    check_volumes_against_truth(results, phantom)
    with open(out / "volumes.csv", newline="") as stream:
        np.testing.assert_allclose([float(row["time_s"]) for row in csv.DictReader(stream)], times)
    np.testing.assert_allclose(read_series(mrml_context, out / "lv.seq.nrrd")[1].times_s, times)


def myocardial_seed_ras(phantom, geometry) -> tuple[float, float, float]:
    """The deepest point of the wall that is myocardium in every frame (away from the drop-out sector)."""
    always_myocardium = np.all(phantom.labels == MYOCARDIUM, axis=3)
    always_myocardium[..., round(phantom.base_centre_kji[2]) - 4 :] = False
    depth = ndimage.distance_transform_edt(always_myocardium, sampling=phantom.spacing_mm)
    return geometry.kji_to_ras(np.unravel_index(int(np.argmax(depth)), depth.shape))


def test_bad_input_exits_2_with_the_fix_and_writes_nothing(capsys, tmp_path, echo_files):
    folder, phantom, geometry = echo_files
    source, out = folder / "echo.seq.nrrd", tmp_path / "out"
    outside = geometry.kji_to_ras(np.array(phantom.image.shape[:3]) + 3.0)
    in_wall = myocardial_seed_ras(phantom, geometry)
    clashing_input = tmp_path / "clash" / "lv.seq.nrrd"  # an input that an output would replace
    clashing_input.parent.mkdir()
    shutil.copyfile(source, clashing_input)
    cases = [
        ([folder / "one_frame.nrrd", "--out", out], "3D image but a 4D series"),
        ([folder / "two_frames.seq.nrrd", "--out", out], "at least 3 are needed"),
        ([source, "--out", out, "--seed=" + ",".join(map(str, outside))], "outside the volume"),
        ([source, "--out", out, "--seed=" + ",".join(map(str, in_wall))], "myocardium"),
        ([source, "--out", out, "--seed", "10,20"], "is not a point R,A,S"),
        ([source, "--out", out, "--min-wavelength", "2"], "below 2 voxels along axis j"),
        ([source, "--out", out, "--min-wavelength", "14"], "exceeds the 50.6 mm field of view along axis i"),
        ([source, "--out", out, "--sigma-onf", "1.5"], "--sigma-onf"),
        ([source, "--out", out, "--scales", "2", "--phase-scale", "2"], "--phase-scale"),
        ([clashing_input, "--out", clashing_input.parent], "would overwrite an input"),
    ]
    before = sorted(p for root in (tmp_path, folder) for p in root.rglob("*"))
    for argv, fragment in cases:
        status, captured = echo(capsys, *argv)
        assert status == 2, (argv, captured.err)
        assert fragment in captured.err, (argv, captured.err)
        assert "Traceback" not in captured.err
    assert sorted(p for root in (tmp_path, folder) for p in root.rglob("*")) == before


def test_demo_prints_true_against_measured_volumes(capsys, tmp_path):
    status = main(["--quiet", "demo", "echo", "--out", str(tmp_path)], commands=[COMMAND])
    printed = capsys.readouterr().out
    assert status == 0
    rows = {
        cells[0].strip(): (float(cells[1]), float(cells[2]))
        for cells in (line.split("|") for line in printed.splitlines())
        if len(cells) == 3 and "(" in cells[0]
    }
    assert set(rows) == {"EDV (ml)", "ESV (ml)", "SV (ml)", "EF (%)"}
    for name in ("EDV (ml)", "ESV (ml)"):
        true, measured = rows[name]
        assert measured == pytest.approx(true, rel=VOLUME_TOLERANCE), name
    assert abs(rows["EF (%)"][1] - rows["EF (%)"][0]) < EF_TOLERANCE_POINTS
    assert (tmp_path / "echo" / "fa_long_axis.png").stat().st_size > 10_000
    for name in OUTPUT_FILES["nrrd"] + TABLE_AND_FIGURES:
        assert (tmp_path / "echo" / "results" / name).is_file(), name
