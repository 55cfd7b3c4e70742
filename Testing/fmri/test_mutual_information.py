"""Mutual-information time maps (Fuhrmann Alpert et al. 2007)."""

from __future__ import annotations

import numpy as np
import pytest
from FMRIDynamicsLib.glm import make_events
from FMRIDynamicsLib.mutual_information import frame_labels, mutual_information_time_maps, rank_bins
from SpatioTemporalCommonLib.errors import InputError


@pytest.fixture(scope="module")
def nitime_event_related(shared_data):
    table = np.genfromtxt(
        shared_data / "fmri" / "nitime" / "event_related_fmri.csv", delimiter=",", names=True
    )
    return table["bold"], table["events"].astype(int)


@pytest.mark.parametrize("binary", [True, False])
def test_mt_response_information_peaks_at_eight_seconds(nitime_event_related, binary):
    bold, events = nitime_event_related
    maps = mutual_information_time_maps(
        bold, events, tr=2.0, max_delay=20.0, n_shuffles=100, seed=0, binary=binary
    )
    assert maps.preferred_time == 8.0
    assert maps.information[0] < 0.1 * maps.amplitude  # no information at onset
    assert maps.p_value < 0.05
    np.testing.assert_allclose(maps.delays, np.arange(11) * 2.0)


def test_preferred_times_recovered_voxel_wise_and_null_voxels_unbiased():
    rng = np.random.default_rng(0)
    n_frames, tr = 400, 2.0
    labels = np.zeros(n_frames, dtype=int)
    labels[rng.choice(np.arange(n_frames - 12), 40, replace=False)] = 1
    delays = np.array([2, 3, 4, 6])
    data = rng.standard_normal((delays.size + 200, n_frames))
    for voxel, delay in enumerate(delays):
        data[voxel, delay:] += 2.0 * labels[: n_frames - delay]
    maps = mutual_information_time_maps(
        data.reshape(12, 17, n_frames), labels, tr, max_delay=16.0, n_shuffles=50
    )
    flat_time = maps.preferred_time.reshape(-1)
    np.testing.assert_array_equal(flat_time[: delays.size], delays * tr)
    assert np.all(maps.p_value.reshape(-1)[: delays.size] < 0.05)
    null_information = maps.information.reshape(-1, maps.delays.size)[delays.size :]
    assert abs(null_information.mean()) < 0.002  # shuffle correction removes the plug-in bias
    single = mutual_information_time_maps(data[2], labels, tr, max_delay=16.0, n_shuffles=50)
    np.testing.assert_allclose(single.information, maps.information.reshape(-1, maps.delays.size)[2])


def test_constant_voxels_are_nan_and_counted():
    rng = np.random.default_rng(1)
    labels = np.zeros(120, dtype=int)
    labels[::10] = 1
    data = rng.standard_normal((3, 120))
    data[1] = 4.0
    maps = mutual_information_time_maps(data, labels, 2.0, max_delay=10.0, n_shuffles=10)
    assert maps.n_failed == 1 and np.isnan(maps.preferred_time[1]) and np.isfinite(maps.preferred_time[0])


def test_rank_bins_are_equally_populated():
    bins = rank_bins(np.random.default_rng(2).standard_normal((5, 400)), 4)
    np.testing.assert_array_equal(np.stack([np.bincount(row, minlength=4) for row in bins]), 100)


def test_frame_labels_from_events():
    events = make_events([0.0, 4.5, 9.0], [1.0, 1.0, 1.0], ["b", "a", "b"])
    labels, names = frame_labels(events, 6, 2.0)
    assert names == ("a", "b")
    np.testing.assert_array_equal(labels, [2, 0, 1, 0, 2, 0])
    with pytest.raises(InputError, match="same frame"):
        frame_labels(make_events([0.0, 1.0], [0.0, 0.0]), 6, 2.0)
    with pytest.raises(InputError, match="within the scan"):
        frame_labels(make_events([20.0], [0.0]), 6, 2.0)


def test_labels_must_be_integers_with_two_conditions():
    data = np.random.default_rng(3).standard_normal(50)
    with pytest.raises(InputError, match="integer"):
        mutual_information_time_maps(data, np.linspace(0, 1, 50), 2.0, max_delay=10.0)
    with pytest.raises(InputError, match="single condition"):
        mutual_information_time_maps(data, np.zeros(50, dtype=int), 2.0, max_delay=10.0)
