"""``dce`` end to end through files: output names and geometry, and every bad input (exit 2, nothing written)."""

import json

import nibabel
import numpy as np
import pytest
import slicer.util
from DCEKineticsLib.cli import COMMAND
from DCEKineticsLib.dro import make_dro
from SpatioTemporalCommonLib.cli import main
from SpatioTemporalCommonLib.io import read_volume
from SpatioTemporalCommonLib.sequences import volume_geometry

FIT_MAPS = ("Ktrans", "ve", "kep", "vp", "MTT", "R2", "FitFailed")
CURVE_MAPS = ("TTP", "MaxEnhancement", "RelativeEnhancement", "InitialRate", "MaxSlope", "WashoutSlope",
              "iAUC60", "iAUC90", "SER", "CurveType")


def oblique_affine():
    a = np.deg2rad(25.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ np.diag([1.2, 0.9, 3.0])
    affine[:3, 3] = [5.0, -7.5, 12.0]
    return affine


@pytest.fixture(scope="module")
def dro_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dro")
    dro = make_dro(snr=np.inf, patch_size=2, n_frames=40)
    data = np.transpose(dro.signal, (2, 1, 0, 3))  # (k, j, i, T) -> (i, j, k, T)
    image = nibabel.Nifti1Image(data, oblique_affine())
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 5.0
    image.set_qform(oblique_affine(), code="scanner")
    nibabel.save(image, folder / "dro.nii.gz")
    return folder, dro


def dce(capsys, *argv):
    status = main(["--quiet", "dce", *map(str, argv)], commands=[COMMAND])
    captured = capsys.readouterr()
    return status, captured.err


def acquisition(dro):
    return ["--t1", dro.t1_ms, "--flip-angle", dro.flip_angle_deg, "--tr", dro.tr_ms]


@pytest.mark.parametrize(("file_format", "suffix"), [("nrrd", ".nrrd"), ("nifti", ".nii.gz")])
def test_outputs_are_named_and_placed_on_the_input_voxels(capsys, tmp_path, mrml_context, dro_files, file_format,
                                                          suffix):
    folder, dro = dro_files
    out = tmp_path / "maps"
    status, err = dce(capsys, folder / "dro.nii.gz", "--out", out, *acquisition(dro), "--format", file_format)
    assert status == 0, err
    for name in FIT_MAPS + CURVE_MAPS:
        assert (out / f"{name}{suffix}").is_file(), name
    for name in ("statistics.csv", "curves.png", "summary.json"):
        assert (out / name).is_file()
    ktrans = read_volume(mrml_context, out / f"Ktrans{suffix}")
    assert np.max(np.abs(volume_geometry(ktrans).ijk_to_ras - oblique_affine())) < 1e-4
    assert np.allclose(slicer.util.arrayFromVolume(ktrans), dro.truth["Ktrans"], rtol=0.01)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["voxels_fitted"] == dro.patch_labels.size
    assert summary["results"]["voxels_failed"] == 0
    assert summary["parameters"]["model"] == "extended-tofts"


def write_label_volume(path, labels, affine):
    nibabel.save(nibabel.Nifti1Image(labels.astype(np.uint8), affine), path)
    return path


def bad_cases(tmp_path, folder, dro):
    source = folder / "dro.nii.gz"
    shape_ijk = nibabel.load(source).shape[:3]
    wrong_columns = tmp_path / "aif_wrong.csv"
    wrong_columns.write_text("t,c\n0,0\n500,1\n")
    unsorted = tmp_path / "aif_unsorted.csv"
    unsorted.write_text("time_s,concentration_mM\n0,0\n100,1\n50,2\n500,0\n")
    short = tmp_path / "aif_short.csv"
    short.write_text("time_s,concentration_mM\n0,0\n50,1\n")
    shifted = oblique_affine()
    shifted[:3, 3] += [0.0, 0.0, 4.0]
    other_grid = write_label_volume(tmp_path / "other_grid.nii.gz", np.ones(shape_ijk), shifted)
    empty = write_label_volume(tmp_path / "empty.nii.gz", np.zeros(shape_ijk), oblique_affine())
    flat_corner = nibabel.load(source).get_fdata(dtype=np.float32)
    flat_corner[:2, :2, 0, :] = flat_corner[:2, :2, 0, :1]  # no enhancement in this corner
    with_flat_corner = tmp_path / "flat_corner.nii.gz"
    nibabel.save(nibabel.Nifti1Image(flat_corner, oblique_affine()), with_flat_corner)
    corner = np.zeros(shape_ijk)
    corner[:2, :2, 0] = 1
    aif_mask = write_label_volume(tmp_path / "aif_mask.nii.gz", corner, oblique_affine())
    times = tmp_path / "times.txt"
    times.write_text("\n".join(str(5.0 * n) for n in range(40)))
    zero_signal = tmp_path / "zero.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((*shape_ijk, 40), np.float32), oblique_affine()), zero_signal)
    clashing_mask = write_label_volume(folder / "R2.nii.gz", np.ones(shape_ijk), oblique_affine())
    out = tmp_path / "out"
    args = [*acquisition(dro)]
    return [
        ([source, "--out", out, *args, "--aif", wrong_columns], "time_s,concentration_mM"),
        ([source, "--out", out, *args, "--aif", unsorted], "increasing"),
        ([source, "--out", out, *args, "--aif", short], "covers"),
        ([source, "--out", out, "--t1", "-5", "--flip-angle", "15", "--tr", "5"], "--t1"),
        ([source, "--out", out, "--t1", "1000", "--flip-angle", "120", "--tr", "5"], r"(0, 90]"),
        ([source, "--out", out, "--t1", "1000", "--flip-angle", "15", "--tr", "0"], "--tr"),
        ([source, "--out", out, "--flip-angle", "15", "--tr", "5"], "--t1"),
        ([source, "--out", out, *args, "--mask", other_grid], "--resample-mask"),
        ([source, "--out", out, *args, "--mask", empty], "is empty"),
        ([with_flat_corner, "--out", out, *args, "--times", times, "--aif", "auto", "--aif-mask", aif_mask],
         "the AIF mask yields no curve"),
        ([source, "--out", out, *args, "--aif", "auto"], "--aif-mask"),
        ([zero_signal, "--out", out, *args], "bolus arrival"),
        ([source, "--out", folder, *args, "--mask", clashing_mask, "--format", "nifti"], "would overwrite an input"),
    ]


def test_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, dro_files):
    folder, dro = dro_files
    cases = bad_cases(tmp_path, folder, dro)
    before = sorted(p for root in (tmp_path, folder) for p in root.rglob("*"))
    try:
        for argv, fragment in cases:
            status, err = dce(capsys, *argv)
            assert status == 2, (" ".join(str(a) for a in argv), err)
            assert fragment in err, (argv, err)
            assert "Traceback" not in err
        assert sorted(p for root in (tmp_path, folder) for p in root.rglob("*")) == before
    finally:
        (folder / "R2.nii.gz").unlink()


