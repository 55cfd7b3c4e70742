"""Speed, memory and agreement of fMRI Dynamics beside nilearn (and rapidtide when it is installed).

Run from the repository root: ``python Testing/benchmarks/bench_fmri.py``. Everything runs on one
thread (BLAS included). Prints one table:

- GLM (SPM HRF, cosine drift 128 s, AR(1)) on a 64 x 64 x 30 x 200 phantom against nilearn's
  ``FirstLevelModel``: time and the correlation of the z maps;
- band-pass (0.01-0.1 Hz) and 24-term nuisance regression against ``nilearn.signal.clean``;
- ReHo over 27 neighbours;
- the voxel-wise lag map on the rapidtide resting-state scan against rapidtide's own (the lag-map
  correlation where rapidtide's peak correlation exceeds 0.3), with our defaults and with
  rapidtide's estimator options, both on the scan smoothed as rapidtide smooths it;
- the whole pipeline (every feature but motion correction) on the phantom;

with the peak of the memory our code allocates (tracemalloc) and the process's peak resident memory.

rapidtide 3.2 pins ``torch<2.13``, which clashes with this project's torch, so give it an environment of
its own and point ``$RAPIDTIDE`` at it (its torch-based deep-learning filter is not used here)::

    python3 -m venv rt && rt/bin/pip install --no-deps rapidtide==3.2.0
    rt/bin/pip install numpy scipy pandas pyarrow scikit-image scikit-learn nibabel nilearn matplotlib \
        pyfftw statsmodels pywavelets tqdm versioneer requests colour-science
    RAPIDTIDE=rt/bin/rapidtide python Testing/benchmarks/bench_fmri.py
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import nibabel
import numpy as np
from FMRIDynamicsLib.cleaning import FWHM_TO_SIGMA, clean_signals, motion_confounds, smooth_spatial
from FMRIDynamicsLib.glm import compute_contrast, design_matrix, fit_glm
from FMRIDynamicsLib.latency import LagMaps, lag_map
from FMRIDynamicsLib.local_features import regional_homogeneity
from FMRIDynamicsLib.parameters import FMRIParameters
from FMRIDynamicsLib.phantom import make_phantom
from FMRIDynamicsLib.pipeline import analyse_fmri
from threadpoolctl import threadpool_limits

SHAPE_KJI = (30, 64, 64)
N_FRAMES = 200
TR_S = 2.0
BAND_HZ = (0.01, 0.1)
LAG_BAND_HZ = (0.01, 0.15)
"""rapidtide's low-frequency oscillation band (``--filterband lfo``)."""
MAX_LAG_S = 10.0
RAPIDTIDE = os.environ.get("RAPIDTIDE") or shutil.which("rapidtide")
"""The rapidtide executable: $RAPIDTIDE, else the one on PATH (None when there is none)."""
RAPIDTIDE_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fmri" / "rapidtide_rest"
RAPIDTIDE_SCAN = "sub-RAPIDTIDETESTTINY"


