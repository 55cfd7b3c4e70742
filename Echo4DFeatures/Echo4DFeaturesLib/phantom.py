"""Synthetic 3D+t echocardiography: a beating left ventricle imaged with fully developed speckle.

The phantom is meant for testing local-phase boundary detection and left-ventricular volumetry against
known truth. Geometry: the cavity is a prolate half-ellipsoid (semi-axes ``a`` along the long axis,
``b`` across) truncated at the mitral (base) plane, inside a myocardial shell bounded by a larger
half-ellipsoid (``a + w``, ``b + w``) truncated at the same plane; the apex points towards k = 0 (the
probe side of an apical view). Over the cycle the cavity volume follows a smooth systole / diastole
curve, the long axis shortens as V^0.2, and the wall thickness ``w`` is solved at every frame so that
the myocardial volume stays constant (incompressible muscle).

Image formation follows the usual convolution model of ultrasound speckle (Bamber & Dickinson 1980,
Phys. Med. Biol. 25:463; Gao et al. 2009, "A fast convolution-based methodology to simulate 2-D/3-D
cardiac ultrasound images", IEEE TUFFC 56:404): complex circular Gaussian scatterers on the voxel
grid, weighted by the tissue echogenicity, convolved with an anisotropic Gaussian point-spread function
(narrow along the beam, k, wider across it), plus white complex electronic noise; the envelope is
log-compressed to a fixed dynamic range. Myocardial scatterers move with the tissue (every voxel
fetches the scatterer of its material point in the end-diastolic configuration, so the speckle
pattern follows the wall) and partly decorrelate from frame to frame (an AR(1) process standing for
deformation and out-of-plane motion); blood scatterers are redrawn every frame (flowing blood
decorrelates); the surrounding tissue does not move and decorrelates like the myocardium. An angular
sector of the lateral wall is attenuated along the whole depth (drop-out, as when the beam runs
parallel to the wall).

Arrays: the image is ``(k, j, i, T)`` (time last) with spacing ``(sk, sj, si)`` in mm; grey levels
are in [0, 1]; volumes in ml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.optimize import brentq
from SpatioTemporalCommonLib.errors import InputError

from .monogenic import check_spacing

CAVITY = 1
MYOCARDIUM = 2
LONG_AXIS_EXPONENT = 0.2
"""Long-axis semi-axis scales as (V / EDV)^0.2: modest long-axis shortening."""
BASE_FRACTION = 0.75
"""The base plane lies this fraction of the way along k; the apex points towards k = 0."""
MARGIN_MM = 3.0
"""Smallest distance kept between the epicardium and the edge of the field of view."""


@dataclass(frozen=True)
class PhantomParameters:
    """Anatomy, motion and imaging parameters of the echo phantom (lengths in mm).

    Attributes
    ----------
    cavity_long_mm, cavity_short_mm : float
        End-diastolic semi-axes of the cavity (long axis along k, short axes across).
    wall_thickness_mm : float
        End-diastolic myocardial wall thickness.
    ejection_fraction : float
        True ejection fraction, in (0, 1).
    end_systole_phase : float
        Fraction of the cycle at which end-systole occurs (frame 0 is end-diastole).
    blood_level, background_level : float
        Echogenicity (scattering amplitude) of blood and of the surrounding tissue, relative to
        myocardium (1).
    noise_level : float
        Standard deviation of the complex electronic noise, relative to the myocardial signal.
    speckle_correlation : float
        Correlation of the tissue scatterers of a material point between consecutive frames, in
        [0, 1] (1 = frozen speckle; below 1 models decorrelation by deformation and out-of-plane
        motion).
    psf_sigma_mm : tuple of float
        Standard deviation of the Gaussian point-spread function along (k, j, i), mm.
    dynamic_range_db, headroom_db : float
        Log compression: the grey scale spans ``dynamic_range_db`` and the mean myocardial level sits
        ``headroom_db`` below white.
    dropout_gain : float
        Amplitude gain inside the drop-out sector (1 = no drop-out).
    dropout_centre_deg, dropout_width_deg : float
        Azimuth (from +i towards +j) and angular width of the drop-out sector.
    """

    cavity_long_mm: float = 30.0
    cavity_short_mm: float = 15.0
    wall_thickness_mm: float = 6.0
    ejection_fraction: float = 0.55
    end_systole_phase: float = 0.4
    blood_level: float = 0.03
    background_level: float = 0.5
    noise_level: float = 0.02
    speckle_correlation: float = 0.8
    psf_sigma_mm: tuple[float, float, float] = (0.4, 0.7, 0.7)
    dynamic_range_db: float = 50.0
    headroom_db: float = 10.0
    dropout_gain: float = 0.2
    dropout_centre_deg: float = 0.0
    dropout_width_deg: float = 40.0


@dataclass(frozen=True)
class EchoPhantom:
    """A synthetic 3D+t echo series with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        Grey levels in [0, 1], float32, ``(k, j, i, T)``.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    labels : numpy.ndarray
        Truth, uint8 ``(k, j, i, T)``: 0 outside, 1 cavity (blood pool), 2 myocardium.
    cavity_volumes_ml : numpy.ndarray
        Exact (continuous) cavity volume of every frame, ml.
    myocardial_volume_ml : float
        Exact myocardial volume (the same at every frame), ml.
    ed_frame, es_frame : int
        End-diastolic and end-systolic frames.
    cavity_centre_kji : tuple of float
        Centroid of the end-diastolic cavity in voxel coordinates (a natural seed).
    base_centre_kji : tuple of float
        Centre of the base (mitral) plane, voxel coordinates; the long axis runs from it towards -k.
    cavity_semi_axes_mm, epicardium_semi_axes_mm : numpy.ndarray
        (long, short) semi-axes of the cavity and of the epicardial surface in every frame, ``(T, 2)``.
    """

    image: np.ndarray
    spacing_mm: tuple[float, float, float]
    labels: np.ndarray
    cavity_volumes_ml: np.ndarray
    myocardial_volume_ml: float
    ed_frame: int
    es_frame: int
    cavity_centre_kji: tuple[float, float, float]
    base_centre_kji: tuple[float, float, float]
    cavity_semi_axes_mm: np.ndarray
    epicardium_semi_axes_mm: np.ndarray


def half_ellipsoid_volume_mm3(long_mm: float, short_mm: float) -> float:
    """Volume of a half prolate ellipsoid cut through its centre, mm^3."""
    return 2.0 / 3.0 * math.pi * long_mm * short_mm**2


def cycle_volumes_ml(n_frames: int, edv_ml: float, ejection_fraction: float, es_phase: float) -> np.ndarray:
    """Cavity volume over one cycle sampled at ``n_frames`` frames, frame 0 at end-diastole, ml.

    Systole follows sin^2 from end-diastole to end-systole at ``es_phase``; diastole returns with cos^2.
    """
    phase = np.arange(n_frames) / n_frames
    ejected = np.where(
        phase <= es_phase,
        np.sin(0.5 * np.pi * phase / es_phase) ** 2,
        np.cos(0.5 * np.pi * (phase - es_phase) / (1.0 - es_phase)) ** 2,
    )
    return edv_ml * (1.0 - ejection_fraction * ejected)


def _wall_offset_mm(long_mm: float, short_mm: float, outer_volume_mm3: float) -> float:
    """Offset w such that the half-ellipsoid (long + w, short + w) has the requested volume."""

    def excess(offset: float) -> float:
        return half_ellipsoid_volume_mm3(long_mm + offset, short_mm + offset) - outer_volume_mm3

    return brentq(excess, 0.0, 10.0 * (long_mm + short_mm))


def _semi_axes(volumes_ml: np.ndarray, params: PhantomParameters) -> tuple[np.ndarray, ...]:
    """Cavity (long, short) and epicardial (long, short) semi-axes of every frame, mm."""
    edv_mm3 = half_ellipsoid_volume_mm3(params.cavity_long_mm, params.cavity_short_mm)
    myocardium_mm3 = (
        half_ellipsoid_volume_mm3(
            params.cavity_long_mm + params.wall_thickness_mm,
            params.cavity_short_mm + params.wall_thickness_mm,
        )
        - edv_mm3
    )
    volumes_mm3 = volumes_ml * 1000.0
    long = params.cavity_long_mm * (volumes_mm3 / edv_mm3) ** LONG_AXIS_EXPONENT
    short = np.sqrt(volumes_mm3 / (2.0 / 3.0 * math.pi * long))
    offsets = np.array(
        [_wall_offset_mm(a, b, v + myocardium_mm3) for a, b, v in zip(long, short, volumes_mm3, strict=True)]
    )
    return long, short, long + offsets, short + offsets, myocardium_mm3


def base_centre_mm(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Centre of the base plane (mm from voxel 0): 3/4 of the way along k, centred across."""
    return np.array(
        [BASE_FRACTION * (shape[0] - 1), 0.5 * (shape[1] - 1), 0.5 * (shape[2] - 1)]
    ) * np.asarray(spacing)


