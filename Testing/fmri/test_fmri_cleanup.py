"""Selective temporal-ICA clean-up in the fMRI pipeline: a planted nuisance goes, the signals stay."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from FMRIDynamicsLib.cli import COMMAND
from FMRIDynamicsLib.parameters import FMRIParameters
from FMRIDynamicsLib.phantom import make_phantom
from FMRIDynamicsLib.pipeline import analyse_fmri, full_length_operator, preprocess
from SpatioTemporalCommonLib.cli import main
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.io import write_node
from SpatioTemporalCommonLib.progress import as_progress
from SpatioTemporalCommonLib.sequences import add_volume_sequence
from SpatioTemporalCommonLib.synthetic import oblique_geometry

NUISANCE_HZ = 0.095
"""Frequency of the planted vasomotion-like nuisance: inside both the high-pass and the band-pass."""
NUISANCE_NAME = "vasomotion"
CLEANUP_COMPONENTS = 6


def planted(phantom, seed=1):
    """The phantom plus a sinusoidal nuisance in every brain voxel (weights 4 to 12, a gradient along j),
    and the recorded nuisance signal (the true one plus noise of SD 0.3)."""
    times = np.arange(phantom.data.shape[-1]) * phantom.tr_s
    nuisance = np.sin(2 * np.pi * NUISANCE_HZ * times)
    nuisance = (nuisance - nuisance.mean()) / nuisance.std()
    gradient = np.linspace(-1.0, 1.0, phantom.brain.shape[1])[None, :, None]
    weights = np.where(phantom.brain, 8.0 + 4.0 * gradient, 0.0)
    recorded = nuisance + 0.3 * np.random.default_rng(seed).standard_normal(nuisance.size)
    return phantom.data + weights[..., None] * nuisance, nuisance, recorded


def cleaned_series(data, phantom, parameters, **inputs):
    """The unfiltered and band-passed cleaned series of the brain voxels, and the clean-up reports."""
    prepared = preprocess(
        np.asarray(data, dtype=float),
        phantom.brain,
        phantom.tr_s,
        phantom.spacing_kji,
        parameters,
        ("int", "reho"),
        progress=as_progress(None),
        **inputs,
    )
    return {"unfiltered": prepared.unfiltered, "band-passed": prepared.band_passed}, prepared.cleanup


def write_series(path, data, phantom):
    """Write ``(k, j, i, T)`` data on an oblique grid as a ``.seq.nrrd`` with frame times in s."""
    context = MRMLContext.create_headless()
    geometry = oblique_geometry(phantom.brain.shape, spacing_ijk=phantom.spacing_kji[::-1])
    times = np.arange(data.shape[-1]) * phantom.tr_s
    frames = np.moveaxis(data, -1, 0).astype(np.float32)
    return write_node(add_volume_sequence(context, frames, times, geometry, "bold"), path)


def row_correlations(rows, signal):
    """Pearson r of every row with ``signal``."""
    rows = rows - rows.mean(axis=1, keepdims=True)
    signal = signal - signal.mean()
    return rows @ signal / (np.linalg.norm(rows, axis=1) * np.linalg.norm(signal))


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape_kji=(8, 16, 16), n_frames=400)


def test_cleanup_removes_the_planted_nuisance_and_keeps_the_signals(phantom):
    data, nuisance, recorded = planted(phantom)
    plain = FMRIParameters(motion_correction=False)
    after, reports = cleaned_series(
        data,
        phantom,
        FMRIParameters(motion_correction=False, ica_cleanup=True, ica_cleanup_components=CLEANUP_COMPONENTS),
        confounds=recorded[:, None],
        confound_names=(NUISANCE_NAME,),
    )
    n_frames = nuisance.size
    bands = {
        "unfiltered": (1 / plain.high_pass_cutoff_s, None),
        "band-passed": (plain.band_low_hz, plain.band_high_hz),
    }
    signal_rows = ((phantom.labels > 0) | (phantom.cubes > 0))[phantom.brain]
    for name, band in bands.items():
        # the series the pipeline makes without the clean-up: the same projection, nothing regressed
        operator = full_length_operator(n_frames, phantom.tr_s, None, plain, band, np.zeros(n_frames, bool))
        truth, before, filtered = (
            phantom.data[phantom.brain] @ operator,
            data[phantom.brain] @ operator,
            nuisance @ operator,
        )
        report = reports[name]
        assert report.nuisance_names == (NUISANCE_NAME,) and report.removed.size == 1, name
        assert abs(report.correlations[report.removed[0], 0]) > 0.9, name
        assert np.median(np.abs(row_correlations(before, filtered))) > 0.3, name
        assert np.median(np.abs(row_correlations(after[name], filtered))) < 0.1, name
        planted_rms = np.sqrt(np.mean((before - truth) ** 2))
        left_rms = np.sqrt(np.mean((after[name] - truth) ** 2))
        assert left_rms < 0.35 * planted_rms, name
        # the oscillation and the task responses: the cleaned voxels follow the nuisance-free ones
        kept = [
            np.corrcoef(a, b)[0, 1] for a, b in zip(after[name][signal_rows], truth[signal_rows], strict=True)
        ]
        assert np.median(kept) > 0.95, name


def test_cleanup_table_summary_and_lag_map_of_the_analysis(phantom):
    data, _, recorded = planted(phantom)

    def analyse(**options):
        parameters = FMRIParameters(motion_correction=False, features="lag", **options)
        inputs = {"confounds": recorded[:, None], "confound_names": [NUISANCE_NAME]} if options else {}
        return analyse_fmri(data, phantom.tr_s, phantom.spacing_kji, parameters, **inputs)

    analysis = analyse(ica_cleanup=True, ica_cleanup_components=CLEANUP_COMPONENTS)
    table = analysis.tables["ica_cleanup"]
    assert table["series"].tolist() == ["unfiltered"] * CLEANUP_COMPONENTS
    np.testing.assert_array_equal(table["component"], np.arange(1, CLEANUP_COMPONENTS + 1))
    np.testing.assert_array_equal(table["best_correlation"], table[f"r_{NUISANCE_NAME}"])
    removed = np.flatnonzero(table["removed"])
    assert removed.size == 1 and np.all(np.abs(table["best_correlation"][table["removed"] == 0]) < 0.5)
    summary = analysis.summary["ica_cleanup"]["unfiltered"]
    assert summary["removed"] == [int(removed[0]) + 1] and summary["removed_best_match"] == [NUISANCE_NAME]
    assert summary["removed_correlation"] == [pytest.approx(table["best_correlation"][removed[0]])]
    oscillating = np.isfinite(phantom.lag_s)

    def lag_error(result):
        return np.median(np.abs(result.maps["lag"][oscillating] - phantom.lag_s[oscillating]))

    # the nuisance pulls every lag towards its own phase; the clean-up takes most of that pull away
    assert lag_error(analysis) < 0.15 and lag_error(analysis) < 0.6 * lag_error(analyse())


def test_cleanup_without_nuisance_signals_or_with_too_many_components_is_refused(phantom):
    with pytest.raises(InputError, match="--ica-cleanup removes the components that match nuisance signals"):
        cleaned_series(phantom.data, phantom, FMRIParameters(motion_correction=False, ica_cleanup=True))
    with pytest.raises(
        InputError,
        match="--ica-cleanup-components 400 does not fit 448 analysed voxels x 400 frames: give at most 399",
    ):
        cleaned_series(
            phantom.data,
            phantom,
            FMRIParameters(
                motion_correction=False, ica_cleanup=True, ica_cleanup_components=400, global_signal=True
            ),
        )
    linear = np.arange(phantom.data.shape[-1], dtype=float)[:, None]
    with pytest.raises(InputError, match=r"remove every nuisance signal of the run \(trend\)"):
        cleaned_series(
            phantom.data,
            phantom,
            FMRIParameters(motion_correction=False, ica_cleanup=True),
            confounds=linear,
            confound_names=("trend",),
        )


def test_cli_writes_the_cleanup_table_and_refuses_it_without_nuisance_signals(capsys, tmp_path, phantom):
    data, _, recorded = planted(phantom)
    source = write_series(tmp_path / "bold.seq.nrrd", data, phantom)
    confounds = tmp_path / "physio.tsv"
    confounds.write_text(NUISANCE_NAME + "\n" + "\n".join(f"{value:.6f}" for value in recorded) + "\n")
    common = ["--quiet", "fmri", str(source), "--no-motion-correction", "--features", "int", "--ica-cleanup"]
    before = sorted(tmp_path.rglob("*"))
    status = main([*common, "--out", str(tmp_path / "refused")], commands=[COMMAND])
    assert status == 2 and "--ica-cleanup removes the components that match" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before
    out = tmp_path / "out"
    status = main(
        [
            *common,
            "--out",
            str(out),
            "--confounds",
            str(confounds),
            "--ica-cleanup-components",
            str(CLEANUP_COMPONENTS),
        ],
        commands=[COMMAND],
    )
    assert status == 0, capsys.readouterr().err
    with (out / "ica_cleanup.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == CLEANUP_COMPONENTS
    assert [row["best_match"] for row in rows if row["removed"] == "1"] == [NUISANCE_NAME]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["ica_cleanup"] is True
    assert summary["results"]["features_detail"]["ica_cleanup"]["unfiltered"]["removed_best_match"] == [
        NUISANCE_NAME
    ]
