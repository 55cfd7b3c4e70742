"""Output folders are written completely or not at all, and never replace an input."""

import json
import time

import pytest
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.outputs import OutputFolder, write_summary


def test_outputs_appear_only_on_success(tmp_path):
    destination = tmp_path / "out"
    with OutputFolder(destination) as out:
        out.path("a.txt").write_text("a")
        assert not destination.exists()
    assert (destination / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_nothing(tmp_path):
    destination = tmp_path / "out"
    with pytest.raises(RuntimeError), OutputFolder(destination) as out:
        out.path("a.txt").write_text("a")
        raise RuntimeError("fit exploded")
    assert list(tmp_path.iterdir()) == []


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(InputError, match="is a file"):
        OutputFolder(tmp_path / "out")


def test_output_that_would_overwrite_an_input(tmp_path):
    source = tmp_path / "Ktrans.nrrd"
    source.write_text("input data")
    with pytest.raises(InputError, match="would overwrite an input"), OutputFolder(tmp_path, [source]) as out:
        out.path("Ktrans.nrrd").write_text("result")
    assert source.read_text() == "input data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Ktrans.nrrd"]


def test_summary_records_version_parameters_and_time(tmp_path):
    started = time.perf_counter()
    path = write_summary(tmp_path / "summary.json", "dce", inputs={"input": "a.nii.gz"},
                         parameters={"model": "tofts"}, results={"voxels_fitted": 10}, started=started)
    summary = json.loads(path.read_text())
    assert summary["command"] == "dce" and summary["parameters"] == {"model": "tofts"}
    assert summary["software"]["slicer_spatiotemporal"]
    assert summary["elapsed_s"] >= 0