def _validate(
    shape: tuple[int, ...], spacing: tuple[float, ...], n_frames: int, params: PhantomParameters
) -> None:
    if len(shape) != 3 or min(shape) < 16:
        raise InputError(f"phantom shape {shape} is not three sizes of at least 16 voxels: give (k, j, i)")
    if n_frames < 3:
        raise InputError(f"{n_frames} frame(s) requested: give at least 3 frames")
    if not 0 < params.ejection_fraction < 1:
        raise InputError(f"ejection fraction {params.ejection_fraction} is outside (0, 1): give e.g. 0.55")
    if not 0 < params.end_systole_phase < 1:
        raise InputError(f"end-systole phase {params.end_systole_phase} is outside (0, 1): give e.g. 0.4")
    if not 0 <= params.speckle_correlation <= 1:
        raise InputError(
            f"speckle correlation {params.speckle_correlation} is outside [0, 1]: give e.g. 0.8 (1 = frozen)"
        )
    if not 0 < params.dropout_gain <= 1:
        raise InputError(f"drop-out gain {params.dropout_gain} is outside (0, 1]: give 1 for no drop-out")
    extent = np.asarray(shape) * np.asarray(spacing)
    room = base_centre_mm(shape, spacing)
    outer_long = params.cavity_long_mm + params.wall_thickness_mm
    outer_short = params.cavity_short_mm + params.wall_thickness_mm
    if outer_long + MARGIN_MM > room[0] or outer_short + MARGIN_MM > min(room[1], room[2]):
        raise InputError(
            f"the ventricle ({outer_long:g} mm long, {2 * outer_short:g} mm wide with its wall) does not fit "
            f"in the {extent[0]:g} x {extent[1]:g} x {extent[2]:g} mm field of view: enlarge the grid or "
            "the spacing, or shrink the cavity"
        )


