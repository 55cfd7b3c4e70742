"""Synthetic multi-phase breast DCE-MRI phantom with malignant lesions and benign mimics.

The phantom is built so that only the contrast kinetics tell the two lesion types apart:

- a fat-suppressed breast (half ellipsoid on a chest-wall muscle band) with a textured
  fibroglandular tissue pattern and mild, persistent background parenchymal enhancement;
- one malignant lesion with fast uptake and wash-out (BI-RADS curve type III);
- benign mimics with persistent enhancement (type I).

Malignant lesions and mimics are drawn from one shape generator with the same radius, the same
pre-contrast intensity and the same relative enhancement at the first post-contrast phase, so a
single post-contrast image cannot separate them; the later phases can. Enhancement curves are the
empirical forms used for semi-quantitative breast DCE (uptake ``1 - exp(-t / tau_in)``, wash-out
``exp(-t / tau_out)``; Kuhl et al., Radiology 1999;211:101-110 for the curve types). Phase times vary
per study. Signals are magnitude images with complex Gaussian noise and a smooth multiplicative coil
bias shared by all phases.

Arrays are ``(k, j, i)`` with voxel spacing ``(sk, sj, si)`` in mm; phases are stacked first,
``(P, k, j, i)``, with their acquisition times in seconds after contrast injection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from SpatioTemporalCommonLib.errors import InputError

FAT_SIGNAL = 0.12
FIBROGLANDULAR_SIGNAL = 0.45
MUSCLE_SIGNAL = 0.35
LESION_SIGNAL = 0.45
MUSCLE_ENHANCEMENT = 0.3
MUSCLE_UPTAKE_S = 60.0
CHEST_WALL_MM = 8.0


@dataclass(frozen=True)
class BreastPhantom:
    """One synthetic DCE study.

    Attributes
    ----------
    phases : numpy.ndarray
        Signal, float32 ``(P, k, j, i)``; phase 0 is pre-contrast.
    times : numpy.ndarray
        Acquisition times, s after injection, float64 ``(P,)``, strictly increasing.
    tumor_mask : numpy.ndarray
        uint8 ``(k, j, i)``: 1 inside the malignant lesion.
    benign_mask : numpy.ndarray
        uint8 ``(k, j, i)``: 1 inside the benign mimics.
    spacing : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    """

    phases: np.ndarray
    times: np.ndarray
    tumor_mask: np.ndarray
    benign_mask: np.ndarray
    spacing: tuple[float, float, float]


def malignant_enhancement(
    times: np.ndarray, first_post_time: float, amplitude: float, uptake_s: float, washout_s: float
) -> np.ndarray:
    """Relative enhancement of a wash-out (type III) lesion.

    ``E(t) = amplitude * f(t) / f(t1)`` with ``f(t) = (1 - exp(-t / uptake_s)) * exp(-t / washout_s)``
    for ``t > 0`` and 0 before injection, so ``E(first_post_time) = amplitude``.

    Parameters
    ----------
    times : numpy.ndarray
        Times, s after injection.
    first_post_time : float
        Time of the first post-contrast phase, s (> 0).
    amplitude : float
        Relative enhancement at the first post-contrast phase (signal / pre-contrast signal - 1).
    uptake_s, washout_s : float
        Uptake and wash-out time constants, s.

    Returns
    -------
    numpy.ndarray
        Relative enhancement at ``times`` (dimensionless).
    """

    def shape(t: np.ndarray) -> np.ndarray:
        t = np.maximum(np.asarray(t, dtype=float), 0.0)
        return -np.expm1(-t / uptake_s) * np.exp(-t / washout_s)

    return amplitude * shape(times) / shape(first_post_time)


def benign_enhancement(
    times: np.ndarray, first_post_time: float, amplitude: float, uptake_s: float
) -> np.ndarray:
    """Relative enhancement of a persistent (type I) lesion or of background parenchyma.

    ``E(t) = amplitude * g(t) / g(t1)`` with ``g(t) = 1 - exp(-t / uptake_s)`` for ``t > 0``.

    Parameters
    ----------
    times : numpy.ndarray
        Times, s after injection.
    first_post_time : float
        Time at which the enhancement equals ``amplitude``, s (> 0).
    amplitude : float
        Relative enhancement at ``first_post_time``.
    uptake_s : float
        Uptake time constant, s.

    Returns
    -------
    numpy.ndarray
        Relative enhancement at ``times`` (dimensionless).
    """

    def shape(t: np.ndarray) -> np.ndarray:
        return -np.expm1(-np.maximum(np.asarray(t, dtype=float), 0.0) / uptake_s)

    return amplitude * shape(times) / shape(first_post_time)


def random_phase_times(rng: np.random.Generator, n_post_contrast: int) -> np.ndarray:
    """Acquisition times: pre-contrast at 0 s, first post-contrast at 60-120 s, then 60-120 s apart.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    n_post_contrast : int
        Number of post-contrast phases (>= 2).

    Returns
    -------
    numpy.ndarray
        Times in s after injection, shape ``(n_post_contrast + 1,)``.
    """
    gaps = rng.uniform(60.0, 120.0, size=n_post_contrast)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: np.ndarray) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``sigma_voxels``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_voxels, mode="wrap")
    return (field - field.mean()) / max(field.std(), 1e-12)


def _physical_grid(shape: tuple[int, int, int], spacing: np.ndarray) -> list[np.ndarray]:
    """Open grid of voxel-centre coordinates in mm along (k, j, i)."""
    return [
        np.arange(n, dtype=float).reshape([-1 if a == axis else 1 for a in range(3)]) * spacing[axis]
        for axis, n in enumerate(shape)
    ]


def _breast_anatomy(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft tissue fractions (breast, fibroglandular within breast, chest-wall muscle)."""
    z, y, x = _physical_grid(shape, spacing)
    extent = np.array(shape) * spacing
    wall = 0.8 * extent[1]
    radii = extent * np.array([0.42, 0.68, 0.42]) * rng.uniform(0.85, 1.0, size=3)
    centre_z, centre_x = extent[0] / 2, extent[2] / 2
    rho = np.sqrt(
        ((z - centre_z) / radii[0]) ** 2 + ((y - wall) / radii[1]) ** 2 + ((x - centre_x) / radii[2]) ** 2
    )
    breast = (rho <= 1.0) & (y <= wall)
    lateral = (np.abs(z - centre_z) <= 1.1 * radii[0]) & (np.abs(x - centre_x) <= 1.1 * radii[2])
    muscle = lateral & (y > wall) & (y <= wall + CHEST_WALL_MM)
    texture = _smooth_noise(rng, shape, 3.0 / spacing) + 1.5 * (1.0 - np.minimum(rho, 1.0))
    density = rng.uniform(0.2, 0.45)
    threshold = np.quantile(texture[breast], 1.0 - density)
    fibroglandular = breast & (texture > threshold)
    partial_volume = 0.7 / spacing
    return (
        ndimage.gaussian_filter(breast.astype(float), partial_volume),
        ndimage.gaussian_filter(fibroglandular.astype(float), partial_volume),
        ndimage.gaussian_filter(muscle.astype(float), partial_volume),
    )


