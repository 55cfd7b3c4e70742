"""The ``spatiotemporal`` command end to end: info on real data, demo, and every bad input.

Bad input must end with a message naming the problem and the fix, exit status 2, no traceback,
and nothing written.
"""

import subprocess
import sys

import nibabel
import numpy as np
import pytest
from SpatioTemporalCommonLib.cli import main
from SpatioTemporalCommonLib.io import read_series, write_node

SHARED_4D_NIFTI = [
    "fmri/nitime/fmri1.nii.gz",
    "fmri/nitime/fmri2.nii.gz",
    "fmri/nipype_ds003/ds003_sub-01_mc.nii.gz",
    "fmri/rapidtide_rest/sub-RAPIDTIDETESTTINY.nii.gz",
]


def run_cli(capsys, *argv):
    """Run the command with no module subcommands, as a fresh install of the shared core alone."""
    status = main(["--quiet", *map(str, argv)], commands=[])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def expected_info(path):
    """Frames, times and voxel grid as nibabel reads them (an independent reader)."""
    image = nibabel.load(path)
    zooms = image.header.get_zooms()
    return image.shape[3], zooms[3] * (1e-3 if image.header.get_xyzt_units()[1] == "msec" else 1.0), image.affine


@pytest.mark.parametrize("relative", SHARED_4D_NIFTI)
def test_info_on_shared_nifti(shared_data, capsys, relative):
    import json

    path = shared_data / relative
    status, out, err = run_cli(capsys, "info", path, "--json")
    assert status == 0, err
    info = json.loads(out)
    n_frames, tr_s, affine = expected_info(path)
    assert info["n_frames"] == n_frames
    assert np.allclose(info["times_s"], np.arange(n_frames) * tr_s)
    assert info["shape_ijk"] == list(nibabel.load(path).shape[:3])
    assert np.allclose(info["spacing_mm"], np.linalg.norm(affine[:3, :3], axis=0), atol=1e-4)
    header = nibabel.load(path).header
    if header["qform_code"] > 0 or header["sform_code"] > 0:
        # Without qform and sform, orientation is undefined; Slicer (ITK) and nibabel then guess differently.
        assert np.allclose(info["origin_ras_mm"], affine[:3, 3], atol=1e-3)
        assert np.allclose(np.array(info["directions"]).T * info["spacing_mm"], affine[:3, :3], atol=1e-3)


def test_info_on_seq_nrrd_written_from_shared_nifti(shared_data, capsys, tmp_path, mrml_context):
    source = shared_data / "fmri/nitime/fmri1.nii.gz"
    sequence, _ = read_series(mrml_context, source)
    written = write_node(sequence, tmp_path / "fmri1.seq.nrrd")
    status, out, err = run_cli(capsys, "info", written)
    assert status == 0, err
    assert "frames:      40" in out
    assert "step 1.35 s, last 52.65 s" in out
    assert "10 x 10 x 18 voxels" in out
    assert "sequence index values" in out


def test_demo_writes_a_series_and_reports_it(capsys, tmp_path):
    status, out, err = run_cli(capsys, "demo", "--out", tmp_path / "demo")
    assert status == 0, err
    assert (tmp_path / "demo" / "synthetic.seq.nrrd").is_file()
    assert "frames:      12" in out


def write_nifti(path, data, tr=2.0):
    image = nibabel.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    if data.ndim == 4:
        image.header.set_xyzt_units("mm", "sec")
        image.header["pixdim"][4] = tr
    nibabel.save(image, path)
    return path


def bad_input_cases(tmp_path, write_dicom_series):
    """(arguments, expected message fragment) for each kind of bad input."""
    good = write_nifti(tmp_path / "good.nii.gz", np.ones((4, 3, 2, 5), np.float32))
    three_d = write_nifti(tmp_path / "anatomy.nii.gz", np.ones((4, 3, 2), np.float32))
    two_frames = write_nifti(tmp_path / "short.nii.gz", np.ones((4, 3, 2, 2), np.float32))
    all_nan = write_nifti(tmp_path / "nan.nii.gz", np.full((4, 3, 2, 5), np.nan, np.float32))
    garbage = tmp_path / "damaged.nii.gz"
    garbage.write_bytes(b"this is not an image" * 10)
    nrrd_3d = tmp_path / "anatomy.nrrd"
    nrrd_3d.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + "\0" * 32)
    duplicate_times = tmp_path / "dup.txt"
    duplicate_times.write_text("0\n1\n1\n2\n3\n")
    decreasing_times = tmp_path / "dec.txt"
    decreasing_times.write_text("0\n2\n1\n3\n4\n")
    mixed = write_dicom_series(tmp_path / "mixed_dicom", np.ones((3, 2, 3, 4), np.int16), (1.0, 1.0, 2.0),
                               np.eye(3), (0.0, 0.0, 0.0), [0, 5, 10], shifted_frame=1)
    out_file = tmp_path / "out_is_a_file"
    out_file.write_text("x")
    return [
        (["info", tmp_path / "absent.nii.gz"], "does not exist"),
        (["info", garbage], "could not read"),
        (["info", three_d], "3D image but a 4D series"),
        (["info", nrrd_3d], "3D image but a 4D series"),
        (["info", mixed], "different grids"),
        (["info", good, "--times", duplicate_times], "duplicate frame time"),
        (["info", good, "--times", decreasing_times], "not increasing"),
        (["info", two_frames], "2 frame(s); at least 3"),
        (["info", all_nan], "no finite values"),
        (["demo", "--out", out_file], "is a file"),
        (["demo", "unknown"], "no demo named unknown"),
    ]


def test_bad_input_exits_2_with_a_message_and_writes_nothing(capsys, tmp_path, write_dicom_series):
    cases = bad_input_cases(tmp_path, write_dicom_series)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for argv, fragment in cases:
        status, _, err = run_cli(capsys, *argv)
        assert status == 2, (argv, err)
        assert fragment in err, (argv, err)
        assert "Traceback" not in err
        assert err.count("\n") == 1, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_console_script_and_usage_errors(tmp_path):
    version = subprocess.run([sys.executable, "-m", "SpatioTemporalCommonLib.cli", "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.startswith("spatiotemporal ")
    usage = subprocess.run([sys.executable, "-m", "SpatioTemporalCommonLib.cli", "info"],
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "the following arguments are required: input" in usage.stderr
