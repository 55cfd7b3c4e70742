"""Speed, accuracy and memory of the DCE fitting engine, against dcmri and a per-voxel curve_fit loop.

Synthetic extended-Tofts data: 60 frames every 5 s, Parker population AIF (plasma, Hct 0.42, arrival
at 15 s), Ktrans in [0.01, 0.5] /min, ve in [0.05, 0.6], vp in [0.005, 0.1], Gaussian noise with a
standard deviation of 1/20 of each voxel's peak concentration (SNR 20). The engine fits all voxels;
scipy's ``curve_fit`` (one call per voxel, the same exact forward model, bounds of the registry) and
dcmri's ``TissueArray`` (high-flux two-compartment kinetics = extended Tofts, fast water exchange,
fitted to the spoiled gradient-echo signal of the same noisy curves) fit the first voxels only. A
separate process then runs the whole module analysis (AIF alignment, fit, curve maps) of a
256 x 256 x 40 x 60 float32 volume and reports its peak resident memory. Times are wall clock and CPU (all threads of the process); on a shared machine the
CPU time is the steadier measure.

Run:  python Testing/benchmarks/bench_dce.py [--voxels N] [--reference-voxels M] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from DCEKineticsLib.aif import parker_aif
from DCEKineticsLib.fitting import fit_model
from DCEKineticsLib.models import MODELS, extended_tofts
from DCEKineticsLib.parameters import DCEParameters
from DCEKineticsLib.pipeline import analyse_dce
from DCEKineticsLib.signal_model import signal_from_concentration
from scipy.optimize import curve_fit

FRAMES = 60
FRAME_S = 5.0
SNR = 20.0
HEMATOCRIT = 0.42
AIF_ARRIVAL_S = 15.0
T1_MS, FLIP_DEG, TR_MS, RELAXIVITY = 1400.0, 15.0, 5.0, 4.5
BASELINE_FRAMES = 3
MEMORY_SHAPE = (256, 256, 40)
GENERATION_CHUNK = 65536
PARAMETERS = ("Ktrans", "ve", "vp")


def acquisition() -> tuple[np.ndarray, np.ndarray]:
    """Frame times (s) and the plasma AIF (mM)."""
    times = np.arange(FRAMES) * FRAME_S
    return times, parker_aif(times, hematocrit=HEMATOCRIT, delay_s=AIF_ARRIVAL_S)


def synthetic_curves(n_voxels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth (3, N) and noisy float32 curves (N, T), generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    times, aif = acquisition()
    truth = np.stack([rng.uniform(0.01, 0.5, n_voxels), rng.uniform(0.05, 0.6, n_voxels),
                      rng.uniform(0.005, 0.1, n_voxels)])
    curves = np.empty((n_voxels, FRAMES), dtype=np.float32)
    for first in range(0, n_voxels, GENERATION_CHUNK):
        part = slice(first, min(first + GENERATION_CHUNK, n_voxels))
        clean = extended_tofts(times, aif, *truth[:, part])
        noise = rng.normal(size=clean.shape) * clean.max(axis=1, keepdims=True) / SNR
        curves[part] = clean + noise
    return truth, curves


def fit_engine(curves: np.ndarray, workers: int) -> np.ndarray:
    """This package's batched fit; estimates (3, N), NaN where the fit failed."""
    times, aif = acquisition()
    result = fit_model(curves, times, aif, "extended-tofts", workers=workers)
    return np.stack([result.parameters[name] for name in PARAMETERS])


def fit_curve_fit_loop(curves: np.ndarray) -> np.ndarray:
    """``scipy.optimize.curve_fit`` voxel by voxel, starting from typical values."""
    times, aif = acquisition()
    spec = MODELS["extended-tofts"]
    estimates = np.full((3, curves.shape[0]), np.nan)

    def model(_: np.ndarray, ktrans: float, ve: float, vp: float) -> np.ndarray:
        return extended_tofts(times, aif, ktrans, ve, vp)

    for voxel, curve in enumerate(curves.astype(float)):
        try:
            estimates[:, voxel], _ = curve_fit(model, times, curve, p0=spec.typical_values,
                                               bounds=(spec.lower_bounds, spec.upper_bounds))
        except RuntimeError:
            continue
    return estimates


def fit_dcmri(curves: np.ndarray) -> np.ndarray:
    """dcmri ``TissueArray`` (HF kinetics, FF water exchange) fitted to the SPGR signal of the curves."""
    import dcmri

    times, aif = acquisition()
    signal = signal_from_concentration(curves.astype(float), T1_MS, FLIP_DEG, TR_MS, m0=1000.0,
                                       r1_per_mM_per_s=RELAXIVITY)
    tissue = dcmri.TissueArray((curves.shape[0],), kinetics="HF", water_exchange="FF", sequence="SS",
                               ca=aif * (1.0 - HEMATOCRIT) / 1000.0, t=times, r1=RELAXIVITY * 1000.0,
                               R10=1000.0 / T1_MS, TR=TR_MS / 1000.0, FA=FLIP_DEG, n0=BASELINE_FRAMES,
                               H=HEMATOCRIT)
    tissue.train(times, signal)
    ps, vi, vb = (np.asarray(value, dtype=float) for value in tissue.params("PS", "vi", "vb"))
    return np.stack([60.0 * ps, vi, vb * (1.0 - HEMATOCRIT)])


