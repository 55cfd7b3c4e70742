"""``fmri`` end to end through files: the demo, output names and geometry, motion, and every bad input."""

from __future__ import annotations

import itertools
import json
import re

import nibabel
import numpy as np
import pytest
from FMRIDynamicsLib.cli import COMMAND, write_events_tsv
from FMRIDynamicsLib.phantom import make_phantom
from SpatioTemporalCommonLib.cli import main
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.io import read_series, read_volume
from SpatioTemporalCommonLib.sequences import volume_geometry

ALL_MAPS = (
    "glm_motor_z",
    "glm_motor_effect",
    "glm_visual_z",
    "glm_visual_effect",
    "hrf_peak_latency",
    "hrf_fwhm",
    "mi_preferred_time",
    "mi_amplitude",
    "mi_significance",
    "lag",
    "lag_correlation",
    "lag_projection",
    "int_acf",
    "int_hwhm",
    "alff",
    "falff",
    "malff",
    "reho",
    "sample_entropy",
    "tsnr",
    "seed_1_correlation",
)
ALL_TABLES = (
    "qc",
    "fc_matrix",
    "dfc",
    "delay_matrix",
    "region_lags",
    "time_courses",
    "lag_reference",
    "ica_time_courses",
)
FIGURES = ("carpet.png", "lag_map.png", "fc_matrix.png", "delay_matrix.png")
CONSTANT_VOXEL_KJI = (4, 8, 6)


def fmri(capsys, *argv):
    status = main(["--quiet", "fmri", *map(str, argv)], commands=[COMMAND])
    captured = capsys.readouterr()
    return status, captured.err


def oblique_affine():
    a = np.deg2rad(20.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag(
        [3.0, 3.0, 4.0]
    )
    affine[:3, 3] = [-20.0, 15.5, -7.25]
    return affine


def voxel_corners_ras(affine, shape_ijk):
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape_ijk])))
    return (affine @ np.c_[corners, np.ones(len(corners))].T)[:3].T


def save_nifti(path, data_kji_t, affine=None, tr_s=1.0, unit="sec"):
    image = nibabel.Nifti1Image(
        np.transpose(data_kji_t, (2, 1, 0, 3)).astype(np.float32),
        affine if affine is not None else oblique_affine(),
    )
    image.header.set_xyzt_units("mm", unit)
    image.header["pixdim"][4] = tr_s
    nibabel.save(image, path)
    return path


def save_labels(path, labels_kji, affine=None):
    nibabel.save(
        nibabel.Nifti1Image(
            np.transpose(labels_kji, (2, 1, 0)).astype(np.int16),
            affine if affine is not None else oblique_affine(),
        ),
        path,
    )
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bold")
    phantom = make_phantom(shape_kji=(8, 16, 16), n_frames=150)
    data = phantom.data.copy()
    data[CONSTANT_VOXEL_KJI] = 1000.0
    save_nifti(folder / "bold.nii.gz", data)
    save_labels(folder / "labels.nii.gz", phantom.labels)
    write_events_tsv(folder / "events.tsv", phantom.events)
    return folder, phantom


def test_demo_recovers_the_phantom_and_writes_every_output(capsys, tmp_path):
    status = main(["--quiet", "demo", "fmri", "--out", str(tmp_path)], commands=[COMMAND])
    printed = capsys.readouterr().out
    assert status == 0
    features = tmp_path / "fmri" / "features"
    expected = {f"{name}.nrrd" for name in ALL_MAPS} | {f"{name}.csv" for name in ALL_TABLES}
    expected |= (
        {f"{name}.schema.csv" for name in ALL_TABLES}
        | set(FIGURES)
        | {"ica_components.seq.nrrd", "summary.json"}
    )
    assert {path.name for path in features.iterdir()} == expected
    context = MRMLContext.create_headless()
    _, series = read_series(context, tmp_path / "fmri" / "phantom.seq.nrrd")
    for name in ("lag", "reho", "glm_motor_z"):
        assert (
            volume_geometry(read_volume(context, features / f"{name}.nrrd")).mismatch(series.geometry) is None
        )
    _, components = read_series(context, features / "ica_components.seq.nrrd")
    assert components.n_frames == 10 and components.geometry.mismatch(series.geometry) is None
    lags = [
        tuple(map(float, row))
        for row in re.findall(r"slab \d\s+\|\s+([+-]\d\.\d\d) /\s+([+-]\d\.\d\d)", printed)
    ]
    latencies = [tuple(map(float, row)) for row in re.findall(r"\|\s+(\d\.\d\d) /\s+(\d\.\d\d)", printed)]
    assert len(lags) == 4 and all(abs(true - found) < 0.1 for true, found in lags)
    assert len(latencies) == 3 and all(abs(true - found) < 0.5 for true, found in latencies)


