"""``segment``, ``train-segmentation``, ``evaluate-segmentation`` and ``demo segment`` through files:
output names, every output on the input's oblique anisotropic grid, determinism, bad input (exit 2, the fix,
nothing written), metrics of masks with known overlap, training with an interruption and a resume, and the
demo with and without the shipped weights."""

from __future__ import annotations

import csv
import itertools
import json
import pickle
from pathlib import Path

import nibabel
import numpy as np
import pytest
import slicer.util
import torch
import vtk
from monai.networks.nets import SegResNet
from safetensors.torch import save_file
from SpatioTemporalCommonLib.cli import Runtime, main
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.io import read_mask, read_volume, write_node
from SpatioTemporalCommonLib.nodes import add_labelmap_volume, add_scalar_volume, add_segmentation
from SpatioTemporalCommonLib.progress import Progress
from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry
from SpatioTemporalCommonLib.synthetic import oblique_geometry
from TumorSegmentation4DLib import cli, logic
from TumorSegmentation4DLib.evaluation import covered_fraction, dice_coefficient
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet
from TumorSegmentation4DLib.phantom import generate_breast_phantom
from TumorSegmentation4DLib.weights import load_network, save_weights

SPACING_IJK_MM = (0.7, 0.8, 1.6)
SHAPE_KJI = (16, 32, 32)
SMALL_PHANTOM = {"n_post_contrast": 2, "n_benign": 0, "lesion_radius_mm": (2.5, 3.5)}
DEMO_PHANTOM = {
    "shape": (16, 32, 32),
    "spacing": (2.0, 0.9, 0.8),
    "n_post_contrast": 2,
    "lesion_radius_mm": (2.0, 2.5),
}
"""Small phantoms that hold a malignant lesion and a benign mimic with the demo's seeds."""
TINY_NETWORK = ("--features", "4,8,8,16", "--d-state", "4", "--time-embedding", "8")
SEGMENT_OUTPUTS = {"tumor.seg.nrrd", "tumor_label.nrrd", "tumor_probability.nrrd", "summary.json"}
FAST = ("--device", "cpu", "--overlap", "0.25")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run the tiny networks on one thread: on a busy CPU, thread synchronisation costs more than it saves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def save_tiny_weights(path: Path) -> Path:
    """An untrained four-level network (inputs divisible by 8) whose 32^3 window covers a test volume, trained
    without N4."""
    torch.manual_seed(0)
    network = TemporalMambaUNet(NetworkConfig(features=(4, 8, 8, 16), d_state=4, time_embedding=8))
    save_weights(path, network, {"roi_size": [32, 32, 32], "training": {"n4": False}})
    return path


class RunsCodeWhenUnpickled:
    """Unpickling this object writes a marker file: a stand-in for code hidden in a weights pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 3-phase phantom study on an oblique grid of 0.9 x 1.1 x 2.5 mm voxels (i, j, k) indexed by clock
    times, bad inputs, and weights files."""
    folder = tmp_path_factory.mktemp("segment")
    geometry = oblique_geometry(SHAPE_KJI, spacing_ijk=SPACING_IJK_MM)
    phantom = generate_breast_phantom(7, shape=SHAPE_KJI, spacing=geometry.spacing_kji, **SMALL_PHANTOM)
    times = np.round(phantom.times) + 3600.0
    context = MRMLContext.create_headless()
    write_node(
        add_volume_sequence(context, phantom.phases, times, geometry, "study"), folder / "study.seq.nrrd"
    )
    write_node(
        add_volume_sequence(context, phantom.phases[:2], times[:2], geometry, "two"), folder / "two.seq.nrrd"
    )
    untimed = nibabel.Nifti1Image(np.transpose(phantom.phases, (3, 2, 1, 0)), geometry.ijk_to_ras)
    untimed.header.set_zooms((*SPACING_IJK_MM, 0.0))
    nibabel.save(untimed, folder / "untimed.nii.gz")
    (folder / "times.txt").write_text("\n".join(f"{t - times[0]:g}" for t in times) + "\n")
    (folder / "decreasing.txt").write_text("0\n90\n60\n")
    save_tiny_weights(folder / "tiny.safetensors")
    network = SegResNet(spatial_dims=3, in_channels=3, out_channels=2, init_filters=8)
    save_file(
        {name: t.contiguous() for name, t in network.state_dict().items()}, folder / "segresnet.safetensors"
    )
    (folder / "evil.pt").write_bytes(
        pickle.dumps({"state_dict": {}, "hook": RunsCodeWhenUnpickled(folder / "marker.txt")}, protocol=2)
    )
    return folder, geometry


