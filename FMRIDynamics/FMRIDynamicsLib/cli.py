"""``spatiotemporal fmri``: BOLD fMRI features from files, and ``spatiotemporal demo fmri``.

Reads the inputs into a scene with Slicer's storage nodes, runs :func:`FMRIDynamicsLib.logic.run_fmri`
(the same code as the Slicer panel) and writes, into the output folder, one file per map
(``<feature>.nrrd`` or ``.nii.gz``), ``ica_components.seq.nrrd`` (or ``.nii.gz``), one CSV per table
(``motion``, ``qc``, ``fc_matrix``, ``dfc``, ``delay_matrix``, ``region_lags``, ``time_courses``,
``lag_reference``, ``ica_time_courses``, ``ica_cleanup``; Slicer writes a ``.schema.csv`` with the
column types beside each), the figures ``carpet.png``, ``lag_map.png``, ``fc_matrix.png``,
``delay_matrix.png`` and ``summary.json``. Nothing is written when the run fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import slicer.util
from SpatioTemporalCommonLib.cli import Command, Runtime
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.io import read_mask, read_series, read_volume, write_node
from SpatioTemporalCommonLib.nodes import add_labelmap_volume
from SpatioTemporalCommonLib.outputs import OutputFolder, write_summary
from SpatioTemporalCommonLib.parameters import add_parameter_arguments, parameters_from_arguments
from SpatioTemporalCommonLib.sequences import add_volume_sequence
from SpatioTemporalCommonLib.synthetic import oblique_geometry

from .glm import Events
from .logic import FMRIResult, run_fmri
from .parameters import FMRIParameters
from .phantom import FMRIPhantom, make_phantom
from .plots import save_carpet_plot, save_map_montage, save_matrix_figure

MAP_SUFFIXES = {"nrrd": ".nrrd", "nifti": ".nii.gz"}
SEQUENCE_SUFFIXES = {"nrrd": ".seq.nrrd", "nifti": ".nii.gz"}
BAND_OPTIONS = {
    "--band": ("band_low_hz", "band_high_hz", "pass band of the cleaned data (connectivity, lag, ReHo)"),
    "--alff-band": ("alff_low_hz", "alff_high_hz", "band of ALFF and fALFF"),
}
"""Options that set two parameters at once (the low and high edge of a band in Hz), with their help."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal fmri``."""
    parser.add_argument(
        "input", help="4D BOLD series: .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz or a DICOM folder"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--times",
        metavar="FILE",
        help="frame times, one value in seconds per line (when the file's own timing is wrong)",
    )
    parser.add_argument(
        "--mask", metavar="FILE", help="brain mask: label volume or .seg.nrrd (default: automatic)"
    )
    parser.add_argument("--events", metavar="FILE", help="BIDS events.tsv (onset, duration, trial_type)")
    parser.add_argument(
        "--confounds",
        metavar="FILE",
        help="confounds TSV with a header; every column is regressed out (fMRIPrep motion columns "
        "trans_*/rot_* also give the framewise displacement without motion correction)",
    )
    parser.add_argument(
        "--slice-timing",
        metavar="FILE",
        help="BIDS JSON sidecar with SliceTiming, or a list of slice times in s (slices along k)",
    )
    parser.add_argument(
        "--labels", metavar="FILE", help="region labelmap or .seg.nrrd (connectivity, region delays)"
    )
    parser.add_argument(
        "--seed",
        nargs="+",
        action="extend",
        default=[],
        metavar="R,A,S",
        help="seed points in RAS mm for seed correlation maps (seed_<n>_correlation); "
        "write --seed=-10,5,3 when the first coordinate is negative",
    )
    parser.add_argument(
        "--seed-labels",
        metavar="FILE",
        help="seed regions: label volume or .seg.nrrd, one seed per label or segment, its mean series "
        "the seed of seed_<name>_correlation (the segment name, or label_<n>)",
    )
    parser.add_argument(
        "--white-matter-mask", metavar="FILE", help="white-matter mask: its mean is regressed out"
    )
    parser.add_argument("--csf-mask", metavar="FILE", help="CSF mask: its mean is regressed out")
    parser.add_argument(
        "--resample-mask",
        action="store_true",
        help="resample masks and labels on another grid by nearest neighbour",
    )
    fields = {field.name: field for field in dataclasses.fields(FMRIParameters)}
    for option, (low, high, text) in BAND_OPTIONS.items():
        parser.add_argument(
            option,
            nargs=2,
            type=float,
            metavar=("LOW", "HIGH"),
            help=f"{text} (Hz); default {fields[low].default:g} {fields[high].default:g}",
        )
    add_parameter_arguments(
        parser,
        FMRIParameters,
        exclude=tuple(name for low, high, _ in BAND_OPTIONS.values() for name in (low, high)),
    )


