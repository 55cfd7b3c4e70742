"""A small 4D BOLD phantom with known answers, for the demo and the tests of the fMRI pipeline.

The phantom is an ellipsoidal "brain" on a ``(k, j, i)`` grid holding three kinds of signal on a
baseline of 1000 (arbitrary units), plus white Gaussian noise:

- a **propagating low-frequency oscillation**: one band-limited signal (a sum of sinusoids between
  0.015 and 0.08 Hz, unit standard deviation) that reaches each voxel with a lag growing linearly
  along the i axis (zero on average over the voxels that carry it), so voxel-wise lags, region delays
  and lag projections are known exactly (the signal is evaluated at ``t - lag``, not interpolated);
- **task blocks**: short blocks (2 to 6 s) of two trial types at jittered onsets, to which three small cubes
  respond through the SPM difference-of-gammas haemodynamic response (Friston et al. 1998) delayed
  by a different onset shift each, so their response peak latencies differ; a fourth cube does not
  respond (the null region);
- **regions**: slabs across the i axis (the oscillation's direction) labelled 1, 2, ... for region
  analyses; the task cubes are left out of the slabs and carry no oscillation, so region delays
  depend only on the oscillation and the task responses only on the task.

References
----------
Friston KJ, Fletcher P, Josephs O, Holmes A, Rugg MD, Turner R. Event-related fMRI: characterizing
differential responses. NeuroImage 1998;7:30-40.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import gamma

from FMRIDynamicsLib.glm import Events, make_events

BASELINE = 1000.0
"""Baseline intensity inside the brain (arbitrary units); the background is 2 % of it."""

TRIAL_TYPES = ("motor", "visual")
BLOCK_DURATIONS_S = (2.0, 3.0, 4.0, 5.0, 6.0)
OSCILLATION_BAND_HZ = (0.015, 0.08)
FINE_STEP_S = 0.01


@dataclass(frozen=True)
class FMRIPhantom:
    """A 4D phantom and its ground truth.

    Attributes
    ----------
    data : numpy.ndarray
        ``(k, j, i, T)`` BOLD series (float32).
    tr_s : float
        Repetition time, in s.
    spacing_kji : tuple of float
        Voxel size along k, j, i in mm.
    brain : numpy.ndarray
        ``(k, j, i)`` bool, the ellipsoid.
    labels : numpy.ndarray
        ``(k, j, i)`` int, slabs 1..n across the i axis (0 outside the brain and in the task cubes).
    region_names : dict of int to str
        Name of each slab label.
    cubes : numpy.ndarray
        ``(k, j, i)`` int, task cubes 1..4 (cube 4 does not respond).
    events : Events
        The task blocks (onsets on frame times, durations 2 to 6 s, two trial types).
    oscillation : numpy.ndarray
        ``(T,)`` the low-frequency signal at lag 0 (unit SD), a reference regressor.
    lag_s : numpy.ndarray
        ``(k, j, i)`` true lag of the oscillation in s (positive: the voxel follows the reference);
        NaN where the oscillation is absent.
    region_lag_s : dict of int to float
        Mean lag of each slab, in s.
    cube_peak_latency_s : dict of int to float
        Time from event onset to the impulse-response peak of each responding cube, in s.
    cube_amplitude : dict of int to float
        Peak of each cube's block response, in intensity units (0 for the null cube).
    """

    data: np.ndarray
    tr_s: float
    spacing_kji: tuple[float, float, float]
    brain: np.ndarray
    labels: np.ndarray
    region_names: dict[int, str]
    cubes: np.ndarray
    events: Events
    oscillation: np.ndarray
    lag_s: np.ndarray
    region_lag_s: dict[int, float]
    cube_peak_latency_s: dict[int, float]
    cube_amplitude: dict[int, float]


def spm_impulse_response(times_s: np.ndarray, shift_s: float = 0.0) -> np.ndarray:
    """SPM canonical difference of gammas ``g(t; 6, 1) - g(t; 16, 1) / 6``, delayed by ``shift_s``.

    Parameters
    ----------
    times_s : numpy.ndarray
        Times after the event, in s.
    shift_s : float
        Onset delay of the response, in s.

    Returns
    -------
    numpy.ndarray
        Response values (unnormalised).
    """
    shifted = times_s - shift_s
    return gamma.pdf(shifted, 6.0) - gamma.pdf(shifted, 16.0) / 6.0


def band_limited_signal(
    rng: np.random.Generator, band_hz: tuple[float, float] = OSCILLATION_BAND_HZ, n_components: int = 40
):
    """A random sum of sinusoids with frequencies in ``band_hz``, evaluable at any time.

    Returns
    -------
    callable
        ``signal(times_s)`` with unit standard deviation over long spans.
    """
    frequencies = np.linspace(*band_hz, n_components)
    amplitudes = rng.standard_normal(n_components)
    amplitudes *= np.sqrt(2.0 / np.sum(amplitudes**2))
    phases = rng.uniform(0.0, 2.0 * np.pi, n_components)

    def signal(times_s: np.ndarray) -> np.ndarray:
        return np.cos(2.0 * np.pi * frequencies * np.asarray(times_s)[..., None] + phases) @ amplitudes

    return signal


def jittered_blocks(rng: np.random.Generator, n_frames: int, tr_s: float) -> Events:
    """Blocks of 2 to 6 s alternating between the trial types, every 12 to 20 s, onsets on frame times.

    The first block starts at 6 s; the last ends at least 24 s before the end of the scan. Blocks of
    one common duration ``L`` would make the response unidentifiable at the frequencies ``n / L``
    (the zeros of the boxcar's spectrum), so the durations vary.
    """
    onsets, durations = [], []
    onset = 6.0
    while onset + max(BLOCK_DURATIONS_S) + 24.0 <= n_frames * tr_s:
        onsets.append(onset)
        durations.append(rng.choice(BLOCK_DURATIONS_S))
        onset += tr_s * np.ceil(rng.uniform(12.0, 20.0) / tr_s)
    trial_types = [TRIAL_TYPES[n % len(TRIAL_TYPES)] for n in range(len(onsets))]
    return make_events(onsets, durations, trial_types)


def block_response(events: Events, frame_times_s: np.ndarray, shift_s: float) -> tuple[np.ndarray, float]:
    """Response of a region to all events, scaled to a unit peak, and its impulse-response peak latency.

    The stimulus (a boxcar per event) is convolved with :func:`spm_impulse_response` on a 0.01 s
    grid and sampled at ``frame_times_s``.

    Returns
    -------
    response : numpy.ndarray
        ``(T,)`` response with maximum 1 over the frames.
    peak_latency_s : float
        Time of the impulse response's maximum after onset, in s.
    """
    kernel_times = np.arange(0.0, 40.0, FINE_STEP_S)
    kernel = spm_impulse_response(kernel_times, shift_s)
    grid = np.arange(0.0, frame_times_s[-1] + FINE_STEP_S, FINE_STEP_S)
    stimulus = np.zeros(grid.size)
    for onset, duration in zip(events.onset, events.duration, strict=True):
        stimulus[(grid >= onset) & (grid < onset + duration)] = 1.0
    response = np.convolve(stimulus, kernel)[: grid.size] * FINE_STEP_S
    sampled = np.interp(frame_times_s, grid, response)
    return sampled / sampled.max(), float(kernel_times[np.argmax(kernel)])


def _ellipsoid(shape_kji: tuple[int, int, int]) -> np.ndarray:
    """Boolean ellipsoid touching one voxel inside each face of the grid."""
    axes = [np.linspace(-1.0, 1.0, n) * n / (n - 2.0) for n in shape_kji]
    k, j, i = np.meshgrid(*axes, indexing="ij")
    return k**2 + j**2 + i**2 <= 1.0


def _cube_masks(shape_kji: tuple[int, int, int]) -> np.ndarray:
    """Four 3 x 3 x 3 task cubes, labelled 1..4, placed in the central slices of the ellipsoid."""
    n_k, n_j, n_i = shape_kji
    cubes = np.zeros(shape_kji, dtype=np.int32)
    k0 = n_k // 2 - 1
    corners = [
        (n_j // 2 - 4, n_i // 2 - 4),
        (n_j // 2 - 4, n_i // 2 + 1),
        (n_j // 2 + 1, n_i // 2 - 4),
        (n_j // 2 + 1, n_i // 2 + 1),
    ]
    for label, (j0, i0) in enumerate(corners, start=1):
        cubes[k0 : k0 + 3, j0 : j0 + 3, i0 : i0 + 3] = label
    return cubes


def make_phantom(
    shape_kji: tuple[int, int, int] = (8, 20, 20),
    n_frames: int = 300,
    tr_s: float = 1.0,
    spacing_kji: tuple[float, float, float] = (4.0, 3.0, 3.0),
    *,
    max_lag_s: float = 2.0,
    n_regions: int = 4,
    oscillation_amplitude: float = 15.0,
    task_amplitude: float = 20.0,
    cube_shifts_s: tuple[float, float, float] = (0.0, 1.0, 2.0),
    noise_sd: float = 2.0,
    seed: int = 0,
) -> FMRIPhantom:
    """Build the phantom (see the module docstring).

    Parameters
    ----------
    shape_kji : tuple of int
        Grid ``(k, j, i)``; at least 6 x 12 x 12 so that the cubes fit.
    n_frames : int
        Number of frames T.
    tr_s : float
        Repetition time, in s.
    spacing_kji : tuple of float
        Voxel size along k, j, i in mm.
    max_lag_s : float
        The oscillation's lag runs linearly from about ``-max_lag_s`` to ``+max_lag_s`` along i, in s.
    n_regions : int
        Number of slabs across i.
    oscillation_amplitude : float
        Standard deviation of the oscillation, in intensity units.
    task_amplitude : float
        Peak block response of the responding cubes, in intensity units.
    cube_shifts_s : tuple of float
        Response onset shift of cubes 1, 2, 3, in s.
    noise_sd : float
        Standard deviation of the white noise, in intensity units.
    seed : int
        Seed of the oscillation, the block timing and the noise.

    Returns
    -------
    FMRIPhantom
    """
    rng = np.random.default_rng(seed)
    brain = _ellipsoid(shape_kji)
    cubes = _cube_masks(shape_kji) * brain
    oscillating = brain & (cubes == 0)
    i_index = np.broadcast_to(np.arange(shape_kji[2], dtype=float), shape_kji)
    lag = max_lag_s * (i_index - (shape_kji[2] - 1) / 2.0) / ((shape_kji[2] - 1) / 2.0)
    lag = np.where(oscillating, lag - lag[oscillating].mean(), np.nan)
    times = np.arange(n_frames) * tr_s
    signal = band_limited_signal(rng)
    data = np.where(brain, BASELINE, 0.02 * BASELINE)[..., None] + noise_sd * rng.standard_normal(
        (*shape_kji, n_frames)
    )
    lags, which = np.unique(lag[oscillating], return_inverse=True)  # one lag per i column: evaluate each once
    data[oscillating] += oscillation_amplitude * signal(times[None, :] - lags[:, None])[which]
    events = jittered_blocks(rng, n_frames, tr_s)
    latencies, amplitudes = {}, {}
    for cube, shift in enumerate(cube_shifts_s, start=1):
        response, latencies[cube] = block_response(events, times, shift)
        data[cubes == cube] += task_amplitude * response
        amplitudes[cube] = task_amplitude
    amplitudes[4] = 0.0
    edges = np.linspace(0, shape_kji[2], n_regions + 1).round().astype(int)
    slab = np.searchsorted(edges, np.arange(shape_kji[2]), side="right")
    labels = np.where(oscillating, np.broadcast_to(slab, shape_kji), 0).astype(np.int32)
    return FMRIPhantom(
        data=data.astype(np.float32),
        tr_s=float(tr_s),
        spacing_kji=tuple(float(s) for s in spacing_kji),
        brain=brain,
        labels=labels,
        region_names={label: f"slab {label}" for label in range(1, n_regions + 1)},
        cubes=cubes,
        events=events,
        oscillation=signal(times),
        lag_s=lag,
        region_lag_s={label: float(np.mean(lag[labels == label])) for label in range(1, n_regions + 1)},
        cube_peak_latency_s=latencies,
        cube_amplitude=amplitudes,
    )