def run(capsys, *argv):
    status = main(["--quiet", *map(str, argv)], commands=cli.COMMANDS)
    return status, capsys.readouterr()


def corners_ras(geometry: VolumeGeometry) -> np.ndarray:
    """RAS (mm) of the 8 outer voxel corners of a grid."""
    size_ijk = np.array(geometry.shape[::-1], dtype=float)
    corners = np.array(
        [[*(c - 0.5 for c in corner), 1.0] for corner in itertools.product(*((0, n) for n in size_ijk))]
    )
    return (geometry.ijk_to_ras @ corners.T).T[:, :3]


def segment_grid(segmentation_node) -> VolumeGeometry:
    """The grid a segmentation's first segment is stored on (its extent and image-to-world matrix)."""
    image = segmentation_node.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    extent = image.GetExtent()
    ijk_to_ras[:3, 3] += ijk_to_ras[:3, :3] @ np.array(extent[::2], dtype=float)
    return VolumeGeometry(
        ijk_to_ras, tuple(extent[2 * axis + 1] - extent[2 * axis] + 1 for axis in (2, 1, 0))
    )


def array_of(context, path: Path, labelmap: bool = False) -> np.ndarray:
    return np.array(slicer.util.arrayFromVolume(read_volume(context, path, labelmap=labelmap)))


@pytest.fixture(scope="module")
def segmented(files) -> Path:
    """The study segmented with the default settings (N4 on) and the probability map."""
    folder, _ = files
    out = folder / "segmented"
    argv = ["segment", folder / "study.seq.nrrd", "--out", out, "--weights", folder / "tiny.safetensors"]
    assert main(["--quiet", *map(str, argv), "--probability", *FAST], commands=cli.COMMANDS) == 0
    return out


def test_segment_writes_named_outputs_on_the_input_grid(mrml_context, files, segmented):
    _, geometry = files
    assert {path.name for path in segmented.iterdir()} == SEGMENT_OUTPUTS
    label_node = read_volume(mrml_context, segmented / "tumor_label.nrrd", labelmap=True)
    probability_node = read_volume(mrml_context, segmented / "tumor_probability.nrrd")
    segmentation_node = read_mask(mrml_context, segmented / "tumor.seg.nrrd")
    for grid in (
        volume_geometry(label_node),
        volume_geometry(probability_node),
        segment_grid(segmentation_node),
    ):
        assert grid.shape == SHAPE_KJI
        assert np.abs(corners_ras(grid) - corners_ras(geometry)).max() < 1e-4
    label = slicer.util.arrayFromVolume(label_node)
    probability = slicer.util.arrayFromVolume(probability_node)
    assert 0.0 <= probability.min() and probability.max() <= 1.0
    np.testing.assert_array_equal(label, (probability > 0.5).astype(label.dtype))
    assert segmentation_node.GetSegmentation().GetNthSegment(0).GetName() == "tumor"

    summary = json.loads((segmented / "summary.json").read_text())
    results = summary["results"]
    assert results["voxels"] == int(label.sum())
    assert results["volume_ml"] == pytest.approx(label.sum() * np.prod(SPACING_IJK_MM) / 1000.0)
    assert results["device"] == "cpu"
    assert results["phase_samples"] == [[0, 1, 2]]
    assert results["times_after_injection_s"][0] == 0.0
    assert summary["parameters"]["n4"] is True and summary["elapsed_s"] > 0
    assert any("trained without it" in note for note in results["notes"])