def measured(function: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``function``; return its result, the wall time (s) and the peak traced allocation (MB)."""
    tracemalloc.start()
    started = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return result, elapsed, peak


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """Run ``function``; return its result and the wall time (s)."""
    started = time.perf_counter()
    return function(), time.perf_counter() - started


def row(
    step: str, ours_s: float, theirs_s: float | None, reference: str, agreement: str, peak_mb: float
) -> dict:
    speed_up = f"{theirs_s / ours_s:.1f}x" if theirs_s is not None else "-"
    theirs = f"{theirs_s:.2f}" if theirs_s is not None else "-"
    return {
        "step": step,
        "ours (s)": f"{ours_s:.2f}",
        "reference": reference,
        "reference (s)": theirs,
        "speed-up": speed_up,
        "agreement": agreement,
        "our peak (MB)": f"{peak_mb:.0f}",
    }


def bench_glm(phantom) -> dict:
    """Our design + AR(1) fit + contrast against nilearn's FirstLevelModel on the same data and model."""
    import pandas
    from nilearn.glm.first_level import FirstLevelModel

    events = phantom.events

    def ours():
        design = design_matrix(events, N_FRAMES, TR_S, "spm", 0.0, 128.0)
        fit = fit_glm(phantom.data[phantom.brain], design, "ar1")
        return compute_contrast(fit, {"motor": 1.0}).z

    z, ours_s, peak = measured(ours)
    affine = np.diag([*phantom.spacing_kji[::-1], 1.0])
    image = nibabel.Nifti1Image(np.transpose(phantom.data, (2, 1, 0, 3)), affine)
    mask = nibabel.Nifti1Image(np.transpose(phantom.brain, (2, 1, 0)).astype(np.uint8), affine)
    table = pandas.DataFrame(
        {"onset": events.onset, "duration": events.duration, "trial_type": events.trial_type}
    )
    model = FirstLevelModel(
        t_r=TR_S,
        slice_time_ref=0.0,
        hrf_model="spm",
        drift_model="cosine",
        high_pass=1 / 128.0,
        noise_model="ar1",
        mask_img=mask,
        signal_scaling=False,
        minimize_memory=True,
    )

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(image, events=table)
            return model.compute_contrast("motor", output_type="z_score").get_fdata()

    reference, theirs_s = timed(theirs)
    reference_z = np.transpose(reference, (2, 1, 0))[phantom.brain]
    r = np.corrcoef(z, reference_z)[0, 1]
    moderate = np.abs(reference_z) < 5
    agreement = f"z r = {r:.5f}, max |dz| = {np.max(np.abs(z - reference_z)[moderate]):.3f} (|z| < 5)"
    return row(
        "GLM, 2 trial types (SPM HRF, AR(1))", ours_s, theirs_s, "nilearn FirstLevelModel", agreement, peak
    )


def bench_cleaning(phantom, rng: np.random.Generator) -> dict:
    """Detrend, Butterworth band-pass and 24 motion regressors in one projection, against signal.clean."""
    from nilearn import signal

    confounds = motion_confounds(np.cumsum(0.02 * rng.standard_normal((6, N_FRAMES)), axis=1), 24)
    rows = phantom.data[phantom.brain].astype(np.float64)
    cleaned, ours_s, peak = measured(lambda: clean_signals(rows, TR_S, confounds=confounds, band=BAND_HZ))

    def theirs():
        return signal.clean(
            rows.T.copy(),
            t_r=TR_S,
            detrend=True,
            standardize=None,
            confounds=confounds.T,
            standardize_confounds=True,
            filter="butterworth",
            low_pass=BAND_HZ[1],
            high_pass=BAND_HZ[0],
        )

    reference, theirs_s = timed(theirs)
    difference = np.max(np.abs(cleaned - reference.T)) / np.max(np.abs(reference))
    return row(
        "band-pass + 24 nuisance regressors",
        ours_s,
        theirs_s,
        "nilearn.signal.clean",
        f"max |diff| = {difference:.1e} of max |signal|",
        peak,
    )


def bench_reho(phantom) -> dict:
    """ReHo over 27 neighbours inside the brain (no reference implementation to compare with here)."""
    _, ours_s, peak = measured(lambda: regional_homogeneity(phantom.data, phantom.brain, 27))
    return row("ReHo, 27 neighbours", ours_s, None, "-", "brute force in Testing/fmri", peak)


def _rapidtide_lag_map(scan: Path, mask: Path, folder: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """rapidtide's lag and peak-correlation maps of ``scan`` (same band and search range as ours)."""
    started = time.perf_counter()
    subprocess.run(
        [
            RAPIDTIDE,
            str(scan),
            str(folder / "out"),
            "--filterband",
            "lfo",
            "--searchrange",
            str(-MAX_LAG_S),
            str(MAX_LAG_S),
            "--corrmask",
            str(mask),
            "--nprocs",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    lag = nibabel.load(next(folder.glob("out_desc-maxtime_map.nii.gz"))).get_fdata()
    strength = nibabel.load(next(folder.glob("out_desc-maxcorr_map.nii.gz"))).get_fdata()
    return lag, strength, elapsed


def _smoothed_like_rapidtide(data: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """rapidtide's default spatial filter: Gaussian of sigma = half the mean voxel size (``--spatialfilt -1``)."""
    return smooth_spatial(data, np.mean(spacing_mm) / 2.0 / FWHM_TO_SIGMA, spacing_mm)


def bench_lag() -> list[dict]:
    """Voxel-wise lag maps against the global signal on the rapidtide scan; rapidtide's when installed.

    Both lag maps see rapidtide's input: the scan smoothed as rapidtide smooths it by default (the
    smoothing is timed with ours). The first row uses our defaults, the second rapidtide's estimator
    (Hamming taper and PHAT-weighted correlation); see `FMRIDynamicsLib.latency` for why they differ.
    """
    scan = RAPIDTIDE_DATA / f"{RAPIDTIDE_SCAN}.nii.gz"
    mask_path = RAPIDTIDE_DATA / f"{RAPIDTIDE_SCAN}_brainmask.nii.gz"
    image = nibabel.load(scan)
    tr_s = float(image.header.get_zooms()[3])
    spacing_mm = tuple(float(size) for size in image.header.get_zooms()[:3])
    data = np.asarray(image.dataobj, dtype=np.float64)
    mask = np.asarray(nibabel.load(mask_path).dataobj) > 0
    shape = "x".join(map(str, image.shape))
    variants = {
        f"lag map, global reference ({shape}, TR {tr_s:g} s)": {},
        "lag map, rapidtide's estimator (Hamming taper, PHAT)": {"taper": "hamming", "weighting": "phat"},
    }

    def ours(options: dict) -> LagMaps:
        smoothed = _smoothed_like_rapidtide(data, spacing_mm)
        return lag_map(smoothed[mask], tr_s, max_lag=MAX_LAG_S, band=LAG_BAND_HZ, **options)

    results = {step: measured(partial(ours, options)) for step, options in variants.items()}
    if RAPIDTIDE is None:
        return [
            row(step, ours_s, None, "rapidtide not installed", "-", peak)
            for step, (_, ours_s, peak) in results.items()
        ]
    with tempfile.TemporaryDirectory() as folder:
        lag, strength, theirs_s = _rapidtide_lag_map(scan, mask_path, Path(folder))
    rows = []
    for step, (maps, ours_s, peak) in results.items():
        confident = (strength[mask] > 0.3) & np.isfinite(maps.lag)
        r = np.corrcoef(maps.lag[confident], lag[mask][confident])[0, 1]
        rows.append(
            row(step, ours_s, theirs_s, "rapidtide", f"lag r = {r:.3f} on {confident.sum()} voxels", peak)
        )
    return rows


def bench_pipeline(phantom) -> dict:
    """Every feature except motion correction, on the phantom with its labels and events."""
    parameters = FMRIParameters(motion_correction=False)

    def ours():
        return analyse_fmri(
            phantom.data,
            TR_S,
            phantom.spacing_kji,
            parameters,
            events=phantom.events,
            labels=phantom.labels,
            region_names=phantom.region_names,
        )

    analysis, ours_s, peak = measured(ours)
    return row(f"whole pipeline, {len(analysis.features)} features", ours_s, None, "-", "-", peak)


def print_table(rows: list[dict]) -> None:
    widths = {key: max(len(key), *(len(r[key]) for r in rows)) for key in rows[0]}
    print(" | ".join(key.ljust(width) for key, width in widths.items()))
    print("-+-".join("-" * width for width in widths.values()))
    for entry in rows:
        print(" | ".join(entry[key].ljust(width) for key, width in widths.items()))


def main() -> None:
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        phantom = make_phantom(shape_kji=SHAPE_KJI, n_frames=N_FRAMES, tr_s=TR_S, noise_sd=5.0)
        rows = [
            bench_glm(phantom),
            bench_cleaning(phantom, rng),
            bench_reho(phantom),
            *bench_lag(),
            bench_pipeline(phantom),
        ]
    print(
        f"data: {SHAPE_KJI[2]} x {SHAPE_KJI[1]} x {SHAPE_KJI[0]} x {N_FRAMES} phantom, "
        f"{int(phantom.brain.sum())} brain voxels, TR 2 s; one thread"
    )
    print_table(rows)
    print(f"process peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


if __name__ == "__main__":
    main()
