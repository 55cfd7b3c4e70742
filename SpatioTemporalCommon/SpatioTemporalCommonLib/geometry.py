"""Voxel geometry: where the voxels of an array lie in patient (RAS) space.

Slicer stores a volume as an array indexed ``(k, j, i)`` and a 4x4 IJK-to-RAS matrix that maps the
voxel index ``(i, j, k, 1)`` to millimetres in RAS. :class:`VolumeGeometry` carries that matrix and
the array shape, so every derived map can be placed on exactly the input's voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Largest allowed difference between two geometries' matrix entries (mm) to count as the same grid.
GEOMETRY_TOLERANCE_MM = 1e-4


@dataclass(frozen=True)
class VolumeGeometry:
    """The voxel grid of a volume.

    Parameters
    ----------
    ijk_to_ras : ndarray, shape (4, 4)
        Maps voxel indices ``(i, j, k, 1)`` to RAS millimetres.
    shape : tuple of int
        Array shape ``(k, j, i)``.
    """

    ijk_to_ras: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        matrix = np.array(self.ijk_to_ras, dtype=float)
        if matrix.shape != (4, 4):
            raise ValueError(f"IJK-to-RAS must be 4x4, got {matrix.shape}")
        matrix.setflags(write=False)
        object.__setattr__(self, "ijk_to_ras", matrix)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def spacing_ijk(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm (Slicer's ``GetSpacing`` order)."""
        return tuple(float(v) for v in np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0))

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Voxel size along the array axes ``(k, j, i)`` in mm (the order science functions take)."""
        return self.spacing_ijk[::-1]

    @property
    def origin_ras(self) -> tuple[float, float, float]:
        """RAS position of the centre of voxel (0, 0, 0) in mm."""
        return tuple(float(v) for v in self.ijk_to_ras[:3, 3])

    @property
    def directions(self) -> np.ndarray:
        """Unit direction vectors of the i, j, k axes in RAS, as the columns of a 3x3 matrix."""
        return self.ijk_to_ras[:3, :3] / np.array(self.spacing_ijk)

    def ras_to_kji(self, point_ras) -> np.ndarray:
        """Continuous voxel coordinates ``(k, j, i)`` of a RAS point (mm); voxel centres are integers."""
        ijk = np.linalg.solve(self.ijk_to_ras, np.array([*np.asarray(point_ras, float).ravel()[:3], 1.0]))[:3]
        return ijk[::-1]

    def kji_to_ras(self, point_kji) -> tuple[float, float, float]:
        """RAS position (mm) of voxel coordinates ``(k, j, i)``."""
        return tuple(float(v) for v in (self.ijk_to_ras @ np.array([*np.asarray(point_kji, float)[::-1], 1.0]))[:3])

    def contains_kji(self, point_kji) -> bool:
        """Whether voxel coordinates ``(k, j, i)`` fall inside the grid (within half a voxel of a centre)."""
        point = np.asarray(point_kji, float)
        return bool(np.all(point >= -0.5) and np.all(point <= np.array(self.shape) - 0.5))

    def mismatch(self, other: VolumeGeometry, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> str | None:
        """Describe how ``other`` differs from this grid, or return None when they are the same."""
        if self.shape != other.shape:
            return f"size {_format_kji(self.shape)} vs {_format_kji(other.shape)}"
        if not np.allclose(self.spacing_ijk, other.spacing_ijk, rtol=0, atol=tolerance_mm):
            return f"spacing {_format_mm(self.spacing_ijk)} vs {_format_mm(other.spacing_ijk)}"
        if not np.allclose(self.origin_ras, other.origin_ras, rtol=0, atol=tolerance_mm):
            return f"origin {_format_mm(self.origin_ras)} vs {_format_mm(other.origin_ras)}"
        if not np.allclose(self.ijk_to_ras, other.ijk_to_ras, rtol=0, atol=tolerance_mm):
            return "axis directions differ"
        return None


def geometry_from_affine(affine_ras: np.ndarray, shape_kji: tuple[int, int, int]) -> VolumeGeometry:
    """Build a geometry from an IJK-to-RAS affine, refusing grids Slicer cannot represent.

    Parameters
    ----------
    affine_ras : ndarray, shape (4, 4)
        Maps ``(i, j, k, 1)`` to RAS mm (the NIfTI / nibabel convention).
    shape_kji : tuple of int
        Array shape ``(k, j, i)``.

    Raises
    ------
    InputError
        If the axes are sheared (not orthogonal) or a voxel size is zero.
    """
    affine = np.asarray(affine_ras, dtype=float)
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms <= 0):
        raise InputError("the image has a zero voxel size: fix the header's voxel spacing")
    unit = columns / norms
    if not np.allclose(unit.T @ unit, np.eye(3), atol=1e-4):
        raise InputError(
            "the image axes are sheared (not orthogonal), which Slicer cannot represent: "
            "resample the image onto an orthogonal grid first"
        )
    return VolumeGeometry(affine, shape_kji)


def lps_to_ras_affine(direction: np.ndarray, spacing: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Convert ITK geometry (LPS direction, spacing, origin) to an IJK-to-RAS affine.

    Parameters
    ----------
    direction : ndarray, shape (3, 3)
        ITK direction cosines (columns are the i, j, k axes in LPS).
    spacing : ndarray, shape (3,)
        Voxel size along i, j, k in mm.
    origin : ndarray, shape (3,)
        LPS position of voxel (0, 0, 0) in mm.
    """
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ np.asarray(direction, float) @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = lps_to_ras @ np.asarray(origin, float)
    return affine


def _format_kji(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape[::-1]) + " (i x j x k)"


def _format_mm(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ") mm"