def test_segment_repeats_exactly_with_times_counted_from_the_pre_contrast_phase(
    capsys, tmp_path, mrml_context, files, segmented
):
    folder, _ = files
    out = tmp_path / "out"
    status, captured = run(
        capsys,
        "segment",
        folder / "study.seq.nrrd",
        "--out",
        out,
        "--weights",
        folder / "tiny.safetensors",
        "--probability",
        "--times",
        folder / "times.txt",
        *FAST,
    )
    assert status == 0, captured.err
    results = json.loads((segmented / "summary.json").read_text())["results"]
    assert f"tumour volume {results['volume_ml']:.2f} ml" in captured.out
    np.testing.assert_array_equal(
        array_of(mrml_context, out / "tumor_probability.nrrd"),
        array_of(mrml_context, segmented / "tumor_probability.nrrd"),
    )
    assert json.loads((out / "summary.json").read_text())["inputs"]["time_source"] == "times file times.txt"


def test_segment_bad_input_exits_2_with_the_fix_and_writes_nothing(capsys, tmp_path, files):
    folder, _ = files
    study, out, tiny = folder / "study.seq.nrrd", tmp_path / "out", folder / "tiny.safetensors"
    cases = [
        ([folder / "two.seq.nrrd", "--weights", tiny], "the study has 2 phase(s): give at least 3"),
        ([folder / "untimed.nii.gz", "--weights", tiny], "carries no acquisition times"),
        ([study, "--weights", tiny, "--times", folder / "decreasing.txt"], "is not increasing"),
        ([study, "--weights", folder / "segresnet.safetensors"], "weights file is for another architecture"),
        ([study, "--weights", folder / "evil.pt"], "was refused: it is not a tensors-only PyTorch file"),
        ([study, "--weights", tiny, "--phases", "0,1"], "is too short"),
        ([study, "--weights", tiny, "--phases", "0,1,3"], "is outside 0..2"),
        ([study, "--weights", tiny, "--threshold", "1"], "--threshold 1.0 is outside (0, 1)"),
        ([folder / "absent.seq.nrrd", "--weights", tiny], "does not exist"),
    ]
    before = sorted(p for root in (tmp_path, folder) for p in root.rglob("*"))
    for argv, fragment in cases:
        status, captured = run(capsys, "segment", *argv, "--out", out, "--no-n4", *FAST)
        assert status == 2, (argv, captured.err)
        assert fragment in captured.err, (argv, captured.err)
        assert "Traceback" not in captured.err
    assert sorted(p for root in (tmp_path, folder) for p in root.rglob("*")) == before
    assert not (folder / "marker.txt").exists()


# --------------------------------------------------------------------------- evaluate-segmentation


@pytest.fixture
def masks(tmp_path):
    """Truth cubes a and b on an oblique grid; prediction a is shifted by one voxel, b is a .seg.nrrd of the
    truth."""
    context = MRMLContext.create_headless()
    geometry = oblique_geometry((10, 12, 14), spacing_ijk=SPACING_IJK_MM)
    truth = np.zeros(geometry.shape, np.uint8)
    truth[2:6, 2:6, 2:6] = 1
    shifted = np.roll(truth, 1, axis=2)
    for name in ("predictions", "truth"):
        (tmp_path / name).mkdir()
    write_node(add_labelmap_volume(context, truth, geometry, "a"), tmp_path / "truth" / "a.nii.gz")
    write_node(add_labelmap_volume(context, truth, geometry, "b"), tmp_path / "truth" / "b.nrrd")
    write_node(add_labelmap_volume(context, shifted, geometry, "a"), tmp_path / "predictions" / "a.nrrd")
    write_node(
        add_segmentation(context, truth, geometry, "b", {1: "tumor"}), tmp_path / "predictions" / "b.seg.nrrd"
    )
    (tmp_path / "predictions" / "summary.json").write_text("{}")  # not a mask: ignored
    return tmp_path, context, geometry


