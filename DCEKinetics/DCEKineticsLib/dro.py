"""A digital reference object for DCE-MRI in the style of the QIBA DRO.

Patches of known extended-Tofts parameters (Ktrans x ve x vp) are simulated with the Parker AIF,
converted to spoiled gradient-echo signal and given Rician noise. Used by the demo and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .aif import parker_aif
from .models import extended_tofts
from .signal_model import signal_from_concentration

KTRANS_VALUES_PER_MIN = (0.05, 0.15, 0.35)
VE_VALUES = (0.1, 0.3, 0.5)
VP_VALUES = (0.02, 0.08)


@dataclass
class DigitalReferenceObject:
    """Synthetic DCE series with the truth behind it.

    Attributes
    ----------
    signal : ndarray, shape (k, j, i, T)
        Signal with noise (a.u.).
    times_s : ndarray, shape (T,)
        Frame times (s).
    truth : dict of str to ndarray, shape (k, j, i)
        ``Ktrans`` (/min), ``ve``, ``vp`` per voxel.
    patch_labels : ndarray of int, shape (k, j, i)
        Patch number (1...) of every voxel.
    t1_ms, flip_angle_deg, tr_ms, r1_per_mM_per_s, arrival_s, hematocrit : float
        Acquisition and tissue constants used in the simulation.
    """

    signal: np.ndarray
    times_s: np.ndarray
    truth: dict[str, np.ndarray]
    patch_labels: np.ndarray
    t1_ms: float = 1000.0
    flip_angle_deg: float = 15.0
    tr_ms: float = 5.0
    r1_per_mM_per_s: float = 4.5
    arrival_s: float = 20.0
    hematocrit: float = 0.42


def make_dro(*, n_frames: int = 60, frame_s: float = 5.0, patch_size: int = 6, snr: float = 20.0,
             seed: int = 0) -> DigitalReferenceObject:
    """Build the reference object: one patch per (Ktrans, ve, vp) combination, in 2 slices.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    frame_s : float
        Time between frames (s).
    patch_size : int
        Patch width in voxels.
    snr : float
        Baseline signal over noise standard deviation (Rician noise); ``inf`` for none.
    seed : int
        Seed of the noise.
    """
    dro = DigitalReferenceObject(np.empty(0), np.arange(n_frames) * frame_s, {}, np.empty(0))
    combos = [(k, v, p) for p in VP_VALUES for v in VE_VALUES for k in KTRANS_VALUES_PER_MIN]
    n_columns = len(KTRANS_VALUES_PER_MIN) * len(VE_VALUES)
    shape = (len(VP_VALUES), patch_size, n_columns * patch_size)
    labels = np.zeros(shape, np.int32)
    truth = {name: np.zeros(shape) for name in ("Ktrans", "ve", "vp")}
    for number, (ktrans, ve, vp) in enumerate(combos, start=1):
        slice_index, column = divmod(number - 1, n_columns)
        region = (slice_index, slice(None), slice(column * patch_size, (column + 1) * patch_size))
        labels[region] = number
        truth["Ktrans"][region], truth["ve"][region], truth["vp"][region] = ktrans, ve, vp
    aif = parker_aif(dro.times_s, hematocrit=dro.hematocrit, delay_s=dro.arrival_s)
    concentration = extended_tofts(dro.times_s, aif, truth["Ktrans"], truth["ve"], truth["vp"])
    clean = signal_from_concentration(concentration, dro.t1_ms, dro.flip_angle_deg, dro.tr_ms, m0=1000.0,
                                      r1_per_mM_per_s=dro.r1_per_mM_per_s)
    baseline = clean[..., :1]
    rng = np.random.default_rng(seed)
    sigma = 0.0 if np.isinf(snr) else baseline / snr
    noisy = np.hypot(clean + sigma * rng.standard_normal(clean.shape), sigma * rng.standard_normal(clean.shape))
    dro.signal, dro.truth, dro.patch_labels = noisy.astype(np.float32), truth, labels
    return dro