def parse_ras(text: str, number: int) -> tuple[float, float, float]:
    """A seed point ``R,A,S`` in mm."""
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise InputError(
            f"--seed {text!r} (seed {number}) is not a point R,A,S: give three numbers in mm, e.g. 10,-52,28"
        )
    return values


def _band_overrides(args: argparse.Namespace) -> dict[str, float]:
    overrides = {}
    for option, (low, high, _) in BAND_OPTIONS.items():
        given = getattr(args, option.lstrip("-").replace("-", "_"))
        if given is not None:
            overrides.update({low: given[0], high: given[1]})
    return overrides


def _input_paths(args: argparse.Namespace, parameters: FMRIParameters) -> list[str]:
    """Every file the run reads (no output may replace one)."""
    candidates = (
        args.input,
        args.times,
        args.mask,
        args.events,
        args.confounds,
        args.slice_timing,
        args.labels,
        args.seed_labels,
        args.white_matter_mask,
        args.csf_mask,
        None if parameters.reference == "global" else parameters.reference,
    )
    return [path for path in candidates if path and Path(path).exists()]


def run(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal fmri``."""
    started = time.perf_counter()
    context = runtime.context
    parameters = parameters_from_arguments(FMRIParameters, args, **_band_overrides(args))
    output = OutputFolder(args.out, _input_paths(args, parameters))
    seeds = [parse_ras(text, number) for number, text in enumerate(args.seed, start=1)]
    sequence, series = read_series(context, args.input, times_file=args.times, repetition_time_s=parameters.tr_s)

    def mask_node(path: str | None, what: str):
        return read_mask(context, path, what=what) if path else None

    with output as out:
        result = run_fmri(
            context,
            sequence,
            parameters,
            mask_node=mask_node(args.mask, "mask"),
            labels_node=mask_node(args.labels, "labelmap"),
            events_path=args.events,
            confounds_path=args.confounds,
            slice_timing_path=args.slice_timing,
            white_matter_node=mask_node(args.white_matter_mask, "white-matter mask"),
            csf_node=mask_node(args.csf_mask, "CSF mask"),
            seeds_ras=seeds,
            seed_regions_node=mask_node(args.seed_labels, "seed-region labelmap"),
            resample_masks=args.resample_mask,
            progress=runtime.progress("fmri"),
        )
        write_outputs(out, result, parameters)
        analysis = result.analysis
        write_summary(
            out.path("summary.json"),
            "fmri",
            inputs={
                "input": args.input,
                "frames": series.n_frames,
                "tr_s": analysis.tr_s,
                "tr_source": result.tr_source,
                "mask": args.mask or "automatic",
                "events": args.events,
                "confounds": args.confounds,
                "slice_timing": args.slice_timing,
                "labels": args.labels,
                "seeds_ras": seeds,
                "seed_labels": args.seed_labels,
                "white_matter_mask": args.white_matter_mask,
                "csf_mask": args.csf_mask,
            },
            parameters=vars(parameters),
            results={
                "features": list(analysis.features),
                "skipped": analysis.skipped,
                "mask_voxels": int(analysis.mask.sum()),
                "censored_frames": int(analysis.censored.sum()),
                "reference_time_s": analysis.reference_time_s,
                "maps": sorted(analysis.maps),
                "units": analysis.units,
                "nan_voxels_in_mask": analysis.nan_voxels,
                "tables": sorted(analysis.tables),
                "features_detail": analysis.summary,
            },
            started=started,
        )
    skipped = "".join(f"; skipped {name}: {reason}" for name, reason in analysis.skipped.items())
    runtime.say(
        f"{', '.join(analysis.features)} computed on {int(analysis.mask.sum())} voxels "
        f"(TR {analysis.tr_s:g} s){skipped}; outputs in {args.out}"
    )


def write_outputs(out: OutputFolder, result: FMRIResult, parameters: FMRIParameters) -> None:
    """Write every map, the ICA sequence, every table and the figures into the staged output folder."""
    suffix = MAP_SUFFIXES[parameters.output_format]
    for name, node in result.map_nodes.items():
        write_node(node, out.path(name + suffix))
    if result.ica_sequence is not None:
        write_node(
            result.ica_sequence, out.path("ica_components" + SEQUENCE_SUFFIXES[parameters.output_format])
        )
    for name, node in result.table_nodes.items():
        write_node(node, out.path(f"{name}.csv"))
    write_figures(out, result)


def write_figures(out: OutputFolder, result: FMRIResult) -> None:
    """Carpet plot (qc), lag map montage (lag) and region matrices (fc, region delays)."""
    analysis = result.analysis
    if analysis.carpet is not None:
        qc = analysis.tables["qc"]
        save_carpet_plot(
            out.path("carpet.png"),
            analysis.carpet,
            qc["time_s"],
            qc["fd_mm"],
            qc["dvars_standardised"],
            analysis.censored,
        )
    if "lag" in analysis.maps:
        save_map_montage(
            out.path("lag_map.png"),
            analysis.maps["lag"],
            title="lag relative to the reference",
            unit="lag (s)",
        )
    figures = {
        "fc_pearson": ("fc_matrix.png", "Pearson correlation of the regions", "r"),
        "delay": ("delay_matrix.png", "time delay (row follows column)", "delay (s)"),
    }
    for key, (file_name, title, unit) in figures.items():
        if key in analysis.matrices:
            save_matrix_figure(
                out.path(file_name), analysis.matrices[key], analysis.region_names, title=title, unit=unit
            )


def write_events_tsv(path: str | Path, events: Events) -> Path:
    """Write events as a BIDS events.tsv (onset, duration, trial_type)."""
    lines = ["onset\tduration\ttrial_type"]
    lines += [
        f"{onset:g}\t{duration:g}\t{trial_type}"
        for onset, duration, trial_type in zip(events.onset, events.duration, events.trial_type, strict=True)
    ]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def _write_phantom_files(runtime: Runtime, phantom: FMRIPhantom, folder: Path) -> VolumeGeometry:
    """Write the phantom (on an oblique grid), its labels and its events into ``folder``; return the grid."""
    geometry = oblique_geometry(phantom.brain.shape, spacing_ijk=phantom.spacing_kji[::-1])
    times = np.arange(phantom.data.shape[-1]) * phantom.tr_s
    sequence = add_volume_sequence(
        runtime.context, np.moveaxis(phantom.data, -1, 0), times, geometry, "phantom"
    )
    labels = add_labelmap_volume(runtime.context, phantom.labels, geometry, "regions")
    with OutputFolder(folder) as staged:
        write_node(sequence, staged.path("phantom.seq.nrrd"))
        write_node(labels, staged.path("regions.nrrd"))
        write_events_tsv(staged.path("events.tsv"), phantom.events)
    return geometry


def demo(out_dir: Path, runtime: Runtime) -> None:
    """Run every feature on the phantom and print recovered against true lag, latency and activation."""
    phantom = make_phantom()
    out_dir = Path(out_dir)
    geometry = _write_phantom_files(runtime, phantom, out_dir)
    seed_kji = np.argwhere(phantom.cubes == 1).mean(axis=0)
    seed_ras = geometry.ijk_to_ras @ np.array([*seed_kji[::-1], 1.0])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    runtime.say("phantom without head motion: motion correction is skipped")
    run(
        parser.parse_args(
            [
                str(out_dir / "phantom.seq.nrrd"),
                "--out",
                str(out_dir / "features"),
                "--events",
                str(out_dir / "events.tsv"),
                "--labels",
                str(out_dir / "regions.nrrd"),
                "--no-motion-correction",
                "--seed=" + ",".join(f"{v:.3f}" for v in seed_ras[:3]),
            ]
        ),
        runtime,
    )
    maps = {
        name: slicer.util.arrayFromVolume(read_volume(runtime.context, out_dir / "features" / f"{name}.nrrd"))
        for name in ("lag", "hrf_peak_latency", "glm_motor_z", "glm_visual_z")
    }
    _print_recovery(runtime, phantom, maps)


def _print_recovery(runtime: Runtime, phantom: FMRIPhantom, maps: dict[str, np.ndarray]) -> None:
    """Print the phantom's true region lags, peak latencies and activation beside the recovered ones."""
    runtime.say(" region  | lag true / recovered (s, median over voxels; reference: global mean)")
    for label, name in phantom.region_names.items():
        recovered = np.nanmedian(maps["lag"][phantom.labels == label])
        runtime.say(f" {name:7} | {phantom.region_lag_s[label]:+6.2f} / {recovered:+6.2f}")
    runtime.say(" cube | peak latency true / recovered (s) | motor z | visual z   (cube medians)")
    for cube in range(1, 5):
        inside = phantom.cubes == cube
        responds = cube in phantom.cube_peak_latency_s
        truth = f"{phantom.cube_peak_latency_s[cube]:.2f}" if responds else "none"
        latency = np.nanmedian(maps["hrf_peak_latency"][inside]) if responds else np.nan
        motor, visual = (np.nanmedian(maps[f"glm_{name}_z"][inside]) for name in ("motor", "visual"))
        runtime.say(f" {cube:4d} | {truth:>6} / {latency:5.2f}{'':20}| {motor:7.1f} | {visual:8.1f}")


COMMAND = Command(
    name="fmri",
    help="BOLD fMRI: QC, GLM, HRF shape, MI timing, lags, timescales, ALFF, ReHo, entropy, connectivity, ICA",
    add_arguments=add_arguments,
    run=run,
    demo=demo,
)
