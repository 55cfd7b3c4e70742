"""Monogenic signal of 3D volumes and 3D+t series by log-Gabor filtering and the Riesz transform.

The monogenic signal (Felsberg & Sommer 2001, "The monogenic signal", IEEE Trans. Signal Process.
49:3136-3144) generalises the analytic signal to n dimensions: the image is band-passed by an isotropic
filter (the *even* part) and the Riesz transform of that band-passed image gives an n-vector *odd* part,

    even = F^-1[ G(|u|) I(u) ],    odd_a = F^-1[ -i u_a / |u| G(|u|) I(u) ],

from which the local amplitude A = sqrt(even^2 + |odd|^2), the local phase atan2(|odd|, even) and the
local orientation odd / |odd| follow. ``G`` is the log-Gabor transfer function of Field (1987,
J. Opt. Soc. Am. A 4:2379-2394), as used for local-phase features by Kovesi (1999, "Image features from
phase congruency", Videre 1(3)),

    G(rho) = exp( -ln(rho / f0)^2 / (2 ln(sigma_onf)^2) ),     f0 = 1 / wavelength,

built on physical frequencies (cycles per mm), so anisotropic voxel spacing is honoured. In 3D+t the
time axis is treated as a fourth dimension after scaling one frame to ``c`` mm (the space-time constant
of Mulet-Parada & Noble 2000, "2D+T acoustic boundary detection in echocardiography", Med. Image Anal.
4:21-30), which makes the filters and the Riesz transform four-dimensional.

Arrays: a volume is ``(k, j, i)`` with spacing ``(sk, sj, si)`` in mm; a series is ``(k, j, i, T)``
(time on the last axis, kept there for 4D work too: the half-spectrum axis of the real FFT is i, whose
160-sample transforms are much cheaper than 16-sample ones along T). Everything is computed in float32
/ complex64, and the transforms are periodic (features near the faces of the volume see the opposite
face).

Memory design. The forward transform (``scipy.fft.rfftn``) is taken once; each filter is built block by
block on the fly from the separable frequency axes and the stored log-radius; each inverse transform is
done in place on one complex work buffer over all but the half-spectrum axis, and the final real inverse
along that axis is done block by block, so callers receive the filtered image in small blocks and can
accumulate what they need without ever storing a full filter, a complex128 array or all scales at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft
from SpatioTemporalCommonLib.errors import InputError

AXIS_NAMES = ("k", "j", "i", "t")
HALF_AXIS = 2
"""The real-to-complex (half-spectrum) axis: i, long enough for efficient real transforms."""
BLOCK_ELEMENTS = 1 << 18
"""Approximate number of spectrum elements handled at once when building filters (cache sized)."""


@dataclass(frozen=True)
class LogGaborBank:
    """Parameters of a bank of isotropic log-Gabor band-pass filters.

    Parameters
    ----------
    n_scales : int
        Number of scales (filters), at least 1.
    min_wavelength_mm : float
        Wavelength of the smallest-scale filter, in mm.
    mult : float
        Ratio between the wavelengths of successive scales (> 1).
    sigma_onf : float
        Ratio of the standard deviation of the Gaussian describing the log-Gabor transfer function in
        the log-frequency domain to the centre frequency, in (0, 1); 0.55 gives about two octaves of
        bandwidth (Kovesi 1999).
    """

    n_scales: int = 3
    min_wavelength_mm: float = 4.0
    mult: float = 2.0
    sigma_onf: float = 0.55

    def __post_init__(self) -> None:
        if int(self.n_scales) != self.n_scales or self.n_scales < 1:
            raise InputError(f"number of scales {self.n_scales} is not a positive integer: give 1 or more")
        if not (math.isfinite(self.min_wavelength_mm) and self.min_wavelength_mm > 0):
            raise InputError(
                f"minimum wavelength {self.min_wavelength_mm} mm is not a positive number: give it in mm"
            )
        if not (math.isfinite(self.mult) and self.mult > 1):
            raise InputError(f"scale factor {self.mult} is not above 1: give a ratio such as 2")
        if not (0 < self.sigma_onf < 1):
            raise InputError(f"sigma_onf {self.sigma_onf} is outside (0, 1): give a value such as 0.55")

    @property
    def wavelengths_mm(self) -> tuple[float, ...]:
        """Centre wavelength of every scale, finest first, in mm."""
        return tuple(self.min_wavelength_mm * self.mult**s for s in range(self.n_scales))

    def check_grid(self, spatial_shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> None:
        """Refuse wavelengths below 2 voxels or above the field of view along any spatial axis.

        Parameters
        ----------
        spatial_shape : tuple of int
            Spatial shape ``(k, j, i)`` of the image, in voxels.
        spacing_mm : tuple of float
            Voxel spacing ``(sk, sj, si)`` in mm.

        Raises
        ------
        InputError
            When the smallest wavelength is under 2 voxels or the largest exceeds the field of view.
        """
        coarsest = int(np.argmax(spacing_mm))
        nyquist_mm = 2.0 * spacing_mm[coarsest]
        if self.min_wavelength_mm < nyquist_mm * (1 - 1e-9):
            raise InputError(
                f"minimum wavelength {self.min_wavelength_mm:g} mm is below 2 voxels along axis "
                f"{AXIS_NAMES[coarsest]} (spacing {spacing_mm[coarsest]:g} mm): give a minimum wavelength of "
                f"at least {nyquist_mm:g} mm"
            )
        extents = [n * s for n, s in zip(spatial_shape, spacing_mm, strict=True)]
        narrowest = int(np.argmin(extents))
        largest = self.wavelengths_mm[-1]
        if largest > extents[narrowest] * (1 + 1e-9):
            raise InputError(
                f"largest wavelength {largest:g} mm ({self.min_wavelength_mm:g} mm x {self.mult:g}^"
                f"{self.n_scales - 1}) exceeds the {extents[narrowest]:g} mm field of view along axis "
                f"{AXIS_NAMES[narrowest]}: use fewer scales, a smaller scale factor or a smaller minimum "
                "wavelength"
            )


DEFAULT_BANK = LogGaborBank()
"""Three scales of 4, 8 and 16 mm with about two octaves of bandwidth each."""


@dataclass(frozen=True)
class MonogenicSignal:
    """Monogenic signal of one image at one scale.

    Attributes
    ----------
    even : numpy.ndarray
        Band-passed image (same shape as the input), image units.
    odd : numpy.ndarray
        Riesz components, shape ``(n, *image.shape)`` with ``n`` = 3 (k, j, i) or 4 (k, j, i, t);
        the components are along physical (mm) axes.
    amplitude : numpy.ndarray
        Local amplitude sqrt(even^2 + |odd|^2), image units.
    phase : numpy.ndarray
        Local phase atan2(|odd|, even) in radians, in [0, pi].
    orientation : numpy.ndarray
        Unit vector odd / |odd|, shape ``(n, *image.shape)`` (zero where |odd| is zero).
    """

    even: np.ndarray
    odd: np.ndarray
    amplitude: np.ndarray
    phase: np.ndarray
    orientation: np.ndarray


def resolve_workers(workers: int | None) -> int:
    """Number of FFT threads: ``workers`` if given, else every CPU this process may use."""
    if workers is not None:
        if int(workers) != workers or workers < 1:
            raise InputError(f"workers {workers} is not a positive integer: give 1 or more threads")
        return int(workers)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_spacing(spacing_mm: tuple[float, ...] | np.ndarray, n_spatial: int = 3) -> tuple[float, ...]:
    """Validate a voxel spacing ``(sk, sj, si)`` in mm and return it as a tuple of floats."""
    values = tuple(float(s) for s in np.ravel(spacing_mm))
    if len(values) != n_spatial or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(
            f"voxel spacing {tuple(np.ravel(spacing_mm))} is not {n_spatial} positive numbers: give "
            "(sk, sj, si) in mm"
        )
    return values


def check_finite(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as float32 (without copying float32 input) after refusing NaN or infinity."""
    values = np.asarray(image, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InputError(
            "the image contains NaN or infinite values: replace them (e.g. by the background level) first"
        )
    return values


class MonogenicFilterer:
    """Fourier-domain log-Gabor / Riesz filtering of a volume or a series, delivered in blocks.

    Parameters
    ----------
    image : numpy.ndarray
        A volume ``(k, j, i)`` or a series ``(k, j, i, T)``, any real dtype (used as float32).
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    space_time_mm_per_frame : float or None
        For a series: the space-time constant ``c`` (mm per frame) that makes the transform 4D, or
        None to filter every frame as its own 3D volume (time is then a batch axis).
    workers : int or None
        Threads for the transforms and the block-wise arithmetic (default: every CPU available).

    Notes
    -----
    The large arrays held are the complex64 half-spectrum, one complex64 work buffer of the same size
    and the float32 log-radius of the frequency grid: about 2.5 times the input's float32 size in all.
    :meth:`even` and :meth:`odd` call ``consume(slab, block)`` for blocks that tile the output along
    the first (k) axis; calls for different blocks may run concurrently in ``workers`` threads, so
    ``consume`` must only write to the part of its outputs selected by ``slab``.
    """

    def __init__(
        self,
        image: np.ndarray,
        spacing_mm: tuple[float, float, float],
        *,
        space_time_mm_per_frame: float | None = None,
        workers: int | None = None,
    ) -> None:
        if image.ndim not in (3, 4):
            raise InputError(
                f"image has {image.ndim} dimensions: give a volume (k, j, i) or a series (k, j, i, T)"
            )
        if space_time_mm_per_frame is not None:
            if image.ndim != 4:
                raise InputError("a space-time constant needs a series (k, j, i, T): give a 4D array")
            if not (math.isfinite(space_time_mm_per_frame) and space_time_mm_per_frame > 0):
                raise InputError(
                    f"space-time constant {space_time_mm_per_frame} is not a positive number: give mm "
                    "per frame"
                )
        self.spacing_mm = check_spacing(spacing_mm)
        self.shape = image.shape
        self.workers = resolve_workers(workers)
        steps = list(self.spacing_mm)
        if space_time_mm_per_frame is not None:
            steps.append(float(space_time_mm_per_frame))
        self.n_dims = len(steps)
        self._c2c_axes = tuple(axis for axis in range(self.n_dims) if axis != HALF_AXIS)
        self._spectrum = scipy.fft.rfftn(
            check_finite(image), axes=(*self._c2c_axes, HALF_AXIS), workers=self.workers
        )
        self._work = np.empty_like(self._spectrum)
        self._frequencies = self._frequency_axes(steps)
        self._block = max(1, BLOCK_ELEMENTS // max(self._spectrum[0].size, 1))
        self._log_radius = np.empty(self._spectrum.shape, dtype=np.float32)
        self._run(self._fill_log_radius)

    def _frequency_axes(self, steps: list[float]) -> list[np.ndarray]:
        """Frequency (cycles per mm) along each transform axis, shaped to broadcast on the spectrum."""
        axes = []
        for axis, step in enumerate(steps):
            n = self.shape[axis]
            values = scipy.fft.rfftfreq(n, d=step) if axis == HALF_AXIS else scipy.fft.fftfreq(n, d=step)
            shape = [1] * self._spectrum.ndim
            shape[axis] = values.size
            axes.append(values.astype(np.float32).reshape(shape))
        return axes

    def _run(self, task: Callable[[slice], None]) -> None:
        """Apply ``task`` to every block along k, in ``workers`` threads."""
        n = self._spectrum.shape[0]
        slabs = [slice(start, min(start + self._block, n)) for start in range(0, n, self._block)]
        if self.workers == 1:
            for slab in slabs:
                task(slab)
            return
        with ThreadPoolExecutor(self.workers) as pool:
            for _ in pool.map(task, slabs):
                pass

    def _fill_log_radius(self, slab: slice) -> None:
        """Natural log of |u| (cycles per mm) on one block; 0 stands in at the zero frequency."""
        radius_sq = np.square(self._frequencies[0][slab])
        for frequency in self._frequencies[1:]:
            radius_sq = radius_sq + np.square(frequency)
        if slab.start == 0:
            radius_sq[self._dc_index()] = 1.0
        out = self._log_radius[slab]
        np.log(radius_sq, out=out)
        out *= np.float32(0.5)

    def _dc_index(self) -> tuple:
        """Index of the zero frequency within the first block (every frame's, for a batch axis)."""
        return tuple([0] * self.n_dims + [slice(None)] * (self._spectrum.ndim - self.n_dims))

    def _log_gabor(
        self, slab: slice, wavelength_mm: float, sigma_onf: float, radius_power: int
    ) -> np.ndarray:
        """Log-Gabor transfer function times |u|^radius_power on one block (float32, zero at DC)."""
        log_radius = self._log_radius[slab]
        exponent = log_radius + np.float32(math.log(wavelength_mm))
        np.square(exponent, out=exponent)
        exponent *= np.float32(-1.0 / (2.0 * math.log(sigma_onf) ** 2))
        if radius_power:
            exponent += np.float32(radius_power) * log_radius
        transfer = np.exp(exponent, out=exponent)
        if slab.start == 0:
            transfer[self._dc_index()] = 0.0
        return transfer

    def _inverse(self, fill: Callable[[slice], None], consume: Callable[[slice, np.ndarray], None]) -> None:
        """Let ``fill`` write the filtered spectrum into the work buffer, invert, feed ``consume``."""
        self._run(fill)
        transformed = scipy.fft.ifftn(self._work, axes=self._c2c_axes, overwrite_x=True, workers=self.workers)

        def finish(slab: slice) -> None:
            consume(slab, scipy.fft.irfft(transformed[slab], n=self.shape[HALF_AXIS], axis=HALF_AXIS))

        self._run(finish)

    def even(
        self, wavelength_mm: float, sigma_onf: float, consume: Callable[[slice, np.ndarray], None]
    ) -> None:
        """Band-pass the image at one scale and hand the result (the even part) to ``consume``.

        Parameters
        ----------
        wavelength_mm : float
            Centre wavelength of the log-Gabor filter, in mm.
        sigma_onf : float
            Bandwidth parameter of the log-Gabor filter, in (0, 1).
        consume : callable
            ``consume(slab, block)``: ``block`` (float32, image units) is the output at ``[slab]``
            along the first axis; it may be modified in place.
        """

        def fill(slab: slice) -> None:
            np.multiply(
                self._spectrum[slab], self._log_gabor(slab, wavelength_mm, sigma_onf, 0), out=self._work[slab]
            )

        self._inverse(fill, consume)

    def odd(
        self, axis: int, wavelength_mm: float, sigma_onf: float, consume: Callable[[slice, np.ndarray], None]
    ) -> None:
        """Riesz component ``axis`` of the band-passed image, handed to ``consume`` block by block.

        Parameters
        ----------
        axis : int
            Component of the Riesz transform along a physical axis: 0 = k, 1 = j, 2 = i, 3 = t (4D only).
        wavelength_mm : float
            Centre wavelength of the log-Gabor filter, in mm.
        sigma_onf : float
            Bandwidth parameter of the log-Gabor filter, in (0, 1).
        consume : callable
            ``consume(slab, block)`` as for :meth:`even`.

        Notes
        -----
        For an even number of samples along ``axis`` the Nyquist frequency is its own mirror image,
        where -i u / |u| cannot be odd-symmetric; the component is set to zero there (as for the
        discrete Hilbert transform), so that the result is the Riesz transform of a real image.
        """
        if not 0 <= axis < self.n_dims:
            raise InputError(f"Riesz component {axis} does not exist: give 0..{self.n_dims - 1}")
        frequency = self._frequencies[axis].copy()
        if self.shape[axis] % 2 == 0:
            nyquist = [0] * frequency.ndim
            nyquist[axis] = self.shape[axis] // 2
            frequency[tuple(nyquist)] = 0
        spectrum = _real_imaginary(self._spectrum)
        work = _real_imaginary(self._work)

        def fill(slab: slice) -> None:
            # work = -i u_a G(|u|) / |u| spectrum, written as (re, im) = (u_a g im_s, -u_a g re_s)
            weight = self._log_gabor(slab, wavelength_mm, sigma_onf, -1)
            weight *= frequency[slab] if axis == 0 else frequency
            np.multiply(spectrum[slab][..., 1], weight, out=work[slab][..., 0])
            np.negative(weight, out=weight)
            np.multiply(spectrum[slab][..., 0], weight, out=work[slab][..., 1])

        self._inverse(fill, consume)


def _real_imaginary(values: np.ndarray) -> np.ndarray:
    """Float32 view of a complex64 array with a last axis of length 2 (real, imaginary)."""
    return values.view(np.float32).reshape(*values.shape, 2)


def _writer(target: np.ndarray) -> Callable[[slice, np.ndarray], None]:
    """A ``consume`` callback that stores each block into ``target``."""

    def write(slab: slice, block: np.ndarray) -> None:
        target[slab] = block

    return write


def monogenic_signal(
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    wavelength_mm: float,
    sigma_onf: float = 0.55,
    *,
    space_time_mm_per_frame: float | None = None,
    workers: int | None = None,
) -> MonogenicSignal:
    """Monogenic signal of a volume (3D) or a series (4D with a space-time constant) at one scale.

    Parameters
    ----------
    image : numpy.ndarray
        Volume ``(k, j, i)`` or series ``(k, j, i, T)``.
    spacing_mm : tuple of float
        Voxel spacing ``(sk, sj, si)`` in mm.
    wavelength_mm : float
        Centre wavelength of the log-Gabor filter, in mm.
    sigma_onf : float
        Log-Gabor bandwidth parameter, in (0, 1).
    space_time_mm_per_frame : float or None
        For a series: ``c`` in mm per frame (4D transform); None filters each frame in 3D.
    workers : int or None
        FFT threads (default: all available CPUs).

    Returns
    -------
    MonogenicSignal
        Even part, Riesz components, amplitude, phase (rad) and orientation, all float32.
    """
    bank = LogGaborBank(n_scales=1, min_wavelength_mm=wavelength_mm, sigma_onf=sigma_onf)
    filterer = MonogenicFilterer(
        image, spacing_mm, space_time_mm_per_frame=space_time_mm_per_frame, workers=workers
    )
    bank.check_grid(image.shape[:3], filterer.spacing_mm)
    even = np.empty(image.shape, dtype=np.float32)
    odd = np.empty((filterer.n_dims, *image.shape), dtype=np.float32)
    filterer.even(wavelength_mm, sigma_onf, _writer(even))
    for axis in range(filterer.n_dims):
        filterer.odd(axis, wavelength_mm, sigma_onf, _writer(odd[axis]))
    odd_norm = np.sqrt(np.einsum("a...,a...->...", odd, odd))
    amplitude = np.hypot(even, odd_norm)
    phase = np.arctan2(odd_norm, even)
    with np.errstate(invalid="ignore", divide="ignore"):
        orientation = np.where(odd_norm > 0, odd / odd_norm, np.float32(0)).astype(np.float32)
    return MonogenicSignal(even, odd, amplitude, phase, orientation)
