"""Speed and memory of tumour segmentation on a 3-phase 128 x 128 x 64 study, beside MONAI baselines.

Rows:

- ``segment_study``: the whole TumorSegmentation4D inference (preparation, sliding windows over every
  phase sample, resampling back, threshold) on a synthetic 3-phase phantom of 64 x 128 x 128 voxels
  at 1 mm, with the shipped weights when present (random initialisation otherwise; the speed is the same);
- the bare networks -- ours, MONAI SegResNet and SwinUNETR with five resolution levels like ours -- in
  the same MONAI sliding-window inference (64^3 windows, overlap 0.5, two windows per batch) on the
  same 3-channel input;
- the selective scan alone at the largest size the network allows (32^3 tokens, 64 channels, state 8):
  chunked against the direct sequential recurrence.

Each row runs in a fresh process so that its peak resident memory (CPU) or peak allocated GPU memory
is its own; the CPU figure includes the Python, PyTorch and MONAI baseline, reported in its own row.
Usage::

    python Testing/benchmarks/bench_segmentation.py [--threads 2] [--device cpu|cuda|all]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import SegResNet, SwinUNETR
from TumorSegmentation4DLib.inference import segment_study
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet, count_parameters
from TumorSegmentation4DLib.phantom import generate_breast_phantom
from TumorSegmentation4DLib.preprocessing import prepare_study
from TumorSegmentation4DLib.selective_scan import selective_scan_chunked, selective_scan_sequential
from TumorSegmentation4DLib.weights import SHIPPED_WEIGHTS, load_network

STUDY_SHAPE = (64, 128, 128)
ROI = (64, 64, 64)
TIMES = (0.0, 90.0, 300.0)
SCANS = {
    "scan chunked (32^3 tokens)": selective_scan_chunked,
    "scan sequential (32^3)": selective_scan_sequential,
}


def study() -> tuple[np.ndarray, np.ndarray]:
    """A 3-phase phantom, and its prepared (normalised) phases as one network input."""
    phantom = generate_breast_phantom(1, shape=STUDY_SHAPE, n_post_contrast=2)
    prepared = prepare_study(phantom.phases, phantom.times, phantom.spacing)
    return phantom.phases, prepared.phases


def our_network() -> tuple[TemporalMambaUNet, str]:
    """The shipped network, or a randomly initialised one of the same architecture."""
    if SHIPPED_WEIGHTS.is_file():
        return load_network(SHIPPED_WEIGHTS)[0], "shipped weights"
    torch.manual_seed(0)
    return TemporalMambaUNet(NetworkConfig()).eval(), "random init"


def baseline_networks() -> dict[str, torch.nn.Module]:
    """MONAI baselines with five resolution levels, three input channels and two classes."""
    return {
        "SegResNet (MONAI)": SegResNet(
            init_filters=16,
            in_channels=3,
            out_channels=2,
            blocks_down=(1, 2, 2, 2, 2),
            blocks_up=(1, 1, 1, 1),
        ),
        "SwinUNETR (MONAI)": SwinUNETR(in_channels=3, out_channels=2, feature_size=12),
    }


def scan_operands(device: torch.device) -> dict[str, torch.Tensor]:
    """Selective-scan inputs of one 32^3-token volume with 64 channels and state size 8."""
    g = torch.Generator().manual_seed(0)
    channels, state, length = 64, 8, 32**3
    operands = {
        "u": torch.randn(1, channels, length, generator=g),
        "delta": torch.randn(1, channels, length, generator=g) - 3.0,
        "A": -torch.arange(1.0, state + 1).repeat(channels, 1),
        "B": torch.randn(1, state, length, generator=g),
        "C": torch.randn(1, state, length, generator=g),
    }
    return {name: tensor.to(device) for name, tensor in operands.items()}


def _peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(job: Callable[[], object], device: torch.device) -> float:
    """Wall time of ``job`` in s, synchronising the GPU."""
    started = time.perf_counter()
    job()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure(row: str, device_name: str, threads: int) -> dict[str, object]:
    """Run one benchmark row in this process and return its figures."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    result: dict[str, object] = {"row": row, "device": device_name, "params": "", "note": ""}
    if row == "baseline":
        result.update(seconds=float("nan"), note="Python + PyTorch + MONAI imported")
    elif row in SCANS:
        operands = scan_operands(device)

        def scan() -> None:
            with torch.inference_mode():
                SCANS[row](**operands, delta_softplus=True)

        result.update(seconds=_timed(scan, device), note="64 channels, state 8")
    elif row == "segment_study":
        phases, _ = study()
        network, origin = our_network()
        result.update(params=count_parameters(network), note=origin)
        result["seconds"] = _timed(
            lambda: segment_study(network, phases, TIMES, (1.0, 1.0, 1.0), roi_size=ROI, device=device),
            device,
        )
    else:
        if row.startswith("TemporalMambaUNet"):
            network, origin = our_network()
            times = torch.tensor([TIMES], dtype=torch.float32, device=device)

            def predictor(window: torch.Tensor) -> torch.Tensor:
                return network(window, times)

            result["note"] = origin
        else:
            network = baseline_networks()[row].eval()
            predictor = network
        network.to(device)
        image = torch.from_numpy(study()[1])[None]

        def run() -> None:
            with torch.inference_mode():
                sliding_window_inference(
                    image, ROI, 2, predictor, overlap=0.5, mode="gaussian", sw_device=device, device="cpu"
                )

        result.update(params=count_parameters(network), seconds=_timed(run, device))
    result["peak_mb"] = _peak_memory_mb(device)
    return result


def _in_fresh_process(row: str, device: str, threads: int) -> dict[str, object]:
    """Run :func:`measure` in a new spawned process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (row, device, threads))


def main() -> None:
    """Run the rows on the requested devices and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    arguments = parser.parse_args()
    devices = ["cpu", "cuda"] if arguments.device == "all" else [arguments.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    rows = ["baseline", "segment_study", "TemporalMambaUNet (ours)", *baseline_networks(), *SCANS]
    print(
        f"study 3 x {STUDY_SHAPE[2]} x {STUDY_SHAPE[1]} x {STUDY_SHAPE[0]} (i x j x k), windows {ROI}, "
        f"overlap 0.5, {arguments.threads} CPU threads, PyTorch {torch.__version__}"
    )
    header = f"{'row':<26} {'device':<6} {'parameters':>11} {'time (s)':>9} {'peak memory (MiB)':>18}  note"
    print(header)
    print("-" * len(header))
    for device in devices:
        for row in rows:
            if device == "cuda" and row == "baseline":
                continue
            r = _in_fresh_process(row, device, arguments.threads)
            params = f"{r['params']:,}" if r["params"] != "" else ""
            print(
                f"{r['row']:<26} {r['device']:<6} {params:>11} {r['seconds']:>9.1f} {r['peak_mb']:>18.0f}  "
                f"{r['note']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