def _psf_transfer(
    shape: tuple[int, ...], spacing: tuple[float, ...], sigma_mm: tuple[float, ...]
) -> np.ndarray:
    """Gaussian PSF transfer function normalised to unit energy (speckle keeps the scatterer power)."""
    transfer = np.ones((1, 1, 1), dtype=np.float64)
    for axis, (n, step, sigma) in enumerate(zip(shape, spacing, sigma_mm, strict=True)):
        frequency = scipy.fft.fftfreq(n, d=step)
        profile = np.exp(-2.0 * (math.pi * sigma * frequency) ** 2)
        view = [1, 1, 1]
        view[axis] = n
        transfer = transfer * profile.reshape(view)
    transfer /= math.sqrt(np.mean(transfer**2))
    return transfer.astype(np.complex64)


def _complex_gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Circular complex Gaussian samples with unit mean power, complex64."""
    values = rng.standard_normal((*shape, 2), dtype=np.float32)
    values *= np.float32(math.sqrt(0.5))
    return values.view(np.complex64)[..., 0]


def _decorrelate(scatterers: np.ndarray, correlation: float, rng: np.random.Generator) -> None:
    """Advance a scatterer field by one frame of a unit-power AR(1) process, in place."""
    if correlation >= 1.0:
        return
    scatterers *= np.float32(correlation)
    scatterers += _complex_gaussian(rng, scatterers.shape) * np.float32(math.sqrt(1.0 - correlation**2))


class _Geometry:
    """Voxel positions relative to the centre of the base plane, in mm, shared by all frames."""

    def __init__(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
        self.shape = shape
        self.spacing = np.asarray(spacing)
        self.base_centre_mm = base_centre_mm(shape, spacing)
        grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
        offsets = [
            grid * np.float32(step) - np.float32(centre)
            for grid, step, centre in zip(grids, self.spacing, self.base_centre_mm, strict=True)
        ]
        self.radius = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2)
        safe_radius = np.maximum(self.radius, np.float32(1e-6))
        self.directions = [offset / safe_radius for offset in offsets]
        self.apical = offsets[0] <= 0
        self.azimuth_deg = np.degrees(np.arctan2(offsets[1], offsets[2]))

    def surface_radius(self, long_mm: float, short_mm: float) -> np.ndarray:
        """Distance from the base centre to a half-ellipsoid surface along each voxel's direction."""
        along = self.directions[0]
        across_sq = 1.0 - along**2
        return 1.0 / np.sqrt((along / np.float32(long_mm)) ** 2 + across_sq / np.float32(short_mm) ** 2)

    def nearest_index(self, radius_mm: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, ...]:
        """Nearest voxel of the points at ``radius_mm`` along the directions of the voxels ``where``."""
        index = []
        for axis in range(3):
            position = self.base_centre_mm[axis] + radius_mm * self.directions[axis][where]
            voxel = np.rint(position / self.spacing[axis]).astype(np.intp)
            index.append(np.clip(voxel, 0, self.shape[axis] - 1))
        return tuple(index)


