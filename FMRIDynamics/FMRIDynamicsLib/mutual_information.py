"""Model-free timing of event-related BOLD responses by mutual information (MI).

Following Fuhrmann Alpert et al. (2007), each frame carries a condition label (0 for no event
onset, otherwise the trial type whose event starts in that frame). For every delay ``d`` TRs, the MI
between the label of frame ``n`` and the response of frame ``n + d`` measures how much the
response at that delay tells about the stimulus, with no assumption on the HRF shape. Responses are
quantised per voxel into equally populated bins (by rank over the series). The limited-sampling bias
of the plug-in MI estimate is removed by subtracting the mean MI obtained with the labels randomly
permuted (Panzeri et al. 2007); the same permutations give a significance level for the maximum over
delays (a family-wise p-value across delays).

Outputs per voxel: the bias-corrected MI at each delay, the preferred time (delay of maximum MI, in
s), the MI at that time (bits) and the permutation p-value. All voxels are processed together: the
joint label/response counts of all voxels and permutations are one matrix product per delay.

References
----------
Fuhrmann Alpert G, Sun FT, Handwerker D, D'Esposito M, Knight RT. Spatio-temporal information analysis
of event-related BOLD responses. NeuroImage 2007;34:1545-1561.
Panzeri S, Senatore R, Montemurro MA, Petersen RS. Correcting for the sampling bias problem in spike
train information measures. J Neurophysiol 2007;98:1064-1072.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special
from SpatioTemporalCommonLib.errors import InputError

from FMRIDynamicsLib.cleaning import check_tr, varying_series_mask
from FMRIDynamicsLib.glm import Events

COUNT_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class MutualInformationMaps:
    """Mutual information between condition labels and delayed responses.

    Attributes
    ----------
    delays : numpy.ndarray
        Delays after onset, in s ``(n_delays,)``.
    information : numpy.ndarray
        Bias-corrected MI in bits, ``(..., n_delays)``.
    preferred_time : numpy.ndarray
        Delay of maximum corrected MI, in s.
    amplitude : numpy.ndarray
        Corrected MI at the preferred time, in bits.
    p_value : numpy.ndarray
        Permutation p-value of the maximum MI over delays, in ``[1 / (n_shuffles + 1), 1]``.
    n_failed : int
        Voxels with non-finite or constant series (NaN outputs).
    """

    delays: np.ndarray
    information: np.ndarray
    preferred_time: np.ndarray
    amplitude: np.ndarray
    p_value: np.ndarray
    n_failed: int


def frame_labels(events: Events, n_frames: int, tr: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label each frame with the trial type of an event starting in it.

    Parameters
    ----------
    events : Events
        Experimental events (onsets in s from the first frame).
    n_frames : int
        Number of frames.
    tr : float
        Repetition time, in s.

    Returns
    -------
    labels : numpy.ndarray
        ``(n_frames,)`` integers: 0 where no event starts, ``c + 1`` for the ``c``-th trial type.
    trial_types : tuple of str
        Trial types in label order (label 1 first).

    Raises
    ------
    InputError
        When an onset lies outside the scan or two events start in the same frame.
    """
    index = np.floor(events.onset / tr).astype(int)
    if np.any((index < 0) | (index >= n_frames)):
        raise InputError(
            f"event onsets must lie within the scan [0, {n_frames * tr:g}) s: check onsets and TR"
        )
    if np.unique(index).size != index.size:
        raise InputError("two events start in the same frame: MI labels need at most one onset per TR")
    trial_types = events.trial_types
    labels = np.zeros(n_frames, dtype=int)
    labels[index] = [trial_types.index(name) + 1 for name in events.trial_type]
    return labels, trial_types