def test_t1_map_from_variable_flip_angles(capsys, tmp_path, mrml_context, dro_files):
    from DCEKineticsLib.signal_model import spgr_signal

    folder, dro = dro_files
    angles = (2.0, 5.0, 10.0, 15.0)
    shape_ijk = nibabel.load(folder / "dro.nii.gz").shape[:3]
    vfa = np.stack([np.full(shape_ijk, spgr_signal(1000.0, 1000.0 / dro.t1_ms, a, 4.0)) for a in angles], axis=-1)
    nibabel.save(nibabel.Nifti1Image(vfa.astype(np.float32), oblique_affine()), tmp_path / "vfa.nii.gz")
    out = tmp_path / "maps"
    status, err = dce(capsys, folder / "dro.nii.gz", "--out", out, "--flip-angle", dro.flip_angle_deg,
                      "--tr", dro.tr_ms, "--vfa", tmp_path / "vfa.nii.gz", "--vfa-flip-angles", "2,5,10,15",
                      "--vfa-tr", "4")
    assert status == 0, err
    t1 = slicer.util.arrayFromVolume(read_volume(mrml_context, out / "T1.nrrd"))
    assert np.allclose(t1, dro.t1_ms, rtol=1e-3)
    ktrans = slicer.util.arrayFromVolume(read_volume(mrml_context, out / "Ktrans.nrrd"))
    assert np.allclose(ktrans, dro.truth["Ktrans"], rtol=0.01)


def test_demo_prints_truth_against_estimates(capsys, tmp_path):
    status = main(["--quiet", "demo", "dce", "--out", str(tmp_path)], commands=[COMMAND])
    out = capsys.readouterr().out
    assert status == 0
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3 and line.strip()[:1].isdigit()]
    assert len(rows) == 18
    for row in rows:
        for cell in row[1:]:
            true, estimate = (float(v) for v in cell.split("/"))
            assert abs(estimate - true) <= 0.1 * true + 0.005, row
    for name in ("Ktrans.nrrd", "ve.nrrd", "vp.nrrd", "curves.png", "statistics.csv", "summary.json"):
        assert (tmp_path / "dce" / "maps" / name).is_file()


def test_times_file_is_used_by_the_analysis(capsys, tmp_path, dro_files):
    folder, dro = dro_files
    image = nibabel.load(folder / "dro.nii.gz")
    image.header["pixdim"][4] = 5000.0  # milliseconds stored as seconds: refused unless --times is given
    trap = tmp_path / "trap.nii.gz"
    nibabel.save(image, trap)
    times = tmp_path / "times.txt"
    times.write_text("\n".join(f"{t:g}" for t in dro.times_s))
    out = tmp_path / "maps"
    status, err = dce(capsys, trap, "--out", out, *acquisition(dro), "--times", times)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["time_source"] == "times file times.txt"
    assert summary["results"]["voxels_failed"] == 0


def test_flip_angle_and_tr_are_prefilled_from_nrrd_metadata(capsys, tmp_path, mrml_context, dro_files):
    from SpatioTemporalCommonLib.io import read_series, write_node

    folder, dro = dro_files
    sequence, _ = read_series(mrml_context, folder / "dro.nii.gz")
    path = write_node(sequence, tmp_path / "dro.seq.nrrd")
    header, data = path.read_bytes().split(b"\n\n", 1)
    keys = f"MultiVolume.DICOM.FlipAngle:={dro.flip_angle_deg:g}\nMultiVolume.DICOM.RepetitionTime:={dro.tr_ms:g}"
    path.write_bytes(header + b"\n" + keys.encode() + b"\n\n" + data)
    out = tmp_path / "maps"
    status, err = dce(capsys, path, "--out", out, "--t1", dro.t1_ms)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["inputs"]["prefilled"]) == {"flip_angle_deg", "tr_ms"}
    assert summary["parameters"]["flip_angle_deg"] == dro.flip_angle_deg
    ktrans = slicer.util.arrayFromVolume(read_volume(mrml_context, out / "Ktrans.nrrd"))
    assert np.allclose(ktrans, dro.truth["Ktrans"], rtol=0.01)


def test_demo_without_module_names_runs_every_demo(capsys, tmp_path):
    status = main(["--quiet", "demo", "--out", str(tmp_path)], commands=[COMMAND])
    assert status == 0, capsys.readouterr().err
    assert (tmp_path / "dce" / "maps" / "Ktrans.nrrd").is_file()
