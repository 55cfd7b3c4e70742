"""Train the shipped TumorSegmentation4D weights and the two ablations on synthetic breast DCE phantoms.

Generates phantom studies with :func:`TumorSegmentation4DLib.phantom.generate_breast_phantom` (training,
validation and held-out test cases from disjoint seed ranges), trains three networks the same way

- ``full``: three phases (pre, first post, later post) with FiLM conditioning on the acquisition times
  (the shipped model, ``temporal_mamba_unet.safetensors``),
- ``no_film``: three phases without FiLM (``temporal_mamba_unet_no_film.safetensors``),
- ``single_phase``: the first post-contrast phase only (``temporal_mamba_unet_single_phase.safetensors``),

evaluates them on the held-out cases (Dice etc. of the malignant lesion, fraction of benign-mimic
voxels labelled tumour) and writes the weights and ``MODEL_CARD.md`` into ``--out``.

Run from the repository root with the package importable, e.g.::

    pip install -e ".[seg]"
    python Utilities/train_segmentation_weights.py --threads 2

A quick end-to-end check on tiny phantoms::

    python Utilities/train_segmentation_weights.py --out /tmp/weights --train-cases 2 --validation-cases 1 \\
        --test-cases 1 --shape 32 64 64 --lesion-radius 3 4.5 --patch 32 32 32 --iterations 3
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from TumorSegmentation4DLib.evaluation import covered_fraction, evaluate_cases
from TumorSegmentation4DLib.inference import segment_study
from TumorSegmentation4DLib.network import NetworkConfig, count_parameters
from TumorSegmentation4DLib.phantom import BreastPhantom, generate_breast_phantom
from TumorSegmentation4DLib.training import TrainingCase, TrainingConfig, train_segmentation
from TumorSegmentation4DLib.weights import WEIGHTS_DIR, load_network

MODELS = {
    "full": ("temporal_mamba_unet.safetensors", NetworkConfig()),
    "no_film": ("temporal_mamba_unet_no_film.safetensors", NetworkConfig(use_film=False)),
    "single_phase": ("temporal_mamba_unet_single_phase.safetensors", NetworkConfig(in_channels=1)),
}
SEED_OFFSETS = {"train": 10_000, "validation": 20_000, "test": 30_000}


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=WEIGHTS_DIR, help="folder for the weights and MODEL_CARD.md"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for checkpoints and logs (default OUT/runs)"
    )
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODELS), default=list(MODELS), help="models to train"
    )
    parser.add_argument("--train-cases", type=int, default=32)
    parser.add_argument("--validation-cases", type=int, default=4)
    parser.add_argument("--test-cases", type=int, default=8)
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(64, 128, 128),
        metavar=("K", "J", "I"),
        help="phantom shape in voxels (1 mm)",
    )
    parser.add_argument(
        "--lesion-radius",
        type=float,
        nargs=2,
        default=(5.0, 10.0),
        metavar=("MIN", "MAX"),
        help="range of lesion radii in mm",
    )
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 64, 64), metavar=("K", "J", "I"))
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validate-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from their checkpoints"
    )
    return parser.parse_args(argv)


def phantom_settings(arguments: argparse.Namespace) -> dict[str, object]:
    """Keyword arguments of the phantom generator (recorded in the model card)."""
    return {
        "shape": tuple(arguments.shape),
        "spacing": (1.0, 1.0, 1.0),
        "n_benign": 1,
        "lesion_radius_mm": tuple(arguments.lesion_radius),
    }


def make_phantoms(role: str, count: int, arguments: argparse.Namespace) -> list[tuple[str, BreastPhantom]]:
    """Phantoms of one role (train, validation, test) from that role's seed range."""
    first = SEED_OFFSETS[role] + arguments.seed * 1000
    return [
        (f"{role}_{seed}", generate_breast_phantom(seed, **phantom_settings(arguments)))
        for seed in range(first, first + count)
    ]


def as_training_case(case_id: str, phantom: BreastPhantom, split: str) -> TrainingCase:
    """Training case of a phantom: its malignant mask is the target."""
    return TrainingCase(
        case_id=case_id,
        phases=phantom.phases,
        times=phantom.times,
        mask=phantom.tumor_mask,
        spacing=phantom.spacing,
        split=split,
    )


