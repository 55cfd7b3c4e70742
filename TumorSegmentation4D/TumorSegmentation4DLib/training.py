"""Training of the temporal Mamba U-net on multi-phase DCE studies with tumour masks.

Cases come from a manifest CSV (one row per case) or from memory (e.g. the synthetic phantom). Each
case is prepared like at inference (1 mm, per-study normalisation) and expanded into one sample per
(pre, first, later) phase triplet. Training draws random patches, half of them centred near tumour
voxels by default, with random flips; the loss is Dice + cross-entropy (MONAI ``DiceCELoss``),
optionally with deep supervision; the optimiser is AdamW (Loshchilov and Hutter, ICLR 2019) with a
cosine learning-rate decay. A held-out part of the cases is segmented by sliding-window inference
at regular intervals and the weights with the best mean Dice are kept.

Manifest CSV (UTF-8, header row, relative paths are read from the manifest's folder)::

    case_id,phases,times,mask,split
    DUKE_001,images/DUKE_001/DUKE_001_000*.nii.gz,0;90;180;270,segmentations/expert/duke_001.nii.gz,train

``phases`` is a ``;``-separated list of 3D images in acquisition order, or one glob pattern whose
sorted matches are the phases (the ``_0000``, ``_0001``, ... naming of MAMA-MIA sorts correctly);
``times`` the ``;``-separated acquisition times in s after injection; ``split`` (optional) is
``train`` or ``validation`` and overrides the random validation split.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from SpatioTemporalCommonLib.errors import InputError

from .evaluation import dice_coefficient
from .inference import Progress, average_probability, check_roi_size, resolve_device
from .network import NetworkConfig, TemporalMambaUNet
from .preprocessing import (
    PreparedStudy,
    input_samples,
    prepare_study,
    resample_volume,
    validate_spacing,
    validate_times,
)
from .weights import architecture_header, read_checkpoint, save_weights

REQUIRED_COLUMNS = ("case_id", "phases", "times", "mask")
SPLITS = ("train", "validation")
LIST_SEPARATOR = ";"
CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "weights.safetensors"
LOG_NAME = "training_log.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One case of a manifest: file paths and acquisition times."""

    case_id: str
    phase_paths: list[Path]
    times: np.ndarray
    mask_path: Path
    split: str | None


