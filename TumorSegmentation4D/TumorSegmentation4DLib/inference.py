"""Tumour segmentation of a multi-phase DCE study with the temporal Mamba U-net.

The study is prepared (see :mod:`.preprocessing`), each (pre, first, later) phase sample is segmented
by MONAI sliding-window inference with overlapping Gaussian-weighted windows, the class probabilities
are averaged over the samples, resampled back onto the input grid and thresholded. Optionally only
the largest connected component is kept.

Device: ``"auto"`` uses CUDA when available, else the CPU; ``"cpu"`` forces the CPU. When a GPU runs
out of memory, the job is repeated on the CPU and a message says so. Results are deterministic for a
given device (no sampling, fixed window order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage
from SpatioTemporalCommonLib.errors import InputError

from .network import TemporalMambaUNet
from .preprocessing import PreparedStudy, input_samples, prepare_study, to_original_grid

DEFAULT_ROI_SIZE = (64, 64, 64)
Progress = Callable[[float, str], None]
Result = TypeVar("Result")


@dataclass(frozen=True)
class SegmentationResult:
    """Output of :func:`segment_study`, on the input grid.

    Attributes
    ----------
    label : numpy.ndarray
        uint8 ``(k, j, i)``: 1 = tumour.
    probability : numpy.ndarray
        float32 ``(k, j, i)`` tumour probability averaged over the phase samples.
    device : str
        Device the network ran on (``"cpu"`` after a GPU out-of-memory fallback).
    samples : list of tuple of int
        Phase indices of every sample that was averaged.
    messages : list of str
        Notes for the user (e.g. the out-of-memory fallback).
    """

    label: np.ndarray
    probability: np.ndarray
    device: str
    samples: list[tuple[int, ...]]
    messages: list[str] = field(default_factory=list)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda"`` into a torch device.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` = CUDA when available, else CPU.

    Returns
    -------
    torch.device
        The device to run on.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                "device 'cuda' was asked for but no CUDA GPU is available to PyTorch: use --device cpu "
                "or auto, or install a CUDA build of PyTorch"
            )
        return torch.device(name)
    raise InputError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")


def run_with_cpu_fallback(
    job: Callable[[torch.device], Result], device: torch.device, log: Callable[[str], None]
) -> tuple[Result, torch.device]:
    """Run ``job(device)``; if a CUDA device runs out of memory, run ``job`` again on the CPU.

    Parameters
    ----------
    job : callable
        Work to do on a device.
    device : torch.device
        Preferred device.
    log : callable
        Receives a message when the job falls back to the CPU.

    Returns
    -------
    result
        What ``job`` returned.
    device : torch.device
        The device that produced it.
    """
    try:
        return job(device), device
    except torch.cuda.OutOfMemoryError:
        if device.type != "cuda":
            raise
    torch.cuda.empty_cache()
    log(f"the GPU ({device}) ran out of memory; segmenting on the CPU instead (slower)")
    cpu = torch.device("cpu")
    return job(cpu), cpu


def check_roi_size(network: TemporalMambaUNet, roi_size: Sequence[int]) -> tuple[int, int, int]:
    """Return the sliding-window size as three ints, or raise ``InputError`` if the network cannot take it."""
    size = tuple(int(n) for n in roi_size)
    divisor = network.config.divisor
    if len(size) != 3 or any(n < divisor or n % divisor for n in size):
        raise InputError(
            f"sliding-window size {size} must be three multiples of {divisor} (voxels at 1 mm), e.g. "
            f"{DEFAULT_ROI_SIZE}"
        )
    return size


def predict_probability(
    network: TemporalMambaUNet,
    image: np.ndarray,
    times: Sequence[float],
    roi_size: Sequence[int],
    device: torch.device,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
) -> np.ndarray:
    """Tumour probability of one sample by sliding-window inference.

    Parameters
    ----------
    network : TemporalMambaUNet
        Network (moved to ``device`` and set to evaluation mode here).
    image : numpy.ndarray
        Normalised phases of the sample, ``(in_channels, k, j, i)`` at 1 mm.
    times : sequence of float
        Acquisition times of those phases, s after injection.
    roi_size : sequence of int
        Window size ``(k, j, i)`` in voxels.
    device : torch.device
        Device for the network; windows are stitched on the CPU.
    overlap : float
        Fraction of overlap between neighbouring windows.
    sw_batch_size : int
        Windows per forward pass.

    Returns
    -------
    numpy.ndarray
        float32 ``(k, j, i)`` probability of the tumour class.
    """
    network.to(device).eval()
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    time_row = torch.as_tensor(np.asarray(times, dtype=np.float32))[None].to(device)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        return torch.softmax(network(window, time_row), dim=1)

    with torch.inference_mode():
        probabilities = sliding_window_inference(
            volume,
            check_roi_size(network, roi_size),
            sw_batch_size,
            predictor,
            overlap=overlap,
            mode="gaussian",
            sw_device=device,
            device=torch.device("cpu"),
        )
    return probabilities[0, 1].numpy().astype(np.float32)


def average_probability(
    network: TemporalMambaUNet,
    study: PreparedStudy,
    samples: Sequence[tuple[int, ...]],
    roi_size: Sequence[int],
    device: torch.device,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    progress: Progress | None = None,
) -> np.ndarray:
    """Tumour probability on the prepared grid, averaged over phase samples.

    Parameters
    ----------
    network : TemporalMambaUNet
        Network.
    study : PreparedStudy
        Prepared study (1 mm, normalised).
    samples : sequence of tuple of int
        Phase indices of each sample (see :func:`.preprocessing.input_samples`).
    roi_size, device, overlap, sw_batch_size
        As in :func:`predict_probability`.
    progress : callable, optional
        ``progress(fraction, message)`` after each sample.

    Returns
    -------
    numpy.ndarray
        float32 ``(k, j, i)`` mean probability.
    """
    total = np.zeros(study.phases.shape[1:], dtype=np.float64)
    for index, phases in enumerate(samples):
        total += predict_probability(
            network,
            study.phases[list(phases)],
            study.times[list(phases)],
            roi_size,
            device,
            overlap,
            sw_batch_size,
        )
        if progress is not None:
            progress((index + 1) / len(samples), f"segmented phases {phases} ({index + 1}/{len(samples)})")
    return (total / len(samples)).astype(np.float32)


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 26-connected component of a binary mask.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary ``(k, j, i)`` mask.

    Returns
    -------
    numpy.ndarray
        uint8 mask with one component (all zero if the input is empty).
    """
    labels, count = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return (labels > 0).astype(np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    return (labels == int(np.argmax(sizes)) + 1).astype(np.uint8)


def segment_study(
    network: TemporalMambaUNet,
    phases: np.ndarray | Sequence[np.ndarray],
    times: Sequence[float] | None,
    spacing: Sequence[float],
    *,
    roi_size: Sequence[int] = DEFAULT_ROI_SIZE,
    device: str | torch.device = "auto",
    phase_selection: Sequence[int] | None = None,
    n4: bool = False,
    keep_largest: bool = False,
    threshold: float = 0.5,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    progress: Progress | None = None,
) -> SegmentationResult:
    """Segment the tumour of one multi-phase DCE study.

    Parameters
    ----------
    network : TemporalMambaUNet
        Trained network (e.g. from :func:`.weights.load_network`).
    phases : numpy.ndarray or sequence of numpy.ndarray
        ``(P, k, j, i)`` signal of all phases, P >= 3, phase 0 usually pre-contrast.
    times : sequence of float
        Acquisition time of every phase, s after injection, strictly increasing.
    spacing : sequence of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    roi_size : sequence of int
        Sliding-window size in voxels at 1 mm (multiples of the network's divisor).
    device : str or torch.device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    phase_selection : sequence of int, optional
        ``(pre, first, later, ...)`` phase indices; default all phases (0, 1, then every later one).
    n4 : bool
        Apply N4 bias-field correction first.
    keep_largest : bool
        Keep only the largest connected component.
    threshold : float
        Probability above which a voxel is tumour.
    overlap : float
        Sliding-window overlap fraction.
    sw_batch_size : int
        Windows per forward pass.
    progress : callable, optional
        ``progress(fraction, message)``; may raise to cancel.

    Returns
    -------
    SegmentationResult
        Label and probability on the input grid, device used, samples averaged.
    """
    messages: list[str] = []

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    def log(message: str) -> None:
        messages.append(message)
        report(0.1, message)

    report(0.0, "preparing the study")
    study = prepare_study(phases, times, spacing, n4=n4)
    samples = input_samples(len(study.times), network.config.in_channels, phase_selection)

    def sample_progress(fraction: float, message: str) -> None:
        report(0.1 + 0.8 * fraction, message)

    def job(run_device: torch.device) -> np.ndarray:
        return average_probability(
            network, study, samples, roi_size, run_device, overlap, sw_batch_size, sample_progress
        )

    probability, used = run_with_cpu_fallback(job, resolve_device(device), log)
    probability = np.clip(to_original_grid(probability, study), 0.0, 1.0)
    label = (probability > threshold).astype(np.uint8)
    if keep_largest:
        label = keep_largest_component(label)
    report(1.0, "segmentation done")
    return SegmentationResult(
        label=label, probability=probability, device=used.type, samples=samples, messages=messages
    )