def test_evaluate_segmentation_reports_known_overlaps(capsys, masks, monkeypatch):
    folder, _, _ = masks
    monkeypatch.chdir(folder)
    status, captured = run(capsys, "evaluate-segmentation", folder / "predictions", folder / "truth")
    assert status == 0, captured.err
    with open(folder / cli.DEFAULT_EVALUATION_CSV, newline="") as stream:
        rows = {row["case"]: row for row in csv.DictReader(stream)}
    # a: 48 of the 64 voxels of each cube overlap
    expected = {
        "a": {"dice": 0.75, "jaccard": 0.6, "precision": 0.75, "recall": 0.75},
        "b": {"dice": 1.0, "jaccard": 1.0, "precision": 1.0, "recall": 1.0, "hd95_mm": 0.0, "asd_mm": 0.0},
        "overall (mean)": {"dice": 0.875, "jaccard": 0.8, "precision": 0.875, "recall": 0.875},
    }
    for case, metrics in expected.items():
        for name, value in metrics.items():
            assert float(rows[case][name]) == pytest.approx(value, abs=1e-4), (case, name)
    assert 0.0 < float(rows["a"]["hd95_mm"]) <= max(SPACING_IJK_MM)
    assert "overall (mean)" in captured.out and "hd95_mm" in captured.out


def test_evaluate_segmentation_refuses_cases_without_pairs_and_other_grids(capsys, masks):
    folder, context, geometry = masks
    csv_path = folder / "report.csv"
    cube = np.ones(geometry.shape, np.uint8)
    write_node(add_labelmap_volume(context, cube, geometry, "c"), folder / "truth" / "c.nrrd")
    status, captured = run(
        capsys, "evaluate-segmentation", folder / "predictions", folder / "truth", "--csv", csv_path
    )
    assert status == 2 and "truth without prediction: c" in captured.err, captured.err

    moved = oblique_geometry(geometry.shape, spacing_ijk=(1.0, 1.1, 2.5))
    write_node(add_labelmap_volume(context, cube, moved, "c"), folder / "predictions" / "c.nii.gz")
    status, captured = run(
        capsys, "evaluate-segmentation", folder / "predictions", folder / "truth", "--csv", csv_path
    )
    assert (
        status == 2 and "prediction 'c.nii.gz' lies on another grid than its truth 'c.nrrd'" in captured.err
    )

    (folder / "predictions" / "b.nrrd").write_bytes((folder / "truth" / "b.nrrd").read_bytes())
    status, captured = run(
        capsys, "evaluate-segmentation", folder / "predictions", folder / "truth", "--csv", csv_path
    )
    assert status == 2 and "two files for case 'b'" in captured.err
    assert not csv_path.exists()


# --------------------------------------------------------------------------- train-segmentation


