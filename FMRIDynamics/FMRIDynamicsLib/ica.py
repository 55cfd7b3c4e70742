"""Independent component analysis (ICA) of BOLD series: spatial ICA and selective temporal-ICA clean-up.

Both decompositions reduce the data by principal component analysis (PCA), whiten the retained
components and rotate them with symmetric FastICA using the log-cosh contrast (``G(u) = log cosh u``,
``g(u) = tanh u``; Hyvarinen 1999), started from a seeded random orthogonal matrix.

Spatial ICA (McKeown et al. 1998; Beckmann & Smith 2004) treats voxels as samples: the components
are spatially independent maps, each with a time course, and ``data ~ mean + maps.T @ time_courses``.

The selective clean-up (Glasser et al. 2018) runs temporal ICA, which treats frames as samples: the
components are temporally independent time courses, each with a spatial map. Only components whose
time course correlates with a given nuisance signal (e.g. respiration, cardiac, global motion)
beyond a threshold are subtracted; the rest of the data, including any global neural signal in other
components and everything outside the retained PCA subspace, is kept unchanged.

References
----------
Hyvarinen A. Fast and robust fixed-point algorithms for independent component analysis. IEEE Trans
Neural Netw 1999;10:626-634.
McKeown MJ, Makeig S, Brown GG, Jung TP, Kindermann SS, Bell AJ, Sejnowski TJ. Analysis of fMRI data by
blind separation into independent spatial components. Hum Brain Mapp 1998;6:160-188.
Beckmann CF, Smith SM. Probabilistic independent component analysis for functional magnetic resonance
imaging. IEEE Trans Med Imaging 2004;23:137-152.
Glasser MF, Coalson TS, Bijsterbosch JD, et al. Using temporal ICA to selectively remove global noise
while preserving global signal in functional MRI data. NeuroImage 2018;181:692-717.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from SpatioTemporalCommonLib.errors import InputError


@dataclass(frozen=True)
class FastICAResult:
    """Unmixing of whitened signals.

    Attributes
    ----------
    unmixing : numpy.ndarray
        Orthogonal ``(n, n)`` matrix; sources are ``unmixing @ whitened``.
    n_iterations : int
        Fixed-point iterations run.
    converged : bool
        Whether the change fell below the tolerance within the iteration limit.
    """

    unmixing: np.ndarray
    n_iterations: int
    converged: bool


def _symmetric_decorrelation(matrix: np.ndarray) -> np.ndarray:
    """``(W W^T)^(-1/2) W``: the orthogonal matrix closest to ``W``."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix @ matrix.T)
    return (eigenvectors / np.sqrt(np.maximum(eigenvalues, np.finfo(float).tiny))) @ eigenvectors.T @ matrix


def fastica(
    whitened: np.ndarray, rng: np.random.Generator, max_iterations: int = 500, tolerance: float = 1e-6
) -> FastICAResult:
    """Symmetric FastICA with the log-cosh contrast.

    Parameters
    ----------
    whitened : numpy.ndarray
        ``(n, n_samples)`` zero-mean signals with identity covariance.
    rng : numpy.random.Generator
        Source of the initial orthogonal matrix.
    max_iterations : int
        Iteration limit.
    tolerance : float
        Convergence when ``max |1 - |diag(W_new W_old^T)|| < tolerance``.

    Returns
    -------
    FastICAResult
    """
    n_components, n_samples = whitened.shape
    unmixing = _symmetric_decorrelation(rng.standard_normal((n_components, n_components)))
    for iteration in range(1, max_iterations + 1):
        nonlinearity = np.tanh(unmixing @ whitened)
        slope = 1.0 - nonlinearity**2
        updated = _symmetric_decorrelation(
            nonlinearity @ whitened.T / n_samples - slope.mean(axis=1)[:, None] * unmixing
        )
        change = np.max(np.abs(1.0 - np.abs(np.sum(updated * unmixing, axis=1))))
        unmixing = updated
        if change < tolerance:
            return FastICAResult(unmixing, iteration, True)
    return FastICAResult(unmixing, max_iterations, False)