def _lesion_centres(
    rng: np.random.Generator, breast: np.ndarray, spacing: np.ndarray, radius_mm: float, count: int
) -> list[np.ndarray]:
    """Voxel centres of ``count`` lesions well inside the breast and apart from each other (mm)."""
    depth = ndimage.distance_transform_edt(breast >= 0.5, sampling=spacing)
    candidates = np.argwhere(depth >= 1.3 * radius_mm + 2.0) * spacing
    if len(candidates) == 0:
        raise InputError(
            f"phantom volume is too small for lesions of radius {radius_mm:.1f} mm: enlarge the shape"
        )
    centres: list[np.ndarray] = []
    for candidate in candidates[rng.permutation(len(candidates))]:
        if all(np.linalg.norm(candidate - c) >= 3.2 * radius_mm + 2.0 for c in centres):
            centres.append(candidate)
            if len(centres) == count:
                return centres
    raise InputError(
        f"phantom volume cannot hold {count} separate lesions of radius {radius_mm:.1f} mm: "
        "enlarge the shape or ask for fewer benign mimics"
    )


def _lesion_fraction(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: np.ndarray,
    centre_mm: np.ndarray,
    radius_mm: float,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Soft occupancy (0..1) of an irregular ellipsoidal lesion; >= 0.5 inside its boundary.

    Returns the box (slices of the volume) that holds the largest possible lesion and the occupancy
    inside it; the occupancy is zero outside the box.
    """
    half_width = np.ceil((1.6 * radius_mm + 2.0) / spacing).astype(int)
    centre = np.round(centre_mm / spacing).astype(int)
    box = tuple(
        slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half_width, shape, strict=True)
    )
    box_shape = tuple(b.stop - b.start for b in box)
    z, y, x = (
        coordinate + b.start * s
        for coordinate, b, s in zip(_physical_grid(box_shape, spacing), box, spacing, strict=True)
    )
    axes = radius_mm * rng.uniform(0.8, 1.2, size=3)
    rho = np.sqrt(
        ((z - centre_mm[0]) / axes[0]) ** 2
        + ((y - centre_mm[1]) / axes[1]) ** 2
        + ((x - centre_mm[2]) / axes[2]) ** 2
    )
    rho = rho * (1.0 + 0.08 * _smooth_noise(rng, box_shape, np.full(3, 2.5) / spacing))
    edge_width = 0.5 / radius_mm
    return box, np.clip(0.5 + (1.0 - rho) / (2.0 * edge_width), 0.0, 1.0)


def _background_signal(
    rng: np.random.Generator,
    times: np.ndarray,
    fibroglandular: np.ndarray,
    muscle: np.ndarray,
    breast: np.ndarray,
    texture: np.ndarray,
) -> np.ndarray:
    """Signal ``(P, k, j, i)`` of fat, enhancing parenchyma and chest-wall muscle, without lesions."""
    pre = (
        breast * (FAT_SIGNAL + (FIBROGLANDULAR_SIGNAL - FAT_SIGNAL) * fibroglandular) + muscle * MUSCLE_SIGNAL
    ) * texture
    parenchyma = benign_enhancement(times, times[1], rng.uniform(0.03, 0.15), rng.uniform(200.0, 500.0))
    muscle_curve = benign_enhancement(times, times[1], MUSCLE_ENHANCEMENT, MUSCLE_UPTAKE_S)
    return pre[None] * (
        1.0
        + parenchyma[:, None, None, None] * fibroglandular[None]
        + muscle_curve[:, None, None, None] * muscle[None]
    )


def _lesion_curves(rng: np.random.Generator, times: np.ndarray, n_benign: int) -> list[np.ndarray]:
    """Relative enhancement of the malignant lesion, then of each benign mimic (one shared amplitude)."""
    amplitude = rng.uniform(0.9, 1.6)
    malignant = malignant_enhancement(
        times, times[1], amplitude, rng.uniform(15.0, 40.0), rng.uniform(250.0, 500.0)
    )
    return [malignant] + [
        benign_enhancement(times, times[1], amplitude, rng.uniform(150.0, 400.0)) for _ in range(n_benign)
    ]


def generate_breast_phantom(
    seed: int | np.random.Generator,
    shape: tuple[int, int, int] = (64, 128, 128),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_post_contrast: int | None = None,
    n_benign: int = 1,
    lesion_radius_mm: tuple[float, float] = (5.0, 10.0),
    noise_sd: float = 0.015,
    bias_amplitude: float = 0.1,
) -> BreastPhantom:
    """Generate one synthetic multi-phase breast DCE study.

    Parameters
    ----------
    seed : int or numpy.random.Generator
        Seed (or generator) for every random choice; equal seeds give equal phantoms.
    shape : tuple of int
        Volume shape ``(k, j, i)``.
    spacing : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    n_post_contrast : int, optional
        Number of post-contrast phases (>= 2); random in 2..5 when omitted.
    n_benign : int
        Number of benign mimics.
    lesion_radius_mm : tuple of float
        Range of the mean lesion radius, mm; one radius is drawn per study and shared by the
        malignant lesion and its mimics.
    noise_sd : float
        Standard deviation of the real and imaginary noise components, in signal units (the
        pre-contrast fibroglandular signal is 0.45, fat 0.12).
    bias_amplitude : float
        Standard deviation of the log of the smooth multiplicative bias field.

    Returns
    -------
    BreastPhantom
        Phases, times, malignant mask and benign-mimic mask.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_post_contrast is not None and n_post_contrast < 2:
        raise InputError(f"{n_post_contrast} post-contrast phases requested: a phantom needs at least 2")
    if min(shape) < 16:
        raise InputError(f"phantom shape {shape} is too small: use at least 16 voxels along each axis")
    spacing_mm = np.asarray(spacing, dtype=float)
    times = random_phase_times(rng, int(n_post_contrast or rng.integers(2, 6)))
    breast, fibroglandular, muscle = _breast_anatomy(rng, shape, spacing_mm)
    texture = 1.0 + 0.08 * _smooth_noise(rng, shape, np.full(3, 1.5) / spacing_mm)
    signal = _background_signal(rng, times, fibroglandular, muscle, breast, texture)
    radius = rng.uniform(*lesion_radius_mm)
    centres = _lesion_centres(rng, breast, spacing_mm, radius, 1 + n_benign)
    masks = np.zeros((len(centres), *shape), dtype=np.uint8)
    for mask, centre, curve in zip(masks, centres, _lesion_curves(rng, times, n_benign), strict=True):
        box, fraction = _lesion_fraction(rng, shape, spacing_mm, centre, radius)
        lesion = LESION_SIGNAL * texture[box] * (1.0 + curve[:, None, None, None] * texture[box])
        signal[(slice(None), *box)] = (1.0 - fraction) * signal[(slice(None), *box)] + fraction * lesion
        mask[box] = fraction >= 0.5
    bias = np.exp(bias_amplitude * _smooth_noise(rng, shape, np.array(shape) / 4.0))
    real_noise = rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary_noise = rng.standard_normal(signal.shape, dtype=np.float32)
    phases = np.hypot((signal * bias).astype(np.float32) + noise_sd * real_noise, noise_sd * imaginary_noise)
    return BreastPhantom(
        phases=phases.astype(np.float32),
        times=times,
        tumor_mask=masks[0],
        benign_mask=masks[1:].max(axis=0, initial=0),
        spacing=tuple(float(s) for s in spacing_mm),
    )