def side_files(folder, phantom):
    """A lag reference, slice times all at mid-TR (no shift), a confounds table and a CSF mask."""
    np.savetxt(folder / "reference.txt", phantom.oscillation)
    n_slices = phantom.brain.shape[0]
    (folder / "bold.json").write_text(
        json.dumps({"SliceTiming": [0.5] * n_slices, "SliceEncodingDirection": "k"})
    )
    drift = np.random.default_rng(5).standard_normal(phantom.data.shape[-1])
    (folder / "confounds.tsv").write_text("drift\n" + "\n".join(f"{v:.6f}" for v in drift) + "\n")
    save_labels(folder / "csf.nii.gz", phantom.cubes == 4)
    return [
        "--reference",
        folder / "reference.txt",
        "--slice-timing",
        folder / "bold.json",
        "--confounds",
        folder / "confounds.tsv",
        "--csf-mask",
        folder / "csf.nii.gz",
    ]


def test_nifti_outputs_lie_on_the_input_voxels_and_constant_voxels_are_nan(capsys, tmp_path, inputs):
    folder, phantom = inputs
    cube = np.argwhere(phantom.cubes == 1).mean(axis=0)[::-1]
    seed = (oblique_affine() @ [*cube, 1.0])[:3]
    out = tmp_path / "maps"
    status, err = fmri(
        capsys,
        folder / "bold.nii.gz",
        "--out",
        out,
        "--labels",
        folder / "labels.nii.gz",
        "--features",
        "lag,fc,ica,qc",
        "--format",
        "nifti",
        "--ica-components",
        3,
        "--no-motion-correction",
        "--seed=" + ",".join(f"{v:.4f}" for v in seed),
        "--seed-labels",
        folder / "labels.nii.gz",
        *side_files(tmp_path, phantom),
    )
    assert status == 0, err
    seed_maps = ("seed_1_correlation", *(f"seed_label_{label}_correlation" for label in range(1, 5)))
    maps = ("lag", "lag_correlation", "lag_projection", "tsnr", *seed_maps)
    expected = {f"{name}.nii.gz" for name in maps} | {
        "ica_components.nii.gz",
        "summary.json",
        "carpet.png",
        "lag_map.png",
        "fc_matrix.png",
        "delay_matrix.png",
    }
    expected |= {
        f"{name}{suffix}"
        for name in (
            "qc",
            "fc_matrix",
            "delay_matrix",
            "region_lags",
            "time_courses",
            "lag_reference",
            "ica_time_courses",
        )
        for suffix in (".csv", ".schema.csv")
    }
    assert {path.name for path in out.iterdir()} == expected
    shape_ijk = phantom.brain.shape[::-1]
    corners = voxel_corners_ras(oblique_affine(), shape_ijk)
    for name in maps:
        image = nibabel.load(out / f"{name}.nii.gz")
        assert image.shape == shape_ijk
        assert np.max(np.abs(voxel_corners_ras(image.affine, shape_ijk) - corners)) < 1e-4, name
        assert np.isnan(image.get_fdata()[CONSTANT_VOXEL_KJI[::-1]]), name
    components = nibabel.load(out / "ica_components.nii.gz")
    assert components.shape == (*shape_ijk, 3)
    assert np.max(np.abs(voxel_corners_ras(components.affine, shape_ijk) - corners)) < 1e-4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["tr_s"] == 1.0 and summary["results"]["features"] == ["lag", "fc", "ica", "qc"]
    assert summary["results"]["nan_voxels_in_mask"]["tsnr"] == 1
    assert summary["results"]["units"]["lag"] == "s"
    assert summary["results"]["reference_time_s"] == 0.5
    assert summary["results"]["features_detail"]["lag"]["reference"] == "given signal"
    assert summary["inputs"]["seed_labels"] == str(folder / "labels.nii.gz")
    for label in range(1, 5):
        seed_map = np.transpose(
            nibabel.load(out / f"seed_label_{label}_correlation.nii.gz").get_fdata(), (2, 1, 0)
        )
        medians = [np.nanmedian(seed_map[phantom.labels == slab]) for slab in range(1, 5)]
        assert np.argmax(medians) == label - 1
    lag = np.transpose(nibabel.load(out / "lag.nii.gz").get_fdata(), (2, 1, 0))
    oscillating = np.isfinite(phantom.lag_s) & np.isfinite(lag)
    assert np.median(np.abs(lag - phantom.lag_s)[oscillating]) < 0.1


