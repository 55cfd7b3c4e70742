"""``spatiotemporal echo``: feature asymmetry and LV volumes from files; ``spatiotemporal demo echo``.

Reads the input into a scene with Slicer's storage nodes, runs :func:`Echo4DFeaturesLib.logic.run_echo`
(the same code as the Slicer panel) and writes into the output folder:

- ``feature_asymmetry.seq.nrrd``: the oriented feature asymmetry the boundary was found on, in [0, 1];
- ``local_phase.seq.nrrd``: the monogenic local phase (rad, in [0, pi]);
- ``lv.seq.nrrd``: the left ventricle as a labelmap sequence, 1 = cavity;
- (with ``--format nifti`` the three are 4D ``.nii.gz`` files of the same names);
- ``volumes.csv`` (columns ``frame,time_s,volume_ml``, six significant digits; ``time_s`` is ``nan`` when
  the input carries no frame times and no ``--times`` file is given; Slicer writes the column types
  beside it in ``volumes.schema.csv``) and ``volume_curve.png``;
- ``summary.json`` with ``EDV_ml``, ``ESV_ml``, ``SV_ml``, ``EF`` (percent), ``ed_frame``, ``es_frame``,
  the seed used (``seed_ras_mm``) and whether it was found automatically (``seed_automatic``).

Every output sequence lies on the input's voxels. Nothing is written when the run fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from SpatioTemporalCommonLib.cli import Command, Runtime
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.io import read_series, write_node
from SpatioTemporalCommonLib.outputs import OutputFolder, write_summary
from SpatioTemporalCommonLib.parameters import add_parameter_arguments, parameters_from_arguments
from SpatioTemporalCommonLib.sequences import add_volume_sequence

from .logic import EchoResult, run_echo
from .parameters import EchoParameters, check_parameters
from .phantom import EchoPhantom, make_echo_phantom
from .plots import save_long_axis_figure, save_volume_curve_figure
from .volumes import VolumeIndices

SEQUENCE_SUFFIXES = {"nrrd": ".seq.nrrd", "nifti": ".nii.gz"}
OUTPUT_SEQUENCES = ("feature_asymmetry", "local_phase", "lv")
"""Base names of the output sequence files."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal echo``."""
    parser.add_argument(
        "input", help="3D+t echo series: .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz or a DICOM folder"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--times", metavar="FILE", help="frame times, one value in seconds per line")
    parser.add_argument(
        "--seed",
        metavar="R,A,S",
        help="a point in the left-ventricular cavity, RAS mm (default: found automatically); "
        "write --seed=-10,5,3 when the first coordinate is negative",
    )
    parser.add_argument(
        "--format",
        choices=tuple(SEQUENCE_SUFFIXES),
        default="nrrd",
        help="file format of the output sequences (.seq.nrrd or 4D .nii.gz)",
    )
    add_parameter_arguments(parser, EchoParameters)


def parse_seed(text: str) -> tuple[float, float, float]:
    """A seed point ``R,A,S`` in mm."""
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise InputError(f"--seed {text!r} is not a point R,A,S: give three numbers in mm, e.g. 12.5,-30,41")
    return values


def run(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal echo``."""
    started = time.perf_counter()
    context = runtime.context
    output = OutputFolder(args.out, [p for p in (args.input, args.times) if p and Path(p).exists()])
    parameters = parameters_from_arguments(EchoParameters, args)
    check_parameters(parameters)
    seed_ras = parse_seed(args.seed) if args.seed is not None else None
    sequence, series = read_series(context, args.input, times_file=args.times)
    with output as out:
        result = run_echo(
            context,
            sequence,
            parameters,
            seed_ras=seed_ras,
            progress=runtime.progress("echo"),
        )
        write_outputs(out, result, args.format)
        write_summary(
            out.path("summary.json"),
            "echo",
            inputs={
                "input": args.input,
                "frames": series.n_frames,
                "time_source": series.time_source,
                "times": args.times,
                "spacing_ijk_mm": series.geometry.spacing_ijk,
            },
            parameters={**dataclasses.asdict(parameters), "format": args.format},
            results=summary_results(result),
            started=started,
        )
    indices = result.analysis.indices
    seed_text = ", ".join(f"{v:.1f}" for v in result.seed_ras)
    runtime.say(
        f"EDV {indices.edv_ml:.2f} ml, ESV {indices.esv_ml:.2f} ml, SV {indices.sv_ml:.2f} ml, "
        f"EF {indices.ef_percent:.1f} % (ED frame {indices.ed_frame}, ES frame {indices.es_frame}); "
        f"seed R,A,S = ({seed_text}) mm ({'automatic' if result.analysis.seed_automatic else 'given'}); "
        f"outputs in {args.out}"
    )


def summary_results(result: EchoResult) -> dict:
    """The ``results`` part of ``summary.json``."""
    analysis, indices = result.analysis, result.analysis.indices
    return {
        "EDV_ml": indices.edv_ml,
        "ESV_ml": indices.esv_ml,
        "SV_ml": indices.sv_ml,
        "EF": indices.ef_percent,
        "ed_frame": indices.ed_frame,
        "es_frame": indices.es_frame,
        "seed_ras_mm": list(result.seed_ras),
        "seed_automatic": analysis.seed_automatic,
        "volumes_ml": analysis.volumes_ml,
        "phase_wavelength_mm": analysis.phase_wavelength_mm,
        "units": {
            "EDV_ml": "ml",
            "ESV_ml": "ml",
            "SV_ml": "ml",
            "EF": "%",
            "ed_frame": "frame (0-based)",
            "es_frame": "frame (0-based)",
            "feature_asymmetry": "",
            "local_phase": "rad",
            "lv": "1 = cavity",
        },
    }


def write_outputs(out: OutputFolder, result: EchoResult, file_format: str) -> None:
    """Write the three sequences, ``volumes.csv`` and ``volume_curve.png`` into the staged output folder."""
    suffix = SEQUENCE_SUFFIXES[file_format]
    sequences = (result.feature_asymmetry_sequence, result.local_phase_sequence, result.lv_sequence)
    for name, sequence in zip(OUTPUT_SEQUENCES, sequences, strict=True):
        write_node(sequence, out.path(name + suffix))
    write_node(result.volume_table, out.path("volumes.csv"))
    analysis = result.analysis
    save_volume_curve_figure(
        out.path("volume_curve.png"), analysis.times_s, analysis.volumes_ml, analysis.indices
    )


# --------------------------------------------------------------------------- demo

DEMO_FRAMES = 12
DEMO_CYCLE_S = 0.8
"""One cardiac cycle at 75 beats per minute."""


def _write_phantom(runtime: Runtime, phantom: EchoPhantom, path: Path) -> None:
    """Write the phantom's image as a .seq.nrrd (k along the beam, pointing inferior; 0 at the probe)."""
    spacing_ijk = phantom.spacing_mm[::-1]
    ijk_to_ras = np.diag([*spacing_ijk[:2], -spacing_ijk[2], 1.0])
    geometry = VolumeGeometry(ijk_to_ras, phantom.image.shape[:3])
    times = np.arange(phantom.image.shape[3]) * DEMO_CYCLE_S / phantom.image.shape[3]
    sequence = add_volume_sequence(
        runtime.context, np.moveaxis(phantom.image, -1, 0), times, geometry, "echo_phantom"
    )
    with OutputFolder(path.parent) as staged:
        write_node(sequence, staged.path(path.name))


def _print_truth_against_measured(runtime: Runtime, phantom: EchoPhantom, results: dict) -> None:
    truth = phantom.cavity_volumes_ml
    edv, esv = float(truth.max()), float(truth.min())
    rows = (
        ("EDV (ml)", edv, results["EDV_ml"]),
        ("ESV (ml)", esv, results["ESV_ml"]),
        ("SV (ml)", edv - esv, results["SV_ml"]),
        ("EF (%)", 100.0 * (edv - esv) / edv, results["EF"]),
    )
    runtime.say(" measure  |   true | measured")
    for label, true, measured in rows:
        runtime.say(f" {label:8} | {true:6.2f} | {measured:8.2f}")
    runtime.say(
        f" ED/ES frame: true {phantom.ed_frame}/{phantom.es_frame}, "
        f"measured {results['ed_frame']}/{results['es_frame']}; seed R,A,S = ("
        + ", ".join(f"{v:.1f}" for v in results["seed_ras_mm"])
        + ") mm, "
        + ("found automatically" if results["seed_automatic"] else "given")
    )


def _save_demo_figure(runtime: Runtime, phantom: EchoPhantom, results_dir: Path, figure_path: Path) -> None:
    """FA and the LV outline over the long-axis slice through the cavity at end-diastole, beside V(t)."""
    _, fa = read_series(runtime.context, results_dir / "feature_asymmetry.seq.nrrd")
    _, lv = read_series(runtime.context, results_dir / "lv.seq.nrrd")
    results = json.loads((results_dir / "summary.json").read_text())["results"]
    indices = VolumeIndices(
        results["EDV_ml"],
        results["ESV_ml"],
        results["SV_ml"],
        results["EF"],
        results["ed_frame"],
        results["es_frame"],
    )
    table = np.genfromtxt(results_dir / "volumes.csv", delimiter=",", names=True)
    ed, column = indices.ed_frame, round(phantom.cavity_centre_kji[1])
    with OutputFolder(figure_path.parent) as staged:
        save_long_axis_figure(
            staged.path(figure_path.name),
            phantom.image[:, column, :, ed],
            fa.frames[ed, :, column, :],
            lv.frames[ed, :, column, :] == 1,
            (phantom.spacing_mm[0], phantom.spacing_mm[2]),
            table["time_s"],
            table["volume_ml"],
            indices,
            true_volumes_ml=phantom.cavity_volumes_ml,
        )


def demo(out_dir: Path, runtime: Runtime) -> None:
    """The speckle phantom through ``spatiotemporal echo``; prints true vs measured EDV, ESV, SV and EF."""
    out_dir = Path(out_dir)
    phantom = make_echo_phantom((64, 64, 64), (1.0, 1.0, 1.0), n_frames=DEMO_FRAMES, seed=1)
    input_path = out_dir / "echo_phantom.seq.nrrd"
    _write_phantom(runtime, phantom, input_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args([str(input_path), "--out", str(out_dir / "results")]), runtime)
    results = json.loads((out_dir / "results" / "summary.json").read_text())["results"]
    _print_truth_against_measured(runtime, phantom, results)
    _save_demo_figure(runtime, phantom, out_dir / "results", out_dir / "fa_long_axis.png")
    runtime.say(f"figure: {out_dir / 'fa_long_axis.png'}")


COMMAND = Command(
    name="echo",
    help="3D+t echocardiography: 4D feature asymmetry, local phase, left ventricle over the cycle, EF",
    add_arguments=add_arguments,
    run=run,
    demo=demo,
)