def _dropout_gain(geometry: _Geometry, params: PhantomParameters) -> np.ndarray:
    """Amplitude gain map: ``dropout_gain`` inside the sector, 1 elsewhere."""
    angle = (geometry.azimuth_deg - params.dropout_centre_deg + 180.0) % 360.0 - 180.0
    inside = np.abs(angle) <= 0.5 * params.dropout_width_deg
    return np.where(inside, np.float32(params.dropout_gain), np.float32(1.0))


def _end_diastolic_radius(
    radius: np.ndarray, wall_now: tuple[np.ndarray, np.ndarray], wall_ed: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Radius at end-diastole of the myocardial material point now at ``radius`` on the same ray.

    Each ray's wall (endocardial, epicardial radius) maps onto its end-diastolic wall keeping the
    volume between the endocardium and the point (r^3 - r_endo^3) proportional to the wall's.
    """
    (endo, epi), (endo_ed, epi_ed) = wall_now, wall_ed
    fraction = (radius**3 - endo**3) / (epi**3 - endo**3)
    return np.cbrt(endo_ed**3 + fraction * (epi_ed**3 - endo_ed**3))


def _image_field(
    field: np.ndarray, psf: np.ndarray, params: PhantomParameters, rng: np.random.Generator
) -> np.ndarray:
    """Grey levels of a complex scatterer field: PSF convolution, electronic noise, envelope, log."""
    echo = scipy.fft.ifftn(scipy.fft.fftn(field) * psf)
    echo += _complex_gaussian(rng, field.shape) * np.float32(params.noise_level)
    return _log_compress(np.abs(echo), params)


def _log_compress(envelope: np.ndarray, params: PhantomParameters) -> np.ndarray:
    """Envelope (myocardial rms = 1) to grey levels in [0, 1] over the dynamic range."""
    decibels = 20.0 * np.log10(np.maximum(envelope, np.float32(1e-12)))
    grey = (decibels + np.float32(params.dynamic_range_db - params.headroom_db)) / np.float32(
        params.dynamic_range_db
    )
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def make_echo_phantom(
    shape: tuple[int, int, int] = (64, 64, 64),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_frames: int = 10,
    params: PhantomParameters = PhantomParameters(),
    seed: int | np.random.Generator = 0,
) -> EchoPhantom:
    """Simulate a 3D+t apical echo series of a beating left ventricle with its ground truth.

    Parameters
    ----------
    shape : tuple of int
        Grid ``(k, j, i)``; k is the beam (depth) axis, the apex points towards k = 0.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm (anatomy and PSF are defined in mm).
    n_frames : int
        Frames over one cardiac cycle (frame 0 = end-diastole), at least 3.
    params : PhantomParameters
        Anatomy, motion and imaging parameters.
    seed : int or numpy.random.Generator
        Seed of the scatterer and noise draws; the same seed gives the same series.

    Returns
    -------
    EchoPhantom
        Image ``(k, j, i, T)`` in [0, 1], truth labels, exact cavity volumes (ml), ED / ES frames.
    """
    spacing = check_spacing(spacing_mm)
    shape = tuple(int(n) for n in shape)
    _validate(shape, spacing, n_frames, params)
    rng = np.random.default_rng(seed)
    edv_ml = half_ellipsoid_volume_mm3(params.cavity_long_mm, params.cavity_short_mm) / 1000.0
    volumes = cycle_volumes_ml(n_frames, edv_ml, params.ejection_fraction, params.end_systole_phase)
    long, short, outer_long, outer_short, myocardium_mm3 = _semi_axes(volumes, params)
    geometry = _Geometry(shape, spacing)
    gain = _dropout_gain(geometry, params)
    psf = _psf_transfer(shape, spacing, params.psf_sigma_mm)
    myocardial_scatterers = _complex_gaussian(rng, shape)
    background_scatterers = _complex_gaussian(rng, shape)
    cavity_ed = geometry.surface_radius(long[0], short[0])
    epicardium_ed = geometry.surface_radius(outer_long[0], outer_short[0])
    image = np.empty((*shape, n_frames), dtype=np.float32)
    labels = np.zeros((*shape, n_frames), dtype=np.uint8)
    for frame in range(n_frames):
        cavity_radius = geometry.surface_radius(long[frame], short[frame])
        epicardium = geometry.surface_radius(outer_long[frame], outer_short[frame])
        cavity = geometry.apical & (geometry.radius <= cavity_radius)
        myocardium = geometry.apical & ~cavity & (geometry.radius <= epicardium)
        radius_ed = _end_diastolic_radius(
            geometry.radius[myocardium],
            (cavity_radius[myocardium], epicardium[myocardium]),
            (cavity_ed[myocardium], epicardium_ed[myocardium]),
        )
        if frame:
            _decorrelate(myocardial_scatterers, params.speckle_correlation, rng)
            _decorrelate(background_scatterers, params.speckle_correlation, rng)
        field = background_scatterers * np.float32(params.background_level)
        field[cavity] = _complex_gaussian(rng, (int(cavity.sum()),)) * np.float32(params.blood_level)
        field[myocardium] = myocardial_scatterers[geometry.nearest_index(radius_ed, myocardium)]
        field *= gain
        image[..., frame] = _image_field(field, psf, params, rng)
        labels[..., frame][cavity] = CAVITY
        labels[..., frame][myocardium] = MYOCARDIUM
    centroid_mm = geometry.base_centre_mm - np.array([3.0 / 8.0 * long[0], 0.0, 0.0])
    return EchoPhantom(
        image=image,
        spacing_mm=spacing,
        labels=labels,
        cavity_volumes_ml=volumes,
        myocardial_volume_ml=myocardium_mm3 / 1000.0,
        ed_frame=int(np.argmax(volumes)),
        es_frame=int(np.argmin(volumes)),
        cavity_centre_kji=tuple(float(c) for c in centroid_mm / np.asarray(spacing)),
        base_centre_kji=tuple(float(c) for c in geometry.base_centre_mm / np.asarray(spacing)),
        cavity_semi_axes_mm=np.stack([long, short], axis=1),
        epicardium_semi_axes_mm=np.stack([outer_long, outer_short], axis=1),
    )