def test_motion_correction_reports_the_shift_and_censors_it(capsys, tmp_path):
    phantom = make_phantom(shape_kji=(8, 16, 16), n_frames=60, noise_sd=0.5)
    data = phantom.data.copy()
    data[..., 30:] = np.roll(data[..., 30:], 1, axis=2)  # one voxel (3 mm) along i from frame 30
    save_nifti(tmp_path / "moving.nii.gz", data)
    out = tmp_path / "qc"
    status, err = fmri(
        capsys, tmp_path / "moving.nii.gz", "--out", out, "--features", "qc", "--censor-fd", 1.0
    )
    assert status == 0, err
    motion = np.genfromtxt(out / "motion.csv", delimiter=",", names=True)
    step = np.abs(np.diff(motion["trans_x_mm"]))
    assert np.argmax(step) == 29 and step[29] == pytest.approx(3.0, abs=0.3)
    qc = np.genfromtxt(out / "qc.csv", delimiter=",", names=True)
    assert qc["fd_mm"][30] == pytest.approx(3.0, abs=0.4)
    np.testing.assert_array_equal(np.flatnonzero(qc["censored"]), [29, 30, 31, 32])


def bad_cases(tmp_path, folder, phantom):
    source, labels, events = folder / "bold.nii.gz", folder / "labels.nii.gz", folder / "events.tsv"
    data = phantom.data
    shifted = oblique_affine()
    shifted[:3, 3] += [0.0, 0.0, 4.0]
    corner = phantom.labels.copy()
    corner[0, 0, 0] = 9
    late = tmp_path / "late_events.tsv"
    late.write_text("onset\tduration\ttrial_type\n20\t2\tmotor\n500\t2\tmotor\n")
    uneven = tmp_path / "uneven.txt"
    uneven.write_text("\n".join(str(t) for t in np.r_[np.arange(149), 150.0]))
    files = {
        "no_tr": save_nifti(tmp_path / "no_tr.nii.gz", data, tr_s=0.0),
        "ms_tr": save_nifti(tmp_path / "ms_tr.nii.gz", data, tr_s=2000.0),
        "short": save_nifti(tmp_path / "short.nii.gz", data[..., :20]),
        "other_grid_mask": save_labels(tmp_path / "other_grid_mask.nii.gz", phantom.brain, shifted),
        "other_grid_labels": save_labels(tmp_path / "other_grid_labels.nii.gz", phantom.labels, shifted),
        "corner_labels": save_labels(tmp_path / "corner_labels.nii.gz", corner),
    }
    out = tmp_path / "out"
    common = ["--out", out, "--no-motion-correction"]
    return [
        ([files["no_tr"], *common, "--features", "qc"], "carries no repetition time"),
        ([files["ms_tr"], *common], "not plausible"),
        ([source, *common, "--tr", 2000], "--tr 2000.0 s is outside [0.05, 100] s"),
        ([source, *common, "--times", uneven], "not evenly spaced"),
        ([source, *common, "--events", late], "lie outside the scan"),
        ([source, *common, "--events", events, "--contrasts", "motor-visul"], "'visul' is not a trial type"),
        ([source, *common, "--mask", files["other_grid_mask"]], "another grid"),
        ([source, *common, "--labels", files["other_grid_labels"]], "--resample-mask"),
        ([source, *common, "--labels", files["corner_labels"]], "region 'label 9' has no voxel"),
        ([source, *common, "--seed-labels", files["corner_labels"]], "seed region 'label 9' has no voxel"),
        (
            [source, *common, "--seed-labels", files["other_grid_labels"]],
            "the seed-region labelmap 'other_grid_labels' lies on another grid",
        ),
        ([source, *common, "--ica-cleanup"], "--ica-cleanup removes the components that match nuisance"),
        ([source, *common, "--ica-cleanup-threshold", 1.5], "--ica-cleanup-threshold 1.5 is outside (0, 1]"),
        ([files["short"], *common, "--features", "reho"], "needs more than"),
        (
            [source, *common, "--labels", labels, "--features", "dfc", "--dfc-window-s", 200],
            "fewer than the 200-frame window",
        ),
        ([source, *common, "--features", "glm"], "--features glm needs task events"),
        ([source, *common, "--features", "qc,lga"], "unknown feature(s) lga"),
        ([source, *common, "--seed=1000,0,0"], "seed 1 at RAS (1000, 0, 0) mm lies outside the image"),
        ([source, *common, "--seed", "1,2"], "is not a point R,A,S"),
        ([source, *common, "--band", 0.1, 0.01], "--band 0.1 0.01 Hz is empty"),
        ([source, *common, "--reference", tmp_path / "missing.txt", "--features", "lag"], "does not exist"),
    ]


def test_bad_input_exits_2_with_the_reason_and_writes_nothing(capsys, tmp_path, inputs):
    folder, phantom = inputs
    cases = bad_cases(tmp_path, folder, phantom)
    before = sorted(p for root in (tmp_path, folder) for p in root.rglob("*"))
    for argv, fragment in cases:
        status, err = fmri(capsys, *argv)
        assert status == 2, (argv, err)
        assert fragment in err, (argv, err)
        assert "Traceback" not in err
    assert sorted(p for root in (tmp_path, folder) for p in root.rglob("*")) == before