@pytest.fixture
def manifest(tmp_path):
    """Two small phantoms as one 3D file per phase (clock times), one for training, one for validation."""
    context = MRMLContext.create_headless()
    geometry = oblique_geometry(SHAPE_KJI, spacing_ijk=SPACING_IJK_MM)
    rows = ["case_id,phases,times,mask,split"]
    for seed, split in ((11, "train"), (12, "validation")):
        phantom = generate_breast_phantom(
            seed, shape=SHAPE_KJI, spacing=geometry.spacing_kji, **SMALL_PHANTOM
        )
        names = []
        for index, phase in enumerate(phantom.phases):
            names.append(f"case{seed}_{index:04d}.nrrd")
            write_node(add_scalar_volume(context, phase, geometry, names[-1]), tmp_path / names[-1])
        write_node(
            add_labelmap_volume(context, phantom.tumor_mask, geometry, "mask"),
            tmp_path / f"case{seed}_mask.nrrd",
        )
        times = ";".join(f"{t:.1f}" for t in phantom.times + 7200.0)
        rows.append(f"case{seed},{';'.join(names)},{times},case{seed}_mask.nrrd,{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "manifest.csv"


def training_log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "training_log.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_train_segmentation_resumes_an_interrupted_run(capsys, tmp_path, manifest, monkeypatch):
    settings = (
        "--iterations",
        "2",
        "--batch-size",
        "1",
        "--patch-size",
        "16,16,16",
        "--validate-every",
        "2",
        "--checkpoint-every",
        "1",
        "--device",
        "cpu",
        *TINY_NETWORK,
    )
    status, captured = run(capsys, "train-segmentation", manifest, "--out", tmp_path / "whole", *settings)
    assert status == 0, captured.err

    def interrupt_after_the_first_step(runtime, description):
        def report(fraction, message):
            if message.startswith("iteration 1/"):
                raise KeyboardInterrupt

        return Progress(report)

    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        patch.setattr(Runtime, "progress", interrupt_after_the_first_step)
        status, captured = run(capsys, "train-segmentation", manifest, "--out", interrupted, *settings)
    assert status == 130
    assert [row["iteration"] for row in training_log(interrupted)] == ["1"]

    status, captured = run(capsys, "train-segmentation", manifest, "--out", interrupted, *settings)
    assert status == 2 and "--resume" in captured.err
    status, captured = run(
        capsys, "train-segmentation", manifest, "--out", interrupted, *settings, "--resume"
    )
    assert status == 0, captured.err

    resumed, whole = training_log(interrupted), training_log(tmp_path / "whole")
    assert [row["iteration"] for row in resumed] == ["1", "2"]
    np.testing.assert_allclose(
        [float(row["loss"]) for row in resumed], [float(row["loss"]) for row in whole], rtol=1e-5
    )
    network, metadata = load_network(interrupted / "weights.safetensors")
    assert network.config.features == (4, 8, 8, 16)
    assert metadata["training_cases"] == ["case11"] and metadata["validation_cases"] == ["case12"]
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["results"]["iterations"] == 2
    assert np.isfinite(summary["results"]["best_validation_dice"])


def test_train_segmentation_bad_settings_exit_2(capsys, tmp_path, manifest):
    cases = [
        (["--patch-size", "16,16"], "must be three sizes"),
        (["--patch-size", "12,16,16", *TINY_NETWORK, "--iterations", "1"], "multiples of 8"),
        (["--learning-rate", "0"], "--learning-rate 0.0 is outside (0, inf]"),
        (["--first-state-space-level", "9"], "first_state_space_level 9"),
    ]
    for extra, fragment in cases:
        status, captured = run(capsys, "train-segmentation", manifest, "--out", tmp_path / "run", *extra)
        assert status == 2 and fragment in captured.err, (extra, captured.err)
    status, captured = run(capsys, "train-segmentation", tmp_path / "absent.csv", "--out", tmp_path / "run")
    assert status == 2 and "does not exist" in captured.err


# --------------------------------------------------------------------------- demo


def test_demo_without_the_shipped_weights_says_how_to_train_them(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(logic, "SHIPPED_WEIGHTS", tmp_path / "weights" / "temporal_mamba_unet.safetensors")
    status, captured = run(capsys, "demo", "segment", "--out", tmp_path / "demo")
    assert status == 2
    assert "are not installed" in captured.err and "train_segmentation_weights.py" in captured.err
    assert not (tmp_path / "demo").exists()


def test_demo_prints_dice_and_benign_coverage_of_its_phantoms(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(logic, "SHIPPED_WEIGHTS", save_tiny_weights(tmp_path / "tiny.safetensors"))
    monkeypatch.setattr(cli, "DEMO_PHANTOM", DEMO_PHANTOM)
    status, captured = run(capsys, "demo", "segment", "--out", tmp_path / "demo")
    assert status == 0, captured.err
    printed = {
        cells[0].strip(): (float(cells[1]), float(cells[2].strip(" %")))
        for cells in (line.split("|") for line in captured.out.splitlines())
        if len(cells) == 3 and cells[0].strip().startswith("phantom_")
    }
    assert list(printed) == [f"phantom_{seed}" for seed in cli.DEMO_SEEDS]
    context = MRMLContext.create_headless()
    for seed in cli.DEMO_SEEDS:
        phantom = generate_breast_phantom(seed, **DEMO_PHANTOM)
        label = array_of(
            context, tmp_path / "demo" / "segment" / f"phantom_{seed}" / "tumor_label.nrrd", True
        )
        dice, covered = printed[f"phantom_{seed}"]
        assert dice == pytest.approx(dice_coefficient(label, phantom.tumor_mask), abs=5e-4)
        assert covered == pytest.approx(100 * covered_fraction(label, phantom.benign_mask), abs=0.05)