def timed(function: Callable[[], np.ndarray]) -> tuple[np.ndarray, tuple[float, float]]:
    """Estimates of ``function()`` with its wall-clock and CPU (all threads) time in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    estimates = function()
    return estimates, (time.perf_counter() - wall, time.process_time() - cpu)


def table_row(method: str, estimates: np.ndarray, truth: np.ndarray, seconds: tuple[float, float] | None,
              scored: np.ndarray | None = None) -> str:
    """One line of the result table: speed, failures, median and 95th percentile absolute errors.

    Errors are taken over the voxels with finite estimates, or over ``scored`` voxels when given.
    """
    n_voxels = truth.shape[1]
    fitted = np.all(np.isfinite(estimates), axis=0)
    chosen = fitted if scored is None else scored & fitted
    errors = np.abs(estimates[:, chosen] - truth[:, chosen])
    speed = "" if seconds is None else f"{seconds[0]:9.2f} {seconds[1]:9.2f} {n_voxels / seconds[0]:11.0f}"
    cells = " ".join(f"{np.median(e):8.4f} {np.percentile(e, 95):8.4f}" for e in errors)
    return f"{method:38s} {n_voxels:9d} {speed:>31s} {n_voxels - fitted.sum():7d} {cells}"


def memory_case(workers: int) -> dict:
    """The whole module analysis of a 256 x 256 x 40 x 60 float32 volume; peak resident memory.

    AIF alignment, extended-Tofts fit and semi-quantitative maps, as ``spatiotemporal dce`` runs them
    on concentration input (``workers`` is the pipeline's own choice here).
    """
    n_voxels = int(np.prod(MEMORY_SHAPE))
    _, curves = synthetic_curves(n_voxels, seed=2)
    volume = curves.reshape((*MEMORY_SHAPE, FRAMES))
    times, _ = acquisition()
    wall, cpu = time.perf_counter(), time.process_time()
    result = analyse_dce(volume, times, DCEParameters(input_kind="concentration", model="extended-tofts"))
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return {"voxels": n_voxels, "seconds": seconds, "cpu_seconds": cpu_seconds, "fitted": result.n_fitted,
            "failed": result.n_failed,
            "input_mb": volume.nbytes / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=1_000_000, help="voxels fitted by the engine")
    parser.add_argument("--reference-voxels", type=int, default=2000,
                        help="voxels fitted by curve_fit and dcmri")
    parser.add_argument("--workers", type=int, default=2, help="threads of the engine")
    parser.add_argument("--skip-memory", action="store_true", help="do not run the 256x256x40x60 case")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.memory_only:
        print(json.dumps(memory_case(options.workers)))
        return

    truth, curves = synthetic_curves(options.voxels, seed=1)
    subset = min(options.reference_voxels, options.voxels)
    header = (f"{'method':38s} {'voxels':>9s} {'seconds':>9s} {'cpu s':>9s} {'voxels/s':>11s} {'failed':>7s} "
              + " ".join(f"{name + ' med':>8s} {name + ' p95':>8s}" for name in PARAMETERS))
    rows = []
    engine, seconds = timed(lambda: fit_engine(curves, options.workers))
    rows.append(table_row(f"engine, {options.workers} thread(s)", engine, truth, seconds))
    engine_subset, truth_subset = engine[:, :subset], truth[:, :subset]
    rows.append(table_row(f"engine, first {subset} voxels", engine_subset, truth_subset, None))
    estimates, seconds = timed(lambda: fit_curve_fit_loop(curves[:subset]))
    rows.append(table_row("scipy curve_fit, one call per voxel", estimates, truth_subset, seconds))
    engine_fitted = np.all(np.isfinite(engine_subset), axis=0)
    rows.append(table_row("  curve_fit on the engine's fitted", estimates, truth_subset, None, engine_fitted))
    estimates, seconds = timed(lambda: fit_dcmri(curves[:subset]))
    rows.append(table_row("dcmri TissueArray (signal fit)", estimates, truth_subset, seconds))
    print("Extended Tofts, 60 frames, Parker AIF, SNR 20; absolute errors (Ktrans /min, ve, vp)")
    print(header)
    print("\n".join(rows))

    if not options.skip_memory:
        command = [sys.executable, __file__, "--memory-only", "--workers", str(options.workers)]
        report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        rate = report["voxels"] / report["seconds"]
        print(f"\n{'x'.join(map(str, MEMORY_SHAPE))}x{FRAMES} float32 volume ({report['voxels']} voxels, "
              f"input {report['input_mb']:.0f} MiB): {report['seconds']:.1f} s "
              f"({report['cpu_seconds']:.1f} s CPU), {rate:.0f} voxels/s, {report['failed']} failed, "
              f"peak resident memory {report['peak_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