def rank_bins(data: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantise each series into equally populated bins by rank.

    Parameters
    ----------
    data : numpy.ndarray
        Series ``(..., T)``.
    n_bins : int
        Number of bins.

    Returns
    -------
    numpy.ndarray
        Integer bins in ``0 .. n_bins - 1`` of the same shape (ties broken by time order).
    """
    ranks = np.argsort(np.argsort(data, axis=-1, kind="stable"), axis=-1, kind="stable")
    return (ranks * n_bins) // data.shape[-1]


def _information_per_delay(label_matrix: np.ndarray, response_matrix: np.ndarray, delay: int) -> np.ndarray:
    """Plug-in MI (bits) between permuted labels and responses ``delay`` frames later.

    ``label_matrix`` is the one-hot ``(n_permutations, n_labels, T)`` of the permuted labels and
    ``response_matrix`` the one-hot ``(T, V, n_bins)`` of the response bins; returns
    ``(n_permutations, V)``. With ``N`` pairs and ``f(n) = n log2 n``,
    ``MI = (sum f(n_lb) - sum f(n_l) - sum f(n_b)) / N + log2 N``.
    """
    n_permutations, n_labels, n_frames = label_matrix.shape
    _, n_voxels, n_bins = response_matrix.shape
    n_pairs = n_frames - delay
    n_log_n = special.xlogy(np.arange(n_pairs + 1), np.arange(n_pairs + 1)) / np.log(2.0)
    labels = label_matrix.reshape(-1, n_frames)[:, :n_pairs]
    responses = response_matrix[delay:].reshape(n_pairs, -1)
    joint = n_log_n[(labels @ responses).astype(np.intp)]
    joint_term = (
        joint.reshape(n_permutations, n_labels, -1).sum(axis=1).reshape(n_permutations, n_voxels, n_bins)
    )
    label_counts = labels.sum(axis=-1).astype(np.intp).reshape(n_permutations, n_labels)
    response_counts = responses.sum(axis=0).astype(np.intp).reshape(n_voxels, n_bins)
    label_term = n_log_n[label_counts].sum(axis=-1)[:, None]
    response_term = n_log_n[response_counts].sum(axis=-1)[None, :]
    return (joint_term.sum(axis=-1) - label_term - response_term) / n_pairs + np.log2(n_pairs)


def mutual_information_time_maps(
    data: np.ndarray,
    labels: np.ndarray,
    tr: float,
    max_delay: float = 20.0,
    n_bins: int = 4,
    n_shuffles: int = 100,
    seed: int | np.random.Generator = 0,
    binary: bool = False,
) -> MutualInformationMaps:
    """Bias-corrected MI between condition labels and the response at each delay after onset.

    Parameters
    ----------
    data : numpy.ndarray
        BOLD series ``(..., T)``.
    labels : numpy.ndarray
        ``(T,)`` non-negative integer label per frame (0: no event onset), e.g. from `frame_labels`.
    tr : float
        Repetition time, in s.
    max_delay : float
        Largest delay, in s; delays ``0, tr, ..., floor(max_delay / tr) * tr`` are evaluated.
    n_bins : int
        Equally populated response bins per voxel.
    n_shuffles : int
        Label permutations for bias correction and the p-value.
    seed : int or numpy.random.Generator
        Seed of the permutations.
    binary : bool
        Collapse all trial types into one "event" label (event vs no event).

    Returns
    -------
    MutualInformationMaps
    """
    data = np.asarray(data, dtype=float)
    labels = np.asarray(labels)
    n_frames = data.shape[-1]
    _check_inputs(labels, n_frames, tr, max_delay, n_bins, n_shuffles)
    if binary:
        labels = (labels > 0).astype(int)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    permutations = np.vstack([np.arange(n_frames)] + [rng.permutation(n_frames) for _ in range(n_shuffles)])
    label_matrix = (labels[permutations][:, None, :] == np.unique(labels)[:, None]).astype(np.float32)
    series = data.reshape(-1, n_frames)
    usable = varying_series_mask(series)
    n_delays = int(np.floor(max_delay / tr)) + 1
    raw = _raw_information(rank_bins(series[usable], n_bins), label_matrix, n_bins, n_delays)
    corrected = raw[0] - raw[1:].mean(axis=0)
    best = np.argmax(corrected, axis=-1)
    exceed = np.sum(raw[1:].max(axis=-1) >= raw[0].max(axis=-1), axis=0)
    spatial_shape = data.shape[:-1]
    return MutualInformationMaps(
        delays=np.arange(n_delays) * tr,
        information=_scatter(corrected, usable).reshape(*spatial_shape, n_delays),
        preferred_time=_scatter(best * tr, usable).reshape(spatial_shape),
        amplitude=_scatter(np.take_along_axis(corrected, best[:, None], axis=1)[:, 0], usable).reshape(
            spatial_shape
        ),
        p_value=_scatter((1.0 + exceed) / (1.0 + n_shuffles), usable).reshape(spatial_shape),
        n_failed=int(np.sum(~usable)),
    )


def _raw_information(bins: np.ndarray, label_matrix: np.ndarray, n_bins: int, n_delays: int) -> np.ndarray:
    """Plug-in MI ``(n_permutations, V, n_delays)`` of binned series ``(V, T)``, in voxel chunks."""
    n_permutations, n_labels, n_frames = label_matrix.shape
    raw = np.empty((n_permutations, bins.shape[0], n_delays))
    chunk = max(1, COUNT_CHUNK_ELEMENTS // (n_bins * (n_frames + n_permutations * n_labels)))
    for start in range(0, bins.shape[0], chunk):
        response_matrix = (bins[start : start + chunk].T[..., None] == np.arange(n_bins)).astype(np.float32)
        for delay in range(n_delays):
            raw[:, start : start + chunk, delay] = _information_per_delay(
                label_matrix, response_matrix, delay
            )
    return raw


def _scatter(values: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Values of the usable voxels placed in a NaN array over all voxels."""
    full = np.full((usable.size, *values.shape[1:]), np.nan)
    full[usable] = values
    return full


def _check_inputs(
    labels: np.ndarray, n_frames: int, tr: float, max_delay: float, n_bins: int, n_shuffles: int
) -> None:
    if labels.shape != (n_frames,) or not np.issubdtype(labels.dtype, np.integer) or np.any(labels < 0):
        raise InputError(
            f"labels of shape {labels.shape} and type {labels.dtype} are not one non-negative integer "
            f"per frame ({n_frames} frames): use 0 for no onset and 1, 2, ... for trial types"
        )
    if np.unique(labels).size < 2:
        raise InputError("the labels hold a single condition: MI needs frames with and without event onsets")
    check_tr(tr)
    if not 0 <= max_delay < n_frames * tr / 2:
        raise InputError(f"maximum delay {max_delay} s is not within [0, half the scan): give it in seconds")
    if not 2 <= n_bins <= n_frames // 4:
        raise InputError(
            f"{n_bins} response bins do not suit {n_frames} frames: use 2 to {n_frames // 4} bins"
        )
    if n_shuffles < 1:
        raise InputError(f"{n_shuffles} shuffles cannot correct the bias: use e.g. 100")
