"""``spatiotemporal dce``: DCE-MRI maps from files, and ``spatiotemporal demo dce``.

Reads the inputs into a scene with Slicer's storage nodes, runs :func:`DCEKineticsLib.logic.run_dce`
(the same code as the Slicer panel) and writes one file per map, ``statistics.csv``, ``curves.png``
and ``summary.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import slicer.util
from SpatioTemporalCommonLib.cli import Command, Runtime
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.io import read_mask, read_series, read_volume, write_node
from SpatioTemporalCommonLib.outputs import OutputFolder, write_summary
from SpatioTemporalCommonLib.parameters import (
    add_parameter_arguments,
    parameters_from_arguments,
)
from SpatioTemporalCommonLib.sequences import add_volume_sequence

from .dro import make_dro
from .logic import run_dce, run_t1_mapping
from .parameters import DCEParameters
from .plots import save_curves_figure

MAP_SUFFIXES = {"nrrd": ".nrrd", "nifti": ".nii.gz"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal dce``."""
    parser.add_argument("input", help="4D DCE series: .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz or a DICOM folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--times", metavar="FILE", help="frame times, one value in seconds per line")
    parser.add_argument("--mask", metavar="FILE", help="voxels to fit: label volume or .seg.nrrd (regions of the statistics)")
    parser.add_argument("--aif-mask", metavar="FILE", help="artery mask for --aif auto: label volume or .seg.nrrd")
    parser.add_argument("--t1", metavar="MS|FILE", help="pre-contrast T1: one value in ms, or a T1 map volume (ms)")
    parser.add_argument("--resample-mask", action="store_true",
                        help="resample masks and the T1 map on another grid by nearest neighbour")
    parser.add_argument("--format", choices=tuple(MAP_SUFFIXES), default="nrrd", help="file format of the maps")
    parser.add_argument("--vfa", metavar="FILE",
                        help="variable-flip-angle images (one frame per flip angle) to compute the T1 map from")
    add_parameter_arguments(parser, DCEParameters, exclude=("t1_ms",))


def _t1_inputs(context, args: argparse.Namespace, parameters: DCEParameters):
    """``(t1_ms, t1_map_node)`` from ``--t1`` (a number in ms or a T1 map) or ``--vfa`` (computed)."""
    if args.vfa is not None:
        if args.t1 is not None:
            raise InputError("--t1 and --vfa both give the pre-contrast T1: give only one of them")
        if parameters.vfa_flip_angles_deg is None:
            raise InputError("--vfa needs --vfa-flip-angles: give the flip angle (deg) of each VFA frame")
        tr_ms = parameters.vfa_tr_ms or parameters.tr_ms
        if tr_ms is None:
            raise InputError("--vfa needs the repetition time of the VFA images: give --vfa-tr MS (or --tr)")
        vfa_sequence, _ = read_series(context, args.vfa)
        node, _ = run_t1_mapping(context, vfa_sequence, parameters.vfa_flip_angles_deg, tr_ms, parameters.t1_method)
        return None, node
    if args.t1 is None:
        return None, None
    try:
        return float(args.t1), None
    except ValueError:
        return None, read_volume(context, args.t1, what="T1 map")


