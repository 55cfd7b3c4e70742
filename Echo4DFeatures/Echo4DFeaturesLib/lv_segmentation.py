"""Left-ventricular blood pool over the cardiac cycle, bounded by feature-asymmetry edges.

The blood pool is a dark cavity that is star-shaped about an interior point, so its boundary is
described by one radius per direction, r(direction, frame), as in radial-search echo contouring
(e.g. Mulet-Parada & Noble 2000, Med. Image Anal. 4:21-30; Rajpoot et al. 2011, "The evaluation of
single-view and multi-view fusion 3D echocardiography using image-driven segmentation and tracking",
Med. Image Anal. 15:514-528). From the seed:

1. oriented feature asymmetry (dark-to-bright edges seen from the seed; 4D by default) is sampled
   along rays in ~uniform directions (a Fibonacci sphere) and its local maxima above a threshold are
   the boundary candidates, located to sub-sample precision by a parabola through the peak;
2. end-diastole is the frame whose first-edge surface encloses the largest volume; there each ray
   takes its first candidate, and a robust regularisation replaces every radius by the candidate
   nearest to the median of its angular neighbours (or by that median when no candidate is close),
   which bridges drop-out and rejects speckle responses; the ray centre is then moved to the centroid
   of that end-diastolic cavity and the end-diastolic surface is found again from there;
3. the surface is propagated frame by frame, forwards and backwards from end-diastole: each ray takes
   the candidate nearest to its radius in the previous frame within a maximal wall displacement, then
   the same angular regularisation is applied (temporal consistency);
4. voxels whose centre lies within the interpolated radius of its direction form the cavity label.

Automatic seed: the largest dark connected region that does not touch the border of the field of
view, weighted towards the volume centre, in the smoothed temporal mean thresholded at a ladder of grey
levels up to Otsu's threshold; the seed is the region's deepest point.

Arrays: series ``(k, j, i, T)`` (time last), spacing ``(sk, sj, si)`` in mm, seeds in voxel
coordinates ``(k, j, i)``, volumes in ml.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from SpatioTemporalCommonLib.errors import InputError

from .feature_asymmetry import (
    DEFAULT_SPACE_TIME_MM_PER_FRAME,
    check_seed,
    check_series,
    feature_asymmetry_series,
)
from .monogenic import DEFAULT_BANK, LogGaborBank, check_spacing
from .volumes import VolumeIndices, volume_curve_ml, volume_indices

RADIAL_STEP_MM = 0.25
"""Sampling step along the rays."""
MIN_RADIUS_MM = 1.5
"""Edges closer to the ray centre than this are ignored (speckle at the seed)."""
NEIGHBOURS = 24
"""Angular neighbours (of ~1000 directions: about 15 degrees around) used by the regularisation."""
INTERPOLATION_NEIGHBOURS = 4
"""Directions blended (inverse angular distance) to get the radius of a voxel's direction."""
REGULARISATION_PASSES = 4
"""Rounds of the neighbour-median regularisation of the radii."""
SEED_LEVELS = 16
"""Grey levels tried by the automatic seed search."""
SMOOTHING_SIGMA_MM = 2.0
"""Smoothing of the image used to locate and check seeds."""