@dataclass(frozen=True)
class TrainingCase:
    """One study with its tumour mask.

    Attributes
    ----------
    case_id : str
        Name of the case.
    phases : numpy.ndarray
        ``(P, k, j, i)`` signal.
    times : numpy.ndarray
        ``(P,)`` acquisition times, s after injection.
    mask : numpy.ndarray
        ``(k, j, i)`` tumour mask (non-zero = tumour).
    spacing : tuple of float
        ``(sk, sj, si)`` in mm.
    split : str, optional
        ``"train"`` or ``"validation"`` to fix the split; None to let it be drawn.
    """

    case_id: str
    phases: np.ndarray
    times: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    split: str | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of a training run (network settings included).

    Attributes
    ----------
    network : NetworkConfig
        Architecture.
    iterations : int
        Optimiser steps.
    batch_size : int
        Patches per step.
    patch_size : tuple of int
        Patch (and inference window) size ``(k, j, i)`` in voxels at 1 mm.
    learning_rate : float
        Initial AdamW learning rate.
    weight_decay : float
        AdamW weight decay.
    foreground_fraction : float
        Probability that a patch is centred near a tumour voxel.
    validation_fraction : float
        Fraction of cases held out for validation when the cases do not fix their split.
    validate_every : int
        Steps between validations (and the last step).
    checkpoint_every : int
        Steps between checkpoints (and the last step).
    n4 : bool
        N4 bias-field correction in preparation.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed : int
        Seed of the initialisation, the split and the patch sampling.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    iterations: int = 2000
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (64, 64, 64)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    foreground_fraction: float = 0.5
    validation_fraction: float = 0.2
    validate_every: int = 200
    checkpoint_every: int = 100
    n4: bool = False
    device: str = "auto"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain form (lists, numbers, strings) stored in checkpoints and weights metadata."""
        values = dataclasses.asdict(self)
        values["network"] = self.network.to_dict()
        values["patch_size"] = list(self.patch_size)
        return values


@dataclass(frozen=True)
class TrainingSample:
    """One (case, phase triplet) input on the 1 mm grid, padded to at least the patch size.

    ``phases`` is the case's whole prepared study, shared by all its samples; ``indices`` are the
    phases this sample feeds the network, ``times`` their acquisition times.
    """

    case_id: str
    phases: np.ndarray
    indices: tuple[int, ...]
    times: np.ndarray
    mask: np.ndarray
    foreground: np.ndarray


@dataclass(frozen=True)
class ValidationCase:
    """A held-out case prepared for sliding-window validation."""

    case_id: str
    study: PreparedStudy
    mask: np.ndarray
    samples: list[tuple[int, ...]]


@dataclass(frozen=True)
class TrainingSummary:
    """What a training run produced.

    Attributes
    ----------
    weights_path : pathlib.Path
        Best (or, without validation cases, final) weights.
    checkpoint_path : pathlib.Path
        Last checkpoint, for resuming.
    iterations : int
        Steps done in total.
    best_validation_dice : float
        Best mean validation Dice (NaN without validation cases).
    seconds_per_iteration : float
        Median wall time per step in this run (validation and saving excluded; the median ignores the
        slow first step).
    history : list of dict
        One entry per logged step (``iteration``, ``loss``, ``validation_dice``).
    """

    weights_path: Path
    checkpoint_path: Path
    iterations: int
    best_validation_dice: float
    seconds_per_iteration: float
    history: list[dict[str, float]]


def _split_list(text: str) -> list[str]:
    """Non-empty items of a ``;``-separated cell."""
    return [item.strip() for item in text.split(LIST_SEPARATOR) if item.strip()]


def _phase_paths(cell: str, folder: Path, where: str) -> list[Path]:
    """Phase image paths of a manifest cell: a ``;``-list or one glob pattern (sorted matches)."""
    items = _split_list(cell)
    if len(items) == 1 and glob.has_magic(items[0]):
        pattern = items[0] if os.path.isabs(items[0]) else os.fspath(folder / items[0])
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise InputError(
                f"{where}: no phase image matches {items[0]!r}: fix the pattern (relative to {folder})"
            )
        return [Path(match) for match in matches]
    paths = [Path(item) if os.path.isabs(item) else folder / item for item in items]
    for path in paths:
        if not path.is_file():
            raise InputError(
                f"{where}: phase image {path} does not exist: fix the path (relative paths are read "
                f"from {folder})"
            )
    return paths


def _times(cell: str, n_phases: int, where: str) -> np.ndarray:
    """Acquisition times of a manifest cell, checked against the number of phases."""
    try:
        values = [float(item) for item in _split_list(cell)]
    except ValueError as error:
        raise InputError(
            f"{where}: times {cell!r} are not numbers: give ';'-separated seconds after injection, "
            "e.g. 0;90;180"
        ) from error
    try:
        return validate_times(values, n_phases)
    except InputError as error:
        raise InputError(f"{where}: {error}") from error


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read and check a training manifest (see the module docstring for the format).

    Parameters
    ----------
    path : path-like
        CSV file.

    Returns
    -------
    list of ManifestRow
        One entry per case, with absolute paths.

    Raises
    ------
    InputError
        Missing file or columns, missing images, bad or non-increasing times, unknown split,
        duplicate case ids, or no rows.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise InputError(f"manifest {manifest} does not exist: give the path of the training CSV")
    folder = manifest.resolve().parent
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"manifest {manifest} lacks column(s) {missing}: the header must be "
                "case_id,phases,times,mask (and optionally split)"
            )
        rows = []
        for line, record in enumerate(reader, start=2):
            rows.append(_manifest_row(record, folder, f"manifest {manifest.name} line {line}"))
    if not rows:
        raise InputError(f"manifest {manifest} has no cases: add one row per case")
    ids = [row.case_id for row in rows]
    duplicates = sorted({case_id for case_id in ids if ids.count(case_id) > 1})
    if duplicates:
        raise InputError(f"manifest {manifest} repeats case id(s) {duplicates}: give every case a unique id")
    return rows


def _manifest_row(record: dict[str, str | None], folder: Path, where: str) -> ManifestRow:
    """Check and convert one manifest record."""
    case_id = (record.get("case_id") or "").strip()
    if not case_id:
        raise InputError(f"{where}: the case_id is empty: give every case a name")
    where = f"{where} ({case_id})"
    phase_paths = _phase_paths(record.get("phases") or "", folder, where)
    mask_text = (record.get("mask") or "").strip()
    mask_path = Path(mask_text) if os.path.isabs(mask_text) else folder / mask_text
    if not mask_text or not mask_path.is_file():
        raise InputError(
            f"{where}: mask {mask_path} does not exist: fix the path (relative paths are read from {folder})"
        )
    split = (record.get("split") or "").strip().lower() or None
    if split is not None and split not in SPLITS:
        raise InputError(f"{where}: split {split!r} is unknown: use 'train', 'validation' or leave it empty")
    return ManifestRow(
        case_id=case_id,
        phase_paths=phase_paths,
        times=_times(record.get("times") or "", len(phase_paths), where),
        mask_path=mask_path,
        split=split,
    )


def _read_volume(path: Path) -> tuple[np.ndarray, sitk.Image]:
    """Array ``(k, j, i)`` and the image (for its geometry) of a 3D image file."""
    try:
        image = sitk.ReadImage(os.fspath(path))
    except RuntimeError as error:
        raise InputError(
            f"image {path} cannot be read ({error}): use NIfTI, NRRD or another ITK format"
        ) from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"image {path} is not a scalar 3D volume: give one 3D file per phase")
    return sitk.GetArrayFromImage(image), image


def _same_geometry(first: sitk.Image, second: sitk.Image) -> bool:
    """True when two images share size, spacing, origin and direction (to 1e-4)."""
    return (
        first.GetSize() == second.GetSize()
        and np.allclose(first.GetSpacing(), second.GetSpacing(), atol=1e-4)
        and np.allclose(first.GetOrigin(), second.GetOrigin(), atol=1e-4)
        and np.allclose(first.GetDirection(), second.GetDirection(), atol=1e-4)
    )


def load_case(row: ManifestRow) -> TrainingCase:
    """Read the images of one manifest row, checking that all share one geometry.

    Parameters
    ----------
    row : ManifestRow
        Manifest entry.

    Returns
    -------
    TrainingCase
        Phases ``(P, k, j, i)``, times, mask and spacing ``(sk, sj, si)`` in mm.
    """
    volumes, images = zip(*(_read_volume(path) for path in row.phase_paths), strict=True)
    mask, mask_image = _read_volume(row.mask_path)
    for path, image in [*zip(row.phase_paths, images, strict=True), (row.mask_path, mask_image)]:
        if not _same_geometry(images[0], image):
            raise InputError(
                f"case {row.case_id}: {path.name} has another geometry (size, spacing, origin or "
                f"direction) than {row.phase_paths[0].name}: resample all phases and the mask onto one grid"
            )
    spacing = tuple(float(s) for s in reversed(images[0].GetSpacing()))
    return TrainingCase(
        case_id=row.case_id,
        phases=np.stack(volumes).astype(np.float32),
        times=row.times,
        mask=mask,
        spacing=spacing,
        split=row.split,
    )


def load_manifest(path: str | os.PathLike) -> list[TrainingCase]:
    """Read a manifest and all its images (see :func:`read_manifest`, :func:`load_case`)."""
    return [load_case(row) for row in read_manifest(path)]


def split_cases(
    cases: Sequence[TrainingCase], validation_fraction: float, seed: int
) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """Split cases into training and validation sets.

    Cases with a ``split`` keep it; the others are shuffled with ``seed`` and
    ``round(validation_fraction * n)`` of them go to validation (at least one training case stays).

    Returns
    -------
    training, validation : list of TrainingCase
    """
    fixed_train = [case for case in cases if case.split == "train"]
    fixed_validation = [case for case in cases if case.split == "validation"]
    free = [case for case in cases if case.split is None]
    order = np.random.default_rng(seed).permutation(len(free))
    n_validation = min(round(validation_fraction * len(free)), max(len(free) - (0 if fixed_train else 1), 0))
    validation = fixed_validation + [free[i] for i in order[:n_validation]]
    training = fixed_train + [free[i] for i in order[n_validation:]]
    if not training:
        raise InputError(
            "no training cases remain after the validation split: add cases or lower the validation fraction"
        )
    return training, validation


def _prepare_with_mask(case: TrainingCase, n4: bool) -> tuple[PreparedStudy, np.ndarray]:
    """Prepared study and the tumour mask on its 1 mm grid."""
    study = prepare_study(case.phases, case.times, validate_spacing(case.spacing), n4=n4)
    if np.shape(case.mask) != study.original_shape:
        raise InputError(
            f"case {case.case_id}: mask shape {np.shape(case.mask)} differs from the phases' "
            f"{study.original_shape}: give the mask on the image grid"
        )
    mask = (
        resample_volume(
            (np.asarray(case.mask) > 0).astype(np.float32),
            study.original_spacing,
            study.spacing,
            shape=study.phases.shape[1:],
        )
        >= 0.5
    )
    return study, mask.astype(np.uint8)


def _pad_to(array: np.ndarray, minimum: Sequence[int]) -> np.ndarray:
    """Zero-pad the last three axes at their end up to ``minimum``."""
    extra = [max(0, m - n) for m, n in zip(minimum, array.shape[-3:], strict=True)]
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + [(0, e) for e in extra])


def training_samples(
    case: TrainingCase, in_channels: int, patch_size: Sequence[int], n4: bool = False
) -> list[TrainingSample]:
    """Prepare a case and expand it into one sample per phase triplet.

    Parameters
    ----------
    case : TrainingCase
        Study and mask.
    in_channels : int
        Network input channels (3 or 1).
    patch_size : sequence of int
        Patch size; volumes are padded to at least this.
    n4 : bool
        N4 bias-field correction.

    Returns
    -------
    list of TrainingSample
        Samples on the 1 mm grid.
    """
    study, mask = _prepare_with_mask(case, n4)
    mask = _pad_to(mask, patch_size)
    phases = _pad_to(study.phases, patch_size)
    foreground = np.argwhere(mask > 0)
    return [
        TrainingSample(
            case_id=case.case_id,
            phases=phases,
            indices=indices,
            times=study.times[list(indices)],
            mask=mask,
            foreground=foreground,
        )
        for indices in input_samples(len(study.times), in_channels)
    ]


def sample_patch(
    sample: TrainingSample, patch_size: Sequence[int], rng: np.random.Generator, foreground_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one randomly flipped patch, centred near a tumour voxel with probability ``foreground_fraction``.

    Returns
    -------
    image : numpy.ndarray
        ``(channels, *patch_size)`` float32.
    mask : numpy.ndarray
        ``patch_size`` uint8.
    """
    shape = np.array(sample.mask.shape)
    size = np.array(patch_size)
    if len(sample.foreground) and rng.random() < foreground_fraction:
        centre = sample.foreground[rng.integers(len(sample.foreground))] + rng.integers(
            -size // 4, size // 4 + 1
        )
    else:
        centre = rng.integers(0, shape)
    start = np.clip(centre - size // 2, 0, shape - size)
    box = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
    image, mask = sample.phases[(list(sample.indices), *box)], sample.mask[box]
    flips = [axis for axis in range(3) if rng.random() < 0.5]
    if flips:
        image, mask = np.flip(image, [a + 1 for a in flips]), np.flip(mask, flips)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def _batch(
    samples: Sequence[TrainingSample], config: TrainingConfig, rng: np.random.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(B, C, *patch)``, times ``(B, C)`` and masks ``(B, 1, *patch)`` of one random batch."""
    chosen = [samples[i] for i in rng.integers(len(samples), size=config.batch_size)]
    patches = [sample_patch(sample, config.patch_size, rng, config.foreground_fraction) for sample in chosen]
    images = torch.from_numpy(np.stack([image for image, _ in patches])).to(device)
    masks = torch.from_numpy(np.stack([mask for _, mask in patches])[:, None].astype(np.int64)).to(device)
    times = torch.from_numpy(np.stack([sample.times for sample in chosen]).astype(np.float32)).to(device)
    return images, times, masks


def validation_dice(
    network: TemporalMambaUNet, cases: Sequence[ValidationCase], roi_size: Sequence[int], device: torch.device
) -> float:
    """Mean Dice of the thresholded averaged probability over validation cases (NaN-safe, NaN if none)."""
    scores = []
    for case in cases:
        probability = average_probability(network, case.study, case.samples, roi_size, device, overlap=0.25)
        scores.append(dice_coefficient(probability > 0.5, case.mask))
    finite = [score for score in scores if np.isfinite(score)]
    return float(np.mean(finite)) if finite else float("nan")


def _validation_cases(cases: Sequence[TrainingCase], in_channels: int, n4: bool) -> list[ValidationCase]:
    """Prepare held-out cases for validation."""
    prepared = []
    for case in cases:
        study, mask = _prepare_with_mask(case, n4)
        prepared.append(
            ValidationCase(case.case_id, study, mask, input_samples(len(study.times), in_channels))
        )
    return prepared


def _loss_function(config: NetworkConfig) -> torch.nn.Module:
    """Dice + cross-entropy on softmax outputs, wrapped for deep supervision when enabled."""
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    return DeepSupervisionLoss(loss) if config.deep_supervision else loss


def _write_log(path: Path, history: Sequence[dict[str, float]]) -> None:
    """Write the training history as CSV."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["iteration", "loss", "validation_dice", "seconds"])
        writer.writeheader()
        writer.writerows(history)


@dataclass
class _RunState:
    """Mutable state of a training run, as stored in checkpoints."""

    iteration: int = 0
    best_dice: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)


def _resumable_settings(config: TrainingConfig) -> dict[str, Any]:
    """Settings a resumed run must share with the checkpoint (all but the device)."""
    return {key: value for key, value in config.to_dict().items() if key != "device"}


class _TrainingRun:
    """Network, optimiser, schedule, sampler and files of one training run."""

    def __init__(
        self,
        config: TrainingConfig,
        output: Path,
        training: Sequence[TrainingCase],
        validation: Sequence[TrainingCase],
        metadata: dict[str, Any],
    ) -> None:
        self.config = config
        self.output = output
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.network = TemporalMambaUNet(config.network).to(self.device)
        self.roi_size = check_roi_size(self.network, config.patch_size)
        in_channels = config.network.in_channels
        self.samples = [
            s for case in training for s in training_samples(case, in_channels, self.roi_size, config.n4)
        ]
        self.held_out = _validation_cases(validation, in_channels, config.n4)
        self.optimiser = torch.optim.AdamW(
            self.network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimiser, T_max=config.iterations, eta_min=0.01 * config.learning_rate
        )
        self.rng = np.random.default_rng(config.seed)
        self.loss_function = _loss_function(config.network)
        self.state = _RunState()
        self.metadata = {
            **metadata,
            "roi_size": list(self.roi_size),
            "spacing_mm": [1.0, 1.0, 1.0],
            "training": config.to_dict(),
            "training_cases": [case.case_id for case in training],
            "validation_cases": [case.case_id for case in validation],
        }

    @property
    def checkpoint_path(self) -> Path:
        """Checkpoint file of the run."""
        return self.output / CHECKPOINT_NAME

    @property
    def weights_path(self) -> Path:
        """Best (or final) weights file of the run."""
        return self.output / WEIGHTS_NAME

    def restore(self) -> None:
        """Continue from the checkpoint, refusing one written with other settings."""
        content = read_checkpoint(self.checkpoint_path)
        if content.get("training_config") != _resumable_settings(self.config):
            raise InputError(
                f"checkpoint {self.checkpoint_path} was written with other training settings: resume "
                "with the same settings, or start a new output folder"
            )
        self.network.load_state_dict(content["state_dict"])
        self.optimiser.load_state_dict(content["optimizer"])
        self.scheduler.load_state_dict(content["scheduler"])
        self.rng.bit_generator.state = content["sampler_state"]
        self.state = _RunState(
            iteration=int(content["iteration"]),
            best_dice=float(content["best_dice"]),
            history=list(content["history"]),
        )

    def step(self) -> float:
        """One optimiser step on a random batch; returns the loss."""
        self.network.train()
        images, times, masks = _batch(self.samples, self.config, self.rng, self.device)
        self.optimiser.zero_grad(set_to_none=True)
        loss = self.loss_function(self.network(images, times), masks)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 5.0)
        self.optimiser.step()
        self.scheduler.step()
        self.state.iteration += 1
        return float(loss.detach())

    def validate(self) -> float:
        """Validation Dice now; the weights are saved when it is the best so far."""
        dice = validation_dice(self.network, self.held_out, self.roi_size, self.device)
        if not math.isfinite(self.state.best_dice) or dice > self.state.best_dice:
            self.state.best_dice = dice
            self.save_weights(validation_dice=dice)
        return dice

    def save_weights(self, **extra: float) -> None:
        """Write the current weights with the run's metadata."""
        save_weights(
            self.weights_path, self.network, {**self.metadata, "iterations": self.state.iteration, **extra}
        )

    def save_checkpoint(self) -> None:
        """Write the checkpoint (atomically) and the log."""
        payload = {
            **architecture_header(self.config.network, {"roi_size": list(self.roi_size)}),
            "state_dict": self.network.state_dict(),
            "optimizer": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler_state": self.rng.bit_generator.state,
            "iteration": self.state.iteration,
            "best_dice": self.state.best_dice,
            "history": self.state.history,
            "training_config": _resumable_settings(self.config),
        }
        temporary = self.checkpoint_path.with_suffix(".tmp")
        torch.save(payload, temporary)
        os.replace(temporary, self.checkpoint_path)
        _write_log(self.output / LOG_NAME, self.state.history)