def _leading_components(matrix: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leading singular triplets ``(U_n, s_n, Vt_n)`` of a tall or wide matrix via its small Gram matrix."""
    wide = matrix.shape[0] < matrix.shape[1]
    gram = matrix @ matrix.T if wide else matrix.T @ matrix
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:n_components]
    singular = np.sqrt(np.maximum(eigenvalues[order], 0.0))
    if np.any(singular <= singular[0] * 1e-10):
        raise InputError(
            f"the data have fewer than {n_components} independent components: ask for fewer components"
        )
    small = eigenvectors[:, order]
    other = (matrix.T @ small if wide else matrix @ small) / singular
    return (small, singular, other.T) if wide else (other, singular, small.T)


def _check_series(data: np.ndarray, n_components: int) -> np.ndarray:
    data = np.asarray(data, dtype=float)
    if data.ndim < 2:
        raise InputError(f"data of shape {data.shape} are not series (..., T): put time on the last axis")
    series = data.reshape(-1, data.shape[-1])
    if not np.all(np.isfinite(series)):
        raise InputError("the data contain NaN or infinity: mask or fill those voxels before ICA")
    if not 1 <= n_components < min(series.shape):
        raise InputError(
            f"{n_components} components do not fit {series.shape[0]} voxels x {series.shape[1]} frames: "
            f"ask for 1 to {min(series.shape) - 1}"
        )
    return series


def _sign_by_skewness(sources: np.ndarray) -> np.ndarray:
    """+1 or -1 per row so that each source has a positive third moment (heavy tail positive)."""
    return np.where(np.mean(sources**3, axis=1) < 0, -1.0, 1.0)


@dataclass(frozen=True)
class SpatialICA:
    """Spatially independent components.

    Attributes
    ----------
    maps : numpy.ndarray
        ``(n_components, ...)`` unit-variance spatial maps, signed so their heavy tail is positive,
        ordered by the variance their component explains.
    time_courses : numpy.ndarray
        ``(n_components, T)`` time courses in data units: ``data ~ mean + maps.T @ time_courses``.
    explained_variance_ratio : numpy.ndarray
        ``(n_components,)`` fraction of the centred data variance each component explains.
    converged : bool
        Whether FastICA converged.
    n_iterations : int
        FastICA iterations.
    """

    maps: np.ndarray
    time_courses: np.ndarray
    explained_variance_ratio: np.ndarray
    converged: bool
    n_iterations: int


def spatial_ica(
    data: np.ndarray,
    n_components: int,
    seed: int | np.random.Generator = 0,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> SpatialICA:
    """Spatial ICA of BOLD series.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)`` (e.g. masked voxels ``(n_voxels, T)``).
    n_components : int
        Number of components (PCA dimensions kept).
    seed : int or numpy.random.Generator
        Seed of the FastICA start.
    max_iterations, tolerance
        FastICA stopping rule.

    Returns
    -------
    SpatialICA
    """
    series = _check_series(data, n_components)
    centred = series - series.mean(axis=1, keepdims=True)
    centred -= centred.mean(axis=0, keepdims=True)
    spatial, _, _ = _leading_components(centred, n_components)
    whitened = spatial.T * np.sqrt(series.shape[0])
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    result = fastica(whitened, rng, max_iterations, tolerance)
    maps = result.unmixing @ whitened
    maps *= _sign_by_skewness(maps)[:, None]
    time_courses = maps @ centred / series.shape[0]
    explained = np.sum(time_courses**2, axis=1) * series.shape[0] / np.sum(centred**2)
    order = np.argsort(explained)[::-1]
    return SpatialICA(
        maps=maps[order].reshape(n_components, *np.shape(data)[:-1]),
        time_courses=time_courses[order],
        explained_variance_ratio=explained[order],
        converged=result.converged,
        n_iterations=result.n_iterations,
    )


@dataclass(frozen=True)
class TemporalICACleanup:
    """Result of the selective temporal-ICA clean-up.

    Attributes
    ----------
    cleaned : numpy.ndarray
        Data ``(..., T)`` with the nuisance components subtracted.
    removed : numpy.ndarray
        Indices of the removed components.
    correlations : numpy.ndarray
        ``(n_components, n_nuisance)`` Pearson correlation of each component time course with each
        nuisance signal.
    time_courses : numpy.ndarray
        ``(n_components, T)`` unit-variance, temporally independent time courses.
    maps : numpy.ndarray
        ``(n_components, ...)`` spatial maps in data units: the data carry
        ``maps.T @ time_courses`` from these components.
    converged : bool
        Whether FastICA converged.
    """

    cleaned: np.ndarray
    removed: np.ndarray
    correlations: np.ndarray
    time_courses: np.ndarray
    maps: np.ndarray
    converged: bool


def _correlation_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation between each row of ``first`` and each row of ``second``."""
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    first = first / np.linalg.norm(first, axis=1, keepdims=True)
    second = second / np.linalg.norm(second, axis=1, keepdims=True)
    return first @ second.T


def temporal_ica_cleanup(
    data: np.ndarray,
    nuisance: np.ndarray,
    n_components: int,
    threshold: float = 0.5,
    seed: int | np.random.Generator = 0,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> TemporalICACleanup:
    """Remove only the temporal ICA components that match nuisance signals.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)``.
    nuisance : numpy.ndarray
        ``(n_nuisance, T)`` or ``(T,)`` nuisance signals (e.g. physiological recordings resampled to
        the frames).
    n_components : int
        PCA dimensions kept for temporal ICA (well below ``T``).
    threshold : float
        A component is removed when ``|r|`` with any nuisance signal reaches this value, in (0, 1].
    seed : int or numpy.random.Generator
        Seed of the FastICA start.
    max_iterations, tolerance
        FastICA stopping rule.

    Returns
    -------
    TemporalICACleanup
    """
    series = _check_series(data, n_components)
    n_frames = series.shape[1]
    nuisance = np.atleast_2d(np.asarray(nuisance, dtype=float))
    if (
        nuisance.shape[1] != n_frames
        or not np.all(np.isfinite(nuisance))
        or np.any(np.ptp(nuisance, axis=1) == 0)
    ):
        raise InputError(
            f"nuisance signals of shape {nuisance.shape} are not finite, non-constant series of "
            f"{n_frames} frames: "
            "give (n_signals, T)"
        )
    if not 0 < threshold <= 1:
        raise InputError(f"correlation threshold {threshold} is outside (0, 1]: use e.g. 0.5")
    mean = series.mean(axis=1, keepdims=True)
    centred = series - mean
    _, _, temporal = _leading_components(centred, n_components)
    whitened = temporal * np.sqrt(n_frames)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    result = fastica(whitened, rng, max_iterations, tolerance)
    time_courses = result.unmixing @ whitened
    time_courses *= _sign_by_skewness(time_courses)[:, None]
    maps = centred @ time_courses.T / n_frames
    correlations = _correlation_matrix(time_courses, nuisance)
    removed = np.flatnonzero(np.max(np.abs(correlations), axis=1) >= threshold)
    cleaned = series - maps[:, removed] @ time_courses[removed]
    return TemporalICACleanup(
        cleaned=cleaned.reshape(np.shape(data)),
        removed=removed,
        correlations=correlations,
        time_courses=time_courses,
        maps=maps.T.reshape(n_components, *np.shape(data)[:-1]),
        converged=result.converged,
    )