@dataclass(frozen=True)
class LVSegmentation:
    """Left-ventricular cavity over the cycle.

    Attributes
    ----------
    labels : numpy.ndarray
        uint8 ``(k, j, i, T)``, 1 = cavity (blood pool), 0 elsewhere.
    volumes_ml : numpy.ndarray
        Cavity volume per frame, ml.
    indices : VolumeIndices
        EDV, ESV, SV (ml), EF (percent), ED and ES frames.
    seed_kji : tuple of float
        Seed used (given or found automatically), voxel coordinates.
    centre_kji : tuple of float
        Centre of the rays (centroid of the end-diastolic cavity), voxel coordinates.
    directions : numpy.ndarray
        Unit ray directions ``(n, 3)`` along (k, j, i) in mm space.
    radii_mm : numpy.ndarray
        Boundary radius of every direction and frame ``(n, T)``, mm.
    feature_asymmetry : numpy.ndarray
        The oriented FA used, float32 ``(k, j, i, T)``.
    """

    labels: np.ndarray
    volumes_ml: np.ndarray
    indices: VolumeIndices
    seed_kji: tuple[float, float, float]
    centre_kji: tuple[float, float, float]
    directions: np.ndarray
    radii_mm: np.ndarray
    feature_asymmetry: np.ndarray


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` nearly uniformly spread unit vectors (k, j, i) on the sphere (golden-angle spiral)."""
    index = np.arange(n) + 0.5
    along = 1.0 - 2.0 * index / n
    across = np.sqrt(1.0 - along**2)
    azimuth = math.pi * (3.0 - math.sqrt(5.0)) * index
    return np.stack([along, across * np.sin(azimuth), across * np.cos(azimuth)], axis=1)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (maximal between-class variance) of a set of values."""
    counts, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(counts * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_low = mass_low / weight_low
        mean_high = (mass_low[-1] - mass_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.nanargmax(between))])


def _smoothed_mean(series: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Temporal mean of the series smoothed by a Gaussian of SMOOTHING_SIGMA_MM."""
    sigma = [SMOOTHING_SIGMA_MM / s for s in spacing]
    return ndimage.gaussian_filter(series.mean(axis=3, dtype=np.float32), sigma)


def _enclosed_regions(dark: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Connected dark regions and the labels of those that do not touch the border of the volume."""
    regions, count = ndimage.label(dark)
    border = set()
    for axis in range(3):
        border.update(np.unique(np.take(regions, [0, -1], axis=axis)).tolist())
    return regions, [r for r in range(1, count + 1) if r not in border]


def automatic_seed(series: np.ndarray, spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    """Seed in the largest dark enclosed region near the volume centre.

    The smoothed temporal mean is thresholded at SEED_LEVELS grey levels up to Otsu's threshold (a
    cavity may leak to the border through drop-out at high levels but not at low ones); over all
    levels, the enclosed region maximising size x exp(-(distance of its centroid from the volume
    centre / half the field of view)^2) is chosen.

    Parameters
    ----------
    series : numpy.ndarray
        Echo series ``(k, j, i, T)``, blood dark.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.

    Returns
    -------
    tuple of float
        Seed ``(k, j, i)`` in voxel coordinates: the deepest point (largest distance to the region's
        border, in mm) of the chosen region.
    """
    check_series(series)
    spacing = np.asarray(check_spacing(spacing_mm))
    smoothed = _smoothed_mean(series, tuple(spacing))
    middle = (np.asarray(smoothed.shape) - 1) / 2.0
    half_extent = 0.5 * np.asarray(smoothed.shape) * spacing
    best_score, best_region = 0.0, None
    for level in np.linspace(float(smoothed.min()), otsu_threshold(smoothed), SEED_LEVELS + 1)[1:]:
        regions, enclosed = _enclosed_regions(smoothed < level)
        if not enclosed:
            continue
        ones = np.ones_like(smoothed)
        sizes = ndimage.sum_labels(ones, regions, enclosed)
        centroids = np.asarray(ndimage.center_of_mass(ones, regions, enclosed)).reshape(-1, 3)
        offsets = np.linalg.norm((centroids - middle) * spacing / half_extent, axis=1)
        scores = sizes * np.exp(-(offsets**2))
        if scores.max() > best_score:
            best_score, best_region = float(scores.max()), regions == enclosed[int(np.argmax(scores))]
    if best_region is None:
        raise InputError(
            "no dark region enclosed by tissue was found: give a seed point inside the left-ventricular cavity"
        )
    depth = ndimage.distance_transform_edt(best_region, sampling=spacing)
    return tuple(float(c) for c in np.unravel_index(int(np.argmax(depth)), depth.shape))


def check_seed_in_cavity(
    series: np.ndarray, spacing_mm: tuple[float, float, float], seed_kji: tuple[float, float, float]
) -> None:
    """Refuse a seed that is outside the volume or lies in bright tissue (myocardium).

    The seed is accepted when, in at least one frame, the image smoothed by a Gaussian of
    SMOOTHING_SIGMA_MM is darker at the seed than Otsu's threshold of the smoothed temporal mean.

    Parameters
    ----------
    series : numpy.ndarray
        Echo series ``(k, j, i, T)``.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    seed_kji : tuple of float
        Seed in voxel coordinates.

    Raises
    ------
    InputError
        When the seed is outside the volume or in bright tissue.
    """
    seed = check_seed(seed_kji, series.shape[:3])
    spacing = check_spacing(spacing_mm)
    sigma_voxels = np.array([SMOOTHING_SIGMA_MM / s for s in spacing])
    reach = np.ceil(4 * sigma_voxels).astype(int) + 1
    low = np.maximum(np.floor(seed).astype(int) - reach, 0)
    high = np.minimum(np.ceil(seed).astype(int) + reach + 1, series.shape[:3])
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    local = ndimage.gaussian_filter(series[box].astype(np.float32), [*sigma_voxels, 0.0], mode="nearest")
    at_seed = [
        ndimage.map_coordinates(local[..., t], (seed - low)[:, None], order=1)[0]
        for t in range(series.shape[3])
    ]
    if min(at_seed) >= otsu_threshold(_smoothed_mean(series, spacing)):
        raise InputError(
            f"the seed (k, j, i) = ({', '.join(f'{v:.1f}' for v in seed)}) lies in bright tissue "
            "(myocardium), not in the dark blood pool: place the seed inside the left-ventricular cavity"
        )


class _Rays:
    """FA sampled along rays from a centre, and the boundary candidates on each ray."""

    def __init__(
        self,
        fa: np.ndarray,
        spacing: tuple[float, ...],
        centre_kji: np.ndarray,
        directions: np.ndarray,
        threshold: float,
    ) -> None:
        self.fa = fa
        self.spacing = np.asarray(spacing)
        self.centre_mm = centre_kji * self.spacing
        self.directions = directions
        corners = np.array(np.meshgrid(*([0, n - 1] for n in fa.shape[:3]), indexing="ij")).reshape(3, -1).T
        reach = float(np.linalg.norm((corners - centre_kji) * self.spacing, axis=1).max())
        self.radii = np.arange(0.0, reach + RADIAL_STEP_MM, RADIAL_STEP_MM)
        self.threshold = threshold

    def candidates(self, frame: int) -> np.ndarray:
        """Sub-sample radii (mm) of FA maxima above the threshold on every ray, NaN elsewhere."""
        points = self.centre_mm + self.radii[None, :, None] * self.directions[:, None, :]
        coordinates = np.moveaxis(points / self.spacing, -1, 0)
        profile = ndimage.map_coordinates(
            self.fa[..., frame], coordinates, order=1, mode="constant", cval=0.0
        )
        left, middle, right = profile[:, :-2], profile[:, 1:-1], profile[:, 2:]
        peak = (middle >= left) & (middle > right) & (middle >= self.threshold)
        peak &= self.radii[None, 1:-1] >= MIN_RADIUS_MM
        curvature = left - 2.0 * middle + right
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        radius = self.radii[None, 1:-1] + np.clip(shift, -0.5, 0.5) * RADIAL_STEP_MM
        return np.where(peak, radius, np.nan)


def _first(candidates: np.ndarray) -> np.ndarray:
    """Smallest candidate radius of every ray (NaN for rays without candidates)."""
    found = ~np.isnan(candidates)
    first = np.argmax(found, axis=1)
    return np.where(found.any(axis=1), candidates[np.arange(candidates.shape[0]), first], np.nan)


def _nearest(candidates: np.ndarray, prior: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """Candidate nearest to ``prior`` on every ray if within ``tolerance_mm``, else ``prior``."""
    distance = np.abs(candidates - prior[:, None])
    has = ~np.all(np.isnan(distance), axis=1)
    best = np.argmin(np.where(np.isnan(distance), np.inf, distance), axis=1)
    chosen = candidates[np.arange(candidates.shape[0]), best]
    close = has & (np.abs(chosen - prior) <= tolerance_mm)
    return np.where(close, chosen, prior)


def _regularise(
    candidates: np.ndarray, radii: np.ndarray, neighbours: np.ndarray, tolerance_mm: float
) -> np.ndarray:
    """Pull every ray to the candidate nearest to the median radius of its angular neighbours.

    Rays without a radius (NaN) start from the median radius of all rays.
    """
    radii = np.where(np.isnan(radii), np.nanmedian(radii), radii)
    for _ in range(REGULARISATION_PASSES):
        radii = _nearest(candidates, np.median(radii[neighbours], axis=1), tolerance_mm)
    return radii


class _Voxeliser:
    """Cavity labels from per-direction radii: voxel centres within the radius of their direction.

    Only voxels within ``reach_mm`` of the centre are considered (a bounding box of that radius).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        spacing: tuple[float, ...],
        centre_kji: np.ndarray,
        directions: np.ndarray,
        reach_mm: float,
    ) -> None:
        self.shape = shape
        half = np.ceil(reach_mm / np.asarray(spacing)).astype(int) + 1
        low = np.maximum(np.floor(centre_kji).astype(int) - half, 0)
        high = np.minimum(np.ceil(centre_kji).astype(int) + half + 1, shape)
        self.box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
        grids = np.meshgrid(*(np.arange(lo, hi) for lo, hi in zip(low, high, strict=True)), indexing="ij")
        self.box_shape = grids[0].shape
        offsets = np.stack(
            [(g - c) * s for g, c, s in zip(grids, centre_kji, spacing, strict=True)], axis=-1
        ).reshape(-1, 3)
        self.distance = np.linalg.norm(offsets, axis=1)
        unit = offsets / np.maximum(self.distance, 1e-9)[:, None]
        angle, self.nearest = cKDTree(directions).query(unit, k=INTERPOLATION_NEIGHBOURS)
        weights = 1.0 / np.maximum(angle, 1e-6)
        self.weights = weights / weights.sum(axis=1, keepdims=True)

    def labels(self, radii: np.ndarray) -> np.ndarray:
        """Boolean cavity mask (full volume) for one frame's radii (mm)."""
        radius = np.sum(radii[self.nearest] * self.weights, axis=1)
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.box] = (self.distance <= radius).reshape(self.box_shape)
        return mask


def _first_edge_surface(
    rays: _Rays, candidates: np.ndarray, neighbours: np.ndarray, tolerance_mm: float
) -> np.ndarray:
    """Regularised surface through the first edge met on every ray (no temporal prior)."""
    first = _first(candidates)
    if np.isnan(first).all():
        raise InputError(
            f"no boundary with FA above {rays.threshold:g} was found around the seed: check that the seed is "
            "inside the cavity, or lower the FA threshold"
        )
    return _regularise(candidates, first, neighbours, tolerance_mm)


def _enclosed_volume_mm3(radii: np.ndarray) -> float:
    """Volume of the star-shaped surface r(direction) from equal-area directions, mm^3."""
    return float(4.0 * math.pi * np.mean(radii**3) / 3.0)


def _enclosed_centroid_mm(radii: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Centroid of the star-shaped body r(direction) relative to the ray centre, mm.

    In polar form the first moment is the integral of r^4 / 4 times the direction and the volume
    the integral of r^3 / 3, both over the unit sphere (equal-area directions: plain sums).
    """
    return 0.75 * (radii[:, None] ** 4 * directions).sum(axis=0) / (radii**3).sum()


def _ignore_progress(fraction: float, message: str) -> None:
    """Progress callback that does nothing."""


def _check_search_options(fa_threshold: float, max_displacement_mm: float, n_directions: int) -> None:
    if not 0 < fa_threshold < 1:
        raise InputError(f"FA threshold {fa_threshold} is outside (0, 1): give e.g. 0.2")
    if not (math.isfinite(max_displacement_mm) and max_displacement_mm > 0):
        raise InputError(f"maximal displacement {max_displacement_mm} mm is not positive: give e.g. 3 mm")
    if int(n_directions) != n_directions or n_directions < 2 * NEIGHBOURS:
        raise InputError(f"{n_directions} directions are too few: give at least {2 * NEIGHBOURS} (e.g. 1024)")


def _end_diastole(rays: _Rays, neighbours: np.ndarray, tolerance_mm: float) -> tuple[int, np.ndarray]:
    """Frame whose first-edge surface encloses the largest volume, and that surface (mm)."""
    surfaces = [
        _first_edge_surface(rays, rays.candidates(frame), neighbours, tolerance_mm)
        for frame in range(rays.fa.shape[3])
    ]
    ed_frame = int(np.argmax([_enclosed_volume_mm3(radii) for radii in surfaces]))
    return ed_frame, surfaces[ed_frame]


def _track(rays: _Rays, ed_frame: int, neighbours: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """Radii ``(n_directions, T)``: first-edge surface at end-diastole, then tracked both ways in time."""
    n_frames = rays.fa.shape[3]
    radii = np.empty((rays.directions.shape[0], n_frames))
    radii[:, ed_frame] = _first_edge_surface(rays, rays.candidates(ed_frame), neighbours, tolerance_mm)
    for step in (1, -1):
        for frame in range(ed_frame + step, n_frames if step > 0 else -1, step):
            candidates = rays.candidates(frame)
            tracked = _nearest(candidates, radii[:, frame - step], tolerance_mm)
            radii[:, frame] = _regularise(candidates, tracked, neighbours, tolerance_mm)
    return radii


def _label_series(
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    centre: np.ndarray,
    directions: np.ndarray,
    radii: np.ndarray,
) -> np.ndarray:
    """uint8 cavity labels ``(k, j, i, T)`` of the surfaces ``radii`` around ``centre``."""
    voxeliser = _Voxeliser(shape[:3], spacing, centre, directions, float(radii.max()))
    labels = np.zeros(shape, dtype=np.uint8)
    for frame in range(shape[3]):
        labels[..., frame] = voxeliser.labels(radii[:, frame])
    return labels


def segment_left_ventricle(
    series: np.ndarray,
    spacing_mm: tuple[float, float, float],
    seed_kji: tuple[float, float, float] | None = None,
    bank: LogGaborBank = DEFAULT_BANK,
    *,
    mode: str = "4d",
    space_time_mm_per_frame: float = DEFAULT_SPACE_TIME_MM_PER_FRAME,
    k: float = 2.0,
    fa_threshold: float = 0.2,
    max_displacement_mm: float = 3.0,
    n_directions: int = 1024,
    workers: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> LVSegmentation:
    """Segment the left-ventricular blood pool in every frame of a 3D+t echo series.

    Parameters
    ----------
    series : numpy.ndarray
        Echo series ``(k, j, i, T)``, time last, blood dark, at least 3 frames.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm (all distances below are in mm).
    seed_kji : tuple of float or None
        A point in the cavity (voxel coordinates); None finds one automatically (see module notes).
    bank : LogGaborBank
        Filter scales for the feature asymmetry.
    mode : {"4d", "3d"}
        Feature asymmetry in space-time or frame by frame.
    space_time_mm_per_frame : float
        Space-time constant ``c`` (mm per frame) of the 4D filters.
    k : float
        Noise threshold of the feature asymmetry, in noise standard deviations.
    fa_threshold : float
        Smallest FA (in [0, 1]) of a boundary candidate.
    max_displacement_mm : float
        Largest wall displacement between consecutive frames, and largest distance between a
        candidate and the regularised surface.
    n_directions : int
        Number of rays.
    workers : int or None
        FFT threads (default: all available CPUs).
    progress : callable(fraction, message) or None
        Progress callback; it may raise to cancel.

    Returns
    -------
    LVSegmentation
        Labels, volume curve, EDV / ESV / SV / EF, seed and surfaces.
    """
    check_series(series)
    spacing = check_spacing(spacing_mm)
    _check_search_options(fa_threshold, max_displacement_mm, n_directions)
    report = progress if progress is not None else _ignore_progress
    seed = np.asarray(automatic_seed(series, spacing) if seed_kji is None else seed_kji, dtype=float)
    check_seed_in_cavity(series, spacing, seed)
    report(0.0, "feature asymmetry")
    fa = feature_asymmetry_series(
        series,
        spacing,
        bank,
        mode=mode,
        space_time_mm_per_frame=space_time_mm_per_frame,
        k=k,
        seed_kji=tuple(seed),
        workers=workers,
    ).feature_asymmetry
    report(0.6, "boundary search")
    directions = fibonacci_directions(int(n_directions))
    neighbours = cKDTree(directions).query(directions, k=NEIGHBOURS + 1)[1][:, 1:]
    ed_frame, ed_radii = _end_diastole(
        _Rays(fa, spacing, seed, directions, fa_threshold), neighbours, max_displacement_mm
    )
    centre = seed + _enclosed_centroid_mm(ed_radii, directions) / np.asarray(spacing)
    centre = np.clip(centre, 0, np.asarray(series.shape[:3]) - 1)
    rays = _Rays(fa, spacing, centre, directions, fa_threshold)
    radii = _track(rays, ed_frame, neighbours, max_displacement_mm)
    report(0.8, "labels")
    labels = _label_series(series.shape, spacing, centre, directions, radii)
    volumes = volume_curve_ml(labels, spacing)
    report(1.0, "done")
    return LVSegmentation(
        labels=labels,
        volumes_ml=volumes,
        indices=volume_indices(volumes),
        seed_kji=tuple(float(c) for c in seed),
        centre_kji=tuple(float(c) for c in centre),
        directions=directions,
        radii_mm=radii,
        feature_asymmetry=fa,
    )