def train_segmentation(
    cases: Sequence[TrainingCase],
    config: TrainingConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> TrainingSummary:
    """Train the network on cases and write weights, checkpoint and log to ``out_dir``.

    Parameters
    ----------
    cases : sequence of TrainingCase
        Studies with tumour masks.
    config : TrainingConfig
        Settings.
    out_dir : path-like
        Output folder (created): ``weights.safetensors``, ``checkpoint.pt``, ``training_log.csv``.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (written with the same settings).
    metadata : dict, optional
        JSON-serialisable information stored in the weights file (e.g. what the data were).
    progress : callable, optional
        ``progress(fraction, message)`` after each step; may raise to cancel.

    Returns
    -------
    TrainingSummary
        Paths, steps, best validation Dice, time per step and history.
    """
    if config.iterations < 1 or config.batch_size < 1:
        raise InputError(
            f"iterations ({config.iterations}) and batch size ({config.batch_size}) must be positive"
        )
    output = Path(out_dir)
    output.mkdir(parents=True, exist_ok=True)
    training, validation = split_cases(cases, config.validation_fraction, config.seed)
    run = _TrainingRun(config, output, training, validation, dict(metadata or {}))
    if resume and run.checkpoint_path.exists():
        run.restore()
    state = run.state
    step_seconds = []
    while state.iteration < config.iterations:
        started = time.perf_counter()
        loss = run.step()
        step_seconds.append(time.perf_counter() - started)
        entry = {
            "iteration": state.iteration,
            "loss": loss,
            "validation_dice": float("nan"),
            "seconds": step_seconds[-1],
        }
        last = state.iteration == config.iterations
        if run.held_out and (state.iteration % config.validate_every == 0 or last):
            entry["validation_dice"] = run.validate()
        elif last and not run.held_out:
            run.save_weights()
        state.history.append(entry)
        if state.iteration % config.checkpoint_every == 0 or last:
            run.save_checkpoint()
        if progress is not None:
            progress(
                state.iteration / config.iterations,
                f"iteration {state.iteration}/{config.iterations}: loss {entry['loss']:.4f}",
            )
    return TrainingSummary(
        weights_path=run.weights_path,
        checkpoint_path=run.checkpoint_path,
        iterations=state.iteration,
        best_validation_dice=state.best_dice,
        seconds_per_iteration=float(np.median(step_seconds)) if step_seconds else float("nan"),
        history=state.history,
    )
