"""Speed and memory of the Echo4DFeatures feature asymmetry on a 160 x 160 x 160 x 16 float32 series.

Run from the repository root (with the package importable, e.g. an editable install):

    python Testing/benchmarks/bench_echo.py [--size 160] [--frames 16] [--workers 2] [--cases fa4d,fa3d]

The series is the speckle phantom in an 80 mm field of view (0.5 mm voxels at size 160). Every case runs in a fresh Python process; its peak
resident memory (``VmHWM``, restarted after the imports and the loading of the series) is reported, and
"above input" subtracts the resident size right after the series was loaded (Linux only). Cases:

- one real 4D FFT of the series (``scipy.fft.rfftn``), for scale;
- 4D feature asymmetry, 3 scales (targets: 10 s, 2 GB);
- 3D feature asymmetry frame by frame, 3 scales (target: 0.5 s a frame);
- per-slice 2D phase congruency from ``phasepack`` (``phasecongmono`` and ``phasecong``) over every
  k-slice of every frame, same wavelengths in pixels, for comparison.

Wall times depend on what else the machine is running: CPU time is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SCALES = 3
MIN_WAVELENGTH_MM = 4.0
MULT = 2.0
SIGMA_ONF = 0.55
FIELD_OF_VIEW_MM = 80.0
"""The phantom keeps this field of view: 0.5 mm voxels at the default size of 160."""


def _status_mb(field: str) -> float:
    """A memory field (``VmRSS``, ``VmHWM``) of /proc/self/status, MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} is not reported by this system")


def _reset_peak_rss() -> None:
    """Restart the peak resident size (VmHWM) from the current one (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _run_case(case: str, data: Path, workers: int) -> dict:
    """Run one case in this process and return its timings and memory."""
    import scipy.fft
    from Echo4DFeaturesLib.feature_asymmetry import feature_asymmetry_series
    from Echo4DFeaturesLib.monogenic import LogGaborBank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import phasepack

    series = np.load(data)
    _reset_peak_rss()
    loaded_mb = _status_mb("VmRSS")
    spacing_mm = FIELD_OF_VIEW_MM / series.shape[0]
    bank = LogGaborBank(SCALES, MIN_WAVELENGTH_MM, MULT, SIGMA_ONF)
    wall, cpu = time.perf_counter(), time.process_time()
    if case == "fft4d":
        scipy.fft.rfftn(series, workers=workers)
    elif case in ("fa4d", "fa3d"):
        feature_asymmetry_series(series, (spacing_mm,) * 3, bank, mode=case[2:], workers=workers)
    else:
        congruency = getattr(phasepack, case)
        for frame in range(series.shape[3]):
            for k in range(series.shape[0]):
                congruency(
                    series[k, :, :, frame],
                    nscale=SCALES,
                    minWaveLength=MIN_WAVELENGTH_MM / spacing_mm,
                    mult=MULT,
                    sigmaOnf=SIGMA_ONF,
                )
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_mb": _status_mb("VmHWM"),
        "above_input_mb": _status_mb("VmHWM") - loaded_mb,
    }


CASES = [
    ("fft4d", "one real 4D FFT (rfftn)", None),
    ("fa4d", "FA 4D, 3 scales", "<= 10 s, <= 2048 MB"),
    ("fa3d", "FA 3D per frame, 3 scales", "<= 0.5 s / frame"),
    ("phasecongmono", "phasepack phasecongmono, 2D per slice", None),
    ("phasecong", "phasepack phasecong (6 orient.), 2D per slice", None),
]


def _make_series(size: int, frames: int, path: Path) -> float:
    from Echo4DFeaturesLib.phantom import make_echo_phantom

    start = time.perf_counter()
    spacing_mm = FIELD_OF_VIEW_MM / size
    phantom = make_echo_phantom((size, size, size), (spacing_mm,) * 3, n_frames=frames, seed=0)
    np.save(path, phantom.image)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--cases", default=",".join(case for case, _, _ in CASES), help="comma-separated subset of the cases"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args.data, args.workers)))
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "series.npy"
        generation_s = _make_series(args.size, args.frames, data)
        print(
            f"series {args.size}^3 x {args.frames} float32 ({args.size**3 * args.frames * 4 / 2**20:.0f} MB), "
            f"{FIELD_OF_VIEW_MM / args.size:g} mm voxels, speckle phantom built in {generation_s:.1f} s; workers={args.workers}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        header = f"{'case':<48}{'wall s':>9}{'CPU s':>9}{'s/frame':>9}{'peak MB':>9}{'>input MB':>11}  target"
        print(header)
        print("-" * len(header))
        for case, label, target in CASES:
            if case not in args.cases.split(","):
                continue
            command = [
                sys.executable,
                __file__,
                "--case",
                case,
                "--data",
                str(data),
                "--workers",
                str(args.workers),
            ]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            print(
                f"{label:<48}{result['wall_s']:>9.2f}{result['cpu_s']:>9.2f}{result['wall_s'] / args.frames:>9.3f}"
                f"{result['peak_mb']:>9.0f}{result['above_input_mb']:>11.0f}  {target or ''}"
            )


if __name__ == "__main__":
    main()
