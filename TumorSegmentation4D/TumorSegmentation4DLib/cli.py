"""``spatiotemporal segment``, ``train-segmentation``, ``evaluate-segmentation`` and ``demo segment``.

``segment INPUT --out DIR`` reads the DCE series into a scene with Slicer's storage nodes, runs
:func:`TumorSegmentation4DLib.logic.run_segmentation` (the same code as the Slicer panel) and writes:

- ``tumor.seg.nrrd``: the segmentation, one segment ``tumor``;
- ``tumor_label.nrrd``: the same as a label volume, 1 = tumour;
- ``tumor_probability.nrrd`` (with ``--probability``): the tumour probability, 0 to 1;
- ``summary.json``: ``volume_ml``, ``components``, ``voxels``, ``largest_component_ml``, the device
  used, the phase samples averaged, the times after injection given to the network, the weights file,
  notes and the elapsed time.

Every output lies on the input's voxel grid. Nothing is written when the run fails.

``train-segmentation MANIFEST.csv --out DIR`` trains the network (see
:mod:`TumorSegmentation4DLib.training` for the manifest format) and writes ``weights.safetensors``,
``checkpoint.pt``, ``training_log.csv`` and ``summary.json`` into ``DIR``; ``--resume`` continues an
interrupted run from its checkpoint. The times of every case are counted from its first phase, as
``segment`` counts them from the pre-contrast phase (see :mod:`TumorSegmentation4DLib.logic`).

``evaluate-segmentation PRED_DIR TRUTH_DIR`` pairs the mask files of the two folders by case name (the
file name without its extension), prints Dice, HD95, Jaccard, precision, recall and average surface
distance per case and their means as a table, and writes them as CSV.

PyTorch, MONAI, einops and safetensors are imported only when one of these commands runs, so the
other ``spatiotemporal`` commands work without them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import time
from pathlib import Path

import numpy as np
import slicer.util
from SpatioTemporalCommonLib.cli import Command, Runtime
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.geometry import VolumeGeometry
from SpatioTemporalCommonLib.io import (
    NIFTI_SUFFIXES,
    NRRD_SUFFIXES,
    file_suffix,
    read_mask,
    read_series,
    read_volume,
    stem,
    write_node,
)
from SpatioTemporalCommonLib.nodes import (
    add_labelmap_volume,
    labels_from_segmentation,
    node_ids,
    remove_nodes_added_since,
)
from SpatioTemporalCommonLib.outputs import OutputFolder, write_summary
from SpatioTemporalCommonLib.parameters import add_parameter_arguments, parameter, parameters_from_arguments
from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry

from .parameters import SegmentationParameters

SEGMENTATION_MODULES = ("torch", "monai", "einops", "safetensors")
SEGMENTATION_FILE = "tumor.seg.nrrd"
LABEL_FILE = "tumor_label.nrrd"
PROBABILITY_FILE = "tumor_probability.nrrd"
SUMMARY_FILE = "summary.json"
MASK_SUFFIXES = (".seg.nrrd", *NRRD_SUFFIXES, *NIFTI_SUFFIXES)
DEFAULT_EVALUATION_CSV = "segmentation_evaluation.csv"


def require_segmentation_packages() -> None:
    """Raise ``InputError`` naming the install command when a package of the network is missing."""
    missing = [name for name in SEGMENTATION_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"the segmentation commands need {', '.join(missing)}, which are not installed: install them "
            "with pip install 'slicer-spatiotemporal[seg]'"
        )


# --------------------------------------------------------------------------- segment


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal segment``."""
    parser.add_argument(
        "input",
        help="4D DCE series with all phases: .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz or a DICOM folder",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--times",
        metavar="FILE",
        help="acquisition time of every phase, one value in seconds per line (counted from the "
        "pre-contrast phase, which is taken as the injection)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="network weights (.safetensors, or checkpoint.pt of train-segmentation); default: the "
        "shipped phantom-trained weights",
    )
    add_parameter_arguments(parser, SegmentationParameters)