def run(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal dce``."""
    started = time.perf_counter()
    context = runtime.context
    inputs = [p for p in (args.input, args.times, args.mask, args.aif_mask, args.t1, args.vfa, args.aif)
              if p and Path(p).exists()]
    output = OutputFolder(args.out, inputs)
    sequence, series = read_series(context, args.input, times_file=args.times)
    parameters = parameters_from_arguments(DCEParameters, args, t1_ms=None)
    t1_ms, t1_map = _t1_inputs(context, args, parameters)
    parameters.t1_ms = t1_ms
    mask = read_mask(context, args.mask) if args.mask else None
    aif_mask = read_mask(context, args.aif_mask, what="AIF mask") if args.aif_mask else None
    with output as out:
        result = run_dce(context, sequence, parameters, mask_node=mask, aif_mask_node=aif_mask, t1_map_node=t1_map,
                         resample_masks=args.resample_mask, progress=runtime.progress("dce"))
        write_outputs(out, result, parameters, args.format)
        if t1_map is not None:
            write_node(t1_map, out.path("T1" + MAP_SUFFIXES[args.format]))
        analysis, parameters = result.analysis, result.parameters
        write_summary(out.path("summary.json"), "dce",
                      inputs={"input": args.input, "frames": series.n_frames, "time_source": series.time_source,
                              "mask": args.mask, "aif_mask": args.aif_mask, "t1": args.t1, "vfa": args.vfa,
                              "prefilled": result.prefilled},
                      parameters=vars(parameters),
                      results={"voxels_fitted": analysis.n_fitted, "voxels_failed": analysis.n_failed,
                               "aif": analysis.aif_description, "baseline_frames": analysis.baseline_frames,
                               "bolus_arrival_s": analysis.arrival_s, "maps": sorted(analysis.maps),
                               "units": analysis.units},
                      started=started)
    runtime.say(f"{analysis.n_fitted} voxels fitted, {analysis.n_failed} failed ({parameters.model}, "
                f"{analysis.aif_description}); outputs in {args.out}")


def write_outputs(out: OutputFolder, result, parameters: DCEParameters, file_format: str) -> None:
    """Write every map, ``statistics.csv`` and ``curves.png`` into the staged output folder."""
    suffix = MAP_SUFFIXES[file_format]
    for name, node in result.map_nodes.items():
        write_node(node, out.path(name + suffix))
    write_node(result.statistics_table, out.path("statistics.csv"))
    analysis = result.analysis
    save_curves_figure(out.path("curves.png"), analysis.times_s, analysis.mean_concentration_mM, analysis.mean_fit_mM,
                       analysis.aif_plasma_mM, model=parameters.model, aif_description=analysis.aif_description)


def demo(out_dir: Path, runtime: Runtime) -> None:
    """Extended Tofts on a QIBA-style digital reference object; prints true vs estimated per patch."""
    dro = make_dro()
    out_dir = Path(out_dir)
    input_path = out_dir / "dro_signal.seq.nrrd"
    geometry = VolumeGeometry(np.diag([1.0, 1.0, 3.0, 1.0]), dro.patch_labels.shape)
    sequence = add_volume_sequence(runtime.context, np.moveaxis(dro.signal, -1, 0), dro.times_s, geometry, "dro")
    with OutputFolder(out_dir) as staged:
        write_node(sequence, staged.path(input_path.name))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args([str(input_path), "--out", str(out_dir / "maps"), "--model", "extended-tofts",
                           "--aif", "parker", "--t1", str(dro.t1_ms), "--flip-angle", str(dro.flip_angle_deg),
                           "--tr", str(dro.tr_ms)]), runtime)
    estimates = {name: slicer.util.arrayFromVolume(read_volume(runtime.context, out_dir / "maps" / f"{name}.nrrd"))
                 for name in ("Ktrans", "ve", "vp")}
    runtime.say(" patch | Ktrans true / est (/min) | ve true / est | vp true / est   (patch medians, SNR 20)")
    for patch in range(1, int(dro.patch_labels.max()) + 1):
        inside = dro.patch_labels == patch
        cells = [f"{dro.truth[n][inside][0]:.3f} / {np.nanmedian(estimates[n][inside]):.3f}"
                 for n in ("Ktrans", "ve", "vp")]
        runtime.say(f" {patch:5d} | {cells[0]:>24} | {cells[1]:>13} | {cells[2]:>13}")


COMMAND = Command(
    name="dce",
    help="DCE-MRI: concentration, AIF, Tofts / extended Tofts / Patlak / 2CXM / 2CUM / AATH and curve maps",
    add_arguments=add_arguments,
    run=run,
    demo=demo,
)