def evaluate_model(weights: Path, test: Sequence[tuple[str, BreastPhantom]], device: str) -> dict[str, float]:
    """Mean malignant-lesion metrics, benign-mimic coverage and inference time on held-out phantoms."""
    network, metadata = load_network(weights)
    predictions = []
    coverage = []
    seconds = []
    for case_id, phantom in test:
        started = time.perf_counter()
        result = segment_study(
            network,
            phantom.phases,
            phantom.times,
            phantom.spacing,
            roi_size=metadata["roi_size"],
            device=device,
        )
        seconds.append(time.perf_counter() - started)
        predictions.append((case_id, result.label, phantom.tumor_mask, phantom.spacing))
        coverage.append(covered_fraction(result.label, phantom.benign_mask))
    report = evaluate_cases(predictions)
    return {
        **report.overall,
        "benign_covered": float(np.nanmean(coverage)),
        "benign_covered_max": float(np.nanmax(coverage)),
        "seconds_per_case": float(np.mean(seconds)),
    }


def model_card(
    arguments: argparse.Namespace, results: dict[str, dict[str, float]], training: dict[str, dict[str, float]]
) -> str:
    """Markdown model card: data, training, results, intended use."""
    settings = phantom_settings(arguments)
    lines = [
        "# TumorSegmentation4D weights: model card",
        "",
        "**Not for clinical use.** These weights were trained only on synthetic phantoms. They show that the",
        "method works and let the module run out of the box; they are not expected to segment real breast",
        "MRI. Train on your own data with `spatiotemporal train-segmentation MANIFEST.csv`.",
        "",
        "## Model",
        "",
        "Temporal Mamba U-net (`TumorSegmentation4DLib.network.TemporalMambaUNet`): convolutional stem and",
        "encoder, tri-directional selective-scan (Visual-State-Space) blocks from 1/4 resolution down,",
        "U-net decoder with skips, FiLM conditioning on the acquisition times (s after injection).",
        "",
        "| file | model | inputs | FiLM | parameters |",
        "|---|---|---|---|---|",
    ]
    for name in arguments.models:
        file_name, config = MODELS[name]
        inputs = "pre, first post, later post" if config.in_channels == 3 else "first post-contrast"
        parameters = training[name]["parameters"]
        lines.append(
            f"| `{file_name}` | {name} | {inputs} | {'yes' if config.use_film else 'no'} | {parameters:,} |"
        )
    generator_arguments = json.dumps(
        {key: list(value) if isinstance(value, tuple) else value for key, value in settings.items()}
    )
    first_seed = {role: offset + arguments.seed * 1000 for role, offset in SEED_OFFSETS.items()}
    patch = " x ".join(map(str, arguments.patch))
    lines += [
        "",
        "## Training data (exactly)",
        "",
        "Synthetic studies from `TumorSegmentation4DLib.phantom.generate_breast_phantom` with",
        f"`{generator_arguments}` and its defaults otherwise:",
        "fat-suppressed breast on a chest-wall band, textured fibroglandular tissue with mild persistent",
        "enhancement, one malignant lesion (fast uptake, wash-out) and one benign mimic (same radius,",
        "pre-contrast signal and first post-contrast enhancement; persistent enhancement); pre-contrast",
        "at 0 s, first post-contrast at 60-120 s, 2-5 post-contrast phases 60-120 s apart; complex",
        "Gaussian noise (magnitude images) and a smooth multiplicative bias field.",
        "",
        f"- training cases: {arguments.train_cases} (seeds from {first_seed['train']})",
        f"- validation cases: {arguments.validation_cases} (seeds from {first_seed['validation']}; "
        "best validation Dice kept)",
        f"- held-out test cases: {arguments.test_cases} (seeds from {first_seed['test']})",
        "- target: the malignant lesion only (the benign mimic is background)",
        "",
        "## Training",
        "",
        f"{arguments.iterations} AdamW steps (learning rate {arguments.learning_rate:g}, cosine decay,",
        f"weight decay 1e-4), batch {arguments.batch_size} patches of {patch} voxels (1 mm), half",
        "centred near the tumour, random flips; Dice + cross-entropy loss; per-study min / 99th-percentile",
        f"normalisation. Seed {arguments.seed}. PyTorch {torch.__version__}, {platform.machine()},",
        f"{arguments.threads} CPU threads (device {arguments.device}).",
        "",
        "| model | median s / step | best validation Dice |",
        "|---|---|---|",
    ]
    for name in arguments.models:
        lines.append(
            f"| {name} | {training[name]['seconds_per_iteration']:.2f} | "
            f"{training[name]['best_validation_dice']:.3f} |"
        )
    lines += [
        "",
        f"## Results on the {arguments.test_cases} held-out phantom cases",
        "",
        "Dice, Jaccard, precision, recall, HD95 and ASD of the malignant lesion; `benign covered` is the",
        "fraction of benign-mimic voxels labelled tumour (mean and worst case). Sliding-window inference,",
        "all later phases averaged.",
        "",
        "| model | Dice | Jaccard | precision | recall | HD95 (mm) | ASD (mm) "
        "| benign covered | worst benign | s / case |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in arguments.models:
        r = results[name]
        lines.append(
            f"| {name} | {r['dice']:.3f} | {r['jaccard']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['hd95_mm']:.2f} | {r['asd_mm']:.2f} | {r['benign_covered']:.3f} | "
            f"{r['benign_covered_max']:.3f} | {r['seconds_per_case']:.1f} |"
        )
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Demonstration, tests and a starting point for training on real data. Phantom lesions are",
        "ellipsoidal blobs with idealised kinetics; real tumours, motion, fat-suppression failures, implants",
        "and other scanners are not represented. Do not use for diagnosis or treatment decisions.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Generate phantoms, train the requested models, evaluate them and write weights and model card."""
    arguments = parse_arguments(argv)
    torch.set_num_threads(arguments.threads)
    arguments.out.mkdir(parents=True, exist_ok=True)
    work = arguments.work or arguments.out / "runs"
    started = time.perf_counter()
    cases = [
        as_training_case(case_id, phantom, "train")
        for case_id, phantom in make_phantoms("train", arguments.train_cases, arguments)
    ]
    cases += [
        as_training_case(case_id, phantom, "validation")
        for case_id, phantom in make_phantoms("validation", arguments.validation_cases, arguments)
    ]
    test = make_phantoms("test", arguments.test_cases, arguments)
    print(f"generated {len(cases) + len(test)} phantoms in {time.perf_counter() - started:.1f} s", flush=True)
    results: dict[str, dict[str, float]] = {}
    training: dict[str, dict[str, float]] = {}
    for name in arguments.models:
        file_name, network_config = MODELS[name]
        config = TrainingConfig(
            network=network_config,
            iterations=arguments.iterations,
            batch_size=arguments.batch_size,
            patch_size=tuple(arguments.patch),
            learning_rate=arguments.learning_rate,
            validate_every=arguments.validate_every,
            checkpoint_every=min(arguments.validate_every, 100),
            device=arguments.device,
            seed=arguments.seed,
        )
        trained_on = (
            f"synthetic breast DCE phantoms ({arguments.train_cases} training cases), see MODEL_CARD.md; "
            "not for clinical use"
        )

        def report(fraction: float, message: str, model: str = name) -> None:
            print(f"[{model}] {message}", flush=True)

        summary = train_segmentation(
            cases,
            config,
            work / name,
            resume=arguments.resume,
            metadata={"model": name, "trained_on": trained_on},
            progress=report,
        )
        shutil.copyfile(summary.weights_path, arguments.out / file_name)
        training[name] = {
            "seconds_per_iteration": summary.seconds_per_iteration,
            "best_validation_dice": summary.best_validation_dice,
            "parameters": count_parameters(load_network(arguments.out / file_name)[0]),
        }
        results[name] = evaluate_model(arguments.out / file_name, test, arguments.device)
        print(
            f"[{name}] {summary.seconds_per_iteration:.2f} s/step; test: "
            + ", ".join(f"{key} {value:.3f}" for key, value in results[name].items()),
            flush=True,
        )
    (arguments.out / "MODEL_CARD.md").write_text(model_card(arguments, results, training), encoding="utf-8")
    print(f"done in {time.perf_counter() - started:.0f} s; weights and MODEL_CARD.md in {arguments.out}")


if __name__ == "__main__":
    main()