def run_segment(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal segment``."""
    started = time.perf_counter()
    require_segmentation_packages()
    from .logic import run_segmentation

    context = runtime.context
    output = OutputFolder(
        args.out, [p for p in (args.input, args.times, args.weights) if p and Path(p).exists()]
    )
    parameters = parameters_from_arguments(SegmentationParameters, args)
    sequence, series = read_series(context, args.input, times_file=args.times)
    with output as out:
        result = run_segmentation(
            context, sequence, parameters, weights_path=args.weights, progress=runtime.progress("segment")
        )
        write_segmentation_files(out, context, result)
        write_summary(
            out.path(SUMMARY_FILE),
            "segment",
            inputs={
                "input": args.input,
                "frames": series.n_frames,
                "time_source": series.time_source,
                "times": args.times,
                "spacing_ijk_mm": series.geometry.spacing_ijk,
            },
            parameters={**dataclasses.asdict(parameters), "weights": str(result.weights_path)},
            results=summary_results(result),
            started=started,
        )
    statistics = result.statistics
    runtime.say(
        f"tumour volume {statistics.volume_ml:.2f} ml in {statistics.components} component(s) "
        f"({result.analysis.device}, phases {_format_samples(result.analysis.samples)}); "
        f"outputs in {args.out}"
    )
    for note in result.notes:
        runtime.say(f"note: {note}")


def _format_samples(samples: list[tuple[int, ...]]) -> str:
    """Phase samples as ``0,1,2 + 0,1,3``."""
    return " + ".join(",".join(str(i) for i in sample) for sample in samples)


def write_segmentation_files(out: OutputFolder, context: MRMLContext, result) -> None:
    """Write the segmentation, the label volume and (if made) the probability map into the staged folder."""
    write_node(result.segmentation_node, out.path(SEGMENTATION_FILE))
    label = add_labelmap_volume(context, result.analysis.label, result.geometry, "tumor_label")
    write_node(label, out.path(LABEL_FILE))
    if result.probability_node is not None:
        write_node(result.probability_node, out.path(PROBABILITY_FILE))


def summary_results(result) -> dict:
    """The ``results`` part of ``summary.json``."""
    statistics = result.statistics
    return {
        "volume_ml": statistics.volume_ml,
        "components": statistics.components,
        "voxels": statistics.voxels,
        "largest_component_ml": statistics.largest_component_ml,
        "device": result.analysis.device,
        "phase_samples": [list(sample) for sample in result.analysis.samples],
        "times_after_injection_s": result.times_after_injection_s,
        "notes": result.notes,
        "units": {
            "volume_ml": "ml",
            "largest_component_ml": "ml",
            "times_after_injection_s": "s after the pre-contrast phase",
            "tumor_label": "1 = tumour",
            "tumor_probability": "probability, 0 to 1",
        },
    }


# --------------------------------------------------------------------------- demo

#: Phantom seeds of the demo, outside the seed ranges the shipped weights were trained, validated and
#: tested on (10000, 20000 and 30000 onwards, see Utilities/train_segmentation_weights.py).
DEMO_SEEDS = (50_000, 50_001)
#: Settings of the demo phantoms: the size the weights were trained on, three phases (one sample each).
DEMO_PHANTOM = {"shape": (64, 128, 128), "n_post_contrast": 2}


def _write_phantom(runtime: Runtime, phantom, path: Path) -> None:
    """Write a phantom study as a .seq.nrrd indexed by its acquisition times (s)."""
    spacing_ijk = phantom.spacing[::-1]
    geometry = VolumeGeometry(np.diag([*spacing_ijk, 1.0]), phantom.phases.shape[1:])
    sequence = add_volume_sequence(runtime.context, phantom.phases, phantom.times, geometry, path.stem)
    with OutputFolder(path.parent) as staged:
        write_node(sequence, staged.path(path.name))


def demo(out_dir: Path, runtime: Runtime) -> None:
    """Two phantom studies through ``spatiotemporal segment`` with the shipped weights; prints Dice of the
    malignant lesion and the fraction of the benign mimic labelled tumour."""
    require_segmentation_packages()
    from .evaluation import covered_fraction, dice_coefficient
    from .logic import shipped_weights
    from .phantom import generate_breast_phantom

    shipped_weights()
    out_dir = Path(out_dir)
    parser = argparse.ArgumentParser()
    add_segment_arguments(parser)
    rows = []
    for seed in DEMO_SEEDS:
        case = f"phantom_{seed}"
        phantom = generate_breast_phantom(seed, **DEMO_PHANTOM)
        input_path = out_dir / f"{case}.seq.nrrd"
        _write_phantom(runtime, phantom, input_path)
        run_segment(parser.parse_args([str(input_path), "--out", str(out_dir / case)]), runtime)
        label = slicer.util.arrayFromVolume(
            read_volume(runtime.context, out_dir / case / LABEL_FILE, labelmap=True)
        )
        rows.append(
            (case, dice_coefficient(label, phantom.tumor_mask), covered_fraction(label, phantom.benign_mask))
        )
    runtime.say(" case          | Dice (malignant lesion) | benign mimic labelled tumour")
    for case, dice, covered in rows:
        runtime.say(f" {case:13} | {dice:23.3f} | {100.0 * covered:27.1f} %")


# --------------------------------------------------------------------------- train-segmentation


@dataclasses.dataclass
class TrainingOptions:
    """Command-line settings of a training run; the ones left out keep ``TrainingConfig``'s defaults."""

    iterations: int | None = parameter(None, minimum=1, metavar="N", help="Optimiser steps in total")
    batch_size: int | None = parameter(None, minimum=1, metavar="N", help="Patches per step")
    patch_size: tuple[int, ...] | None = parameter(
        None,
        unit="voxels",
        minimum=1,
        metavar="K,J,I",
        help="Patch and validation window size at 1 mm, multiples of 2^(levels - 1)",
    )
    learning_rate: float | None = parameter(
        None, minimum=0, minimum_inclusive=False, metavar="LR", help="Initial AdamW learning rate"
    )
    weight_decay: float | None = parameter(None, minimum=0, metavar="W", help="AdamW weight decay")
    foreground_fraction: float | None = parameter(
        None, minimum=0, maximum=1, metavar="F", help="Fraction of patches centred near tumour voxels"
    )
    validation_fraction: float | None = parameter(
        None,
        minimum=0,
        maximum=1,
        maximum_inclusive=False,
        metavar="F",
        help="Fraction of the cases without a split column held out for validation",
    )
    validate_every: int | None = parameter(None, minimum=1, metavar="N", help="Steps between validations")
    checkpoint_every: int | None = parameter(None, minimum=1, metavar="N", help="Steps between checkpoints")
    n4: bool | None = parameter(None, help="N4 bias-field correction in preparation")
    device: str | None = parameter(None, choices=("auto", "cpu", "cuda"), help="Where to train")
    seed: int | None = parameter(
        None, metavar="N", help="Seed of the initialisation, split and patch sampling"
    )


@dataclasses.dataclass
class NetworkOptions:
    """Command-line settings of the architecture; the ones left out keep ``NetworkConfig``'s defaults."""

    in_channels: int | None = parameter(
        None, choices=(1, 3), help="Input phases: 3 (pre, first post, later post) or 1 (first post only)"
    )
    features: tuple[int, ...] | None = parameter(
        None,
        minimum=1,
        metavar="C,C,...",
        help="Channels per level, full resolution first (the last is the bottleneck)",
    )
    first_state_space_level: int | None = parameter(
        None, minimum=1, metavar="L", help="First level (0 = full resolution) with a state-space block"
    )
    use_film: bool | None = parameter(
        None, option="--film", help="FiLM conditioning on the acquisition times"
    )
    time_embedding: int | None = parameter(None, minimum=1, metavar="N", help="Width of the time embedding")
    time_scale_s: float | None = parameter(
        None,
        unit="s",
        minimum=0,
        minimum_inclusive=False,
        option="--time-scale",
        help="Times are divided by this before the embedding",
    )
    d_state: int | None = parameter(None, minimum=1, metavar="N", help="State size of the selective scan")
    expand: int | None = parameter(None, minimum=1, metavar="N", help="Inner width of the state-space mixer")
    deep_supervision: bool | None = parameter(None, help="Deep supervision on the two finest decoder levels")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal train-segmentation``."""
    parser.add_argument(
        "manifest",
        metavar="MANIFEST.csv",
        help="one row per case: case_id,phases,times,mask[,split] (see the README)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for weights.safetensors, checkpoint.pt, training_log.csv and summary.json",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint.pt is in --out (same settings)",
    )
    parser.epilog = (
        "Settings left out keep their defaults (TrainingConfig and NetworkConfig in "
        "TumorSegmentation4DLib); the settings used are printed and stored in summary.json."
    )
    add_parameter_arguments(parser, TrainingOptions)
    add_parameter_arguments(parser, NetworkOptions)


def _given(options) -> dict:
    """The fields of an options dataclass that were given (not None)."""
    return {key: value for key, value in dataclasses.asdict(options).items() if value is not None}


def training_config(args: argparse.Namespace):
    """The ``TrainingConfig`` of the command line: defaults replaced by the given options."""
    from .network import NetworkConfig
    from .training import TrainingConfig

    training = _given(parameters_from_arguments(TrainingOptions, args))
    network = _given(parameters_from_arguments(NetworkOptions, args))
    if "patch_size" in training and len(training["patch_size"]) != 3:
        raise InputError(
            f"--patch-size {training['patch_size']} must be three sizes K,J,I in voxels, e.g. 64,64,64"
        )
    return TrainingConfig(network=NetworkConfig(**network), **training)


def _counted_from_first_phase(case):
    """A training case whose times count from its first phase (as ``segment`` counts them)."""
    return dataclasses.replace(case, times=case.times - case.times[0])


def run_train(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal train-segmentation``."""
    started = time.perf_counter()
    require_segmentation_packages()
    from .training import CHECKPOINT_NAME, load_manifest, train_segmentation

    config = training_config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder '{out}' is a file: give a folder path for --out")
    if (out / CHECKPOINT_NAME).exists() and not args.resume:
        raise InputError(
            f"'{out}' already holds a training run ({CHECKPOINT_NAME}): pass --resume to continue it, or "
            "choose another --out folder"
        )
    cases = [_counted_from_first_phase(case) for case in load_manifest(args.manifest)]
    runtime.say(f"training on {len(cases)} case(s) from {args.manifest} with {config}")
    summary = train_segmentation(
        cases,
        config,
        out,
        resume=args.resume,
        metadata={"trained_on": f"manifest {Path(args.manifest).name}: {len(cases)} case(s)"},
        progress=runtime.progress("train-segmentation"),
    )
    write_summary(
        out / SUMMARY_FILE,
        "train-segmentation",
        inputs={"manifest": args.manifest, "cases": [case.case_id for case in cases], "resume": args.resume},
        parameters=config.to_dict(),
        results={
            "iterations": summary.iterations,
            "best_validation_dice": summary.best_validation_dice,
            "seconds_per_iteration": summary.seconds_per_iteration,
            "weights": summary.weights_path,
            "checkpoint": summary.checkpoint_path,
        },
        started=started,
    )
    runtime.say(
        f"{summary.iterations} iterations ({summary.seconds_per_iteration:.2f} s each), best validation Dice "
        f"{summary.best_validation_dice:.3f}; weights: {summary.weights_path}"
    )


# --------------------------------------------------------------------------- evaluate-segmentation


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spatiotemporal evaluate-segmentation``."""
    parser.add_argument(
        "predictions", metavar="PRED_DIR", help="folder of predicted masks: label volumes or .seg.nrrd"
    )
    parser.add_argument(
        "truth",
        metavar="TRUTH_DIR",
        help="folder of true masks named like the predictions (non-zero = tumour)",
    )
    parser.add_argument(
        "--csv",
        default=DEFAULT_EVALUATION_CSV,
        metavar="FILE",
        help=f"where to write the table as CSV (default: ./{DEFAULT_EVALUATION_CSV})",
    )


def masks_by_case(folder: str | Path, what: str) -> dict[str, Path]:
    """The mask files of a folder by case name (file name without extension); other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{what} folder '{folder}' is not a folder: give the folder that holds the {what} masks"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or file_suffix(path) not in MASK_SUFFIXES:
            continue
        case = stem(path)
        if case in found:
            raise InputError(
                f"{what} folder '{folder}' has two files for case '{case}' ({found[case].name}, "
                f"{path.name}): keep one file per case"
            )
        found[case] = path
    if not found:
        raise InputError(
            f"{what} folder '{folder}' holds no masks: give label volumes (.nrrd, .nii, .nii.gz) or .seg.nrrd"
        )
    return found


def pair_cases(predictions: dict[str, Path], truths: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    """``(case, prediction, truth)`` for every case, refusing cases that lack their pair."""
    without_truth = sorted(set(predictions) - set(truths))
    without_prediction = sorted(set(truths) - set(predictions))
    if without_truth or without_prediction:
        problems = []
        if without_truth:
            problems.append(f"prediction(s) without truth: {', '.join(without_truth)}")
        if without_prediction:
            problems.append(f"truth without prediction: {', '.join(without_prediction)}")
        raise InputError(
            f"{'; '.join(problems)}: name every prediction like its truth file (the case name is the file "
            "name without its extension)"
        )
    return [(case, predictions[case], truths[case]) for case in sorted(truths)]


def _truth_labelmap(context: MRMLContext, path: Path):
    """The truth mask as a label volume (a segmentation is exported on its own reference grid)."""
    node = read_mask(context, path, what="truth mask")
    if not node.IsA("vtkMRMLSegmentationNode"):
        return node
    labelmap = context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{stem(path)} truth")
    if not context.logic("Segmentations").ExportAllSegmentsToLabelmapNode(
        node, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    ):
        raise InputError(
            f"truth mask '{path.name}' could not be converted to labels: save it as a label volume"
        )
    return labelmap


def _prediction_on_truth_grid(context: MRMLContext, path: Path, truth_node, truth_path: Path) -> np.ndarray:
    """The prediction's labels on the truth's grid; a label volume on another grid is refused."""
    node = read_mask(context, path, what="prediction")
    if node.IsA("vtkMRMLSegmentationNode"):
        return labels_from_segmentation(context, node, truth_node)
    difference = volume_geometry(node).mismatch(volume_geometry(truth_node))
    if difference:
        raise InputError(
            f"prediction '{path.name}' lies on another grid than its truth '{truth_path.name}' "
            f"({difference}): resample the prediction onto the truth's grid"
        )
    return np.array(slicer.util.arrayFromVolume(node))


def read_case_masks(
    context: MRMLContext, prediction: Path, truth: Path
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Binary prediction and truth on the truth's grid, and its spacing ``(sk, sj, si)`` in mm."""
    before = node_ids(context)
    try:
        truth_node = _truth_labelmap(context, truth)
        predicted = _prediction_on_truth_grid(context, prediction, truth_node, truth)
        truth_labels = np.array(slicer.util.arrayFromVolume(truth_node))
        return predicted > 0, truth_labels > 0, volume_geometry(truth_node).spacing_kji
    finally:
        remove_nodes_added_since(context, before)


def run_evaluate(args: argparse.Namespace, runtime: Runtime) -> None:
    """Run ``spatiotemporal evaluate-segmentation``."""
    started = time.perf_counter()
    require_segmentation_packages()
    from .evaluation import evaluate_cases, report_table, write_report_csv

    pairs = pair_cases(masks_by_case(args.predictions, "prediction"), masks_by_case(args.truth, "truth"))
    csv_path = Path(args.csv)
    if not csv_path.parent.is_dir():
        raise InputError(f"the folder of --csv '{csv_path}' does not exist: create it or choose another file")
    progress = runtime.progress("evaluate-segmentation")
    cases = []
    for index, (case, prediction, truth) in enumerate(pairs):
        cases.append((case, *read_case_masks(runtime.context, prediction, truth)))
        progress((index + 1) / len(pairs), f"read {case}")
    report = evaluate_cases(cases)
    write_report_csv(report, csv_path)
    runtime.say(report_table(report))
    runtime.say(f"{len(pairs)} case(s) in {time.perf_counter() - started:.1f} s; table written to {csv_path}")


SEGMENT = Command(
    name="segment",
    help="breast DCE-MRI: tumour segmentation from the pre-contrast and post-contrast phases and their times",
    add_arguments=add_segment_arguments,
    run=run_segment,
    demo=demo,
)
TRAIN = Command(
    name="train-segmentation",
    help="train the tumour segmentation network on a manifest of DCE studies with tumour masks",
    add_arguments=add_train_arguments,
    run=run_train,
)
EVALUATE = Command(
    name="evaluate-segmentation",
    help="Dice, HD95, Jaccard, precision, recall and surface distance of predicted against true masks",
    add_arguments=add_evaluate_arguments,
    run=run_evaluate,
)
COMMANDS = [SEGMENT, TRAIN, EVALUATE]
