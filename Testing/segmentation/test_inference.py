"""Sliding-window segmentation of a study: grid, averaging over phases, determinism, devices and fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib import inference
from TumorSegmentation4DLib.inference import (
    average_probability,
    keep_largest_component,
    predict_probability,
    resolve_device,
    run_with_cpu_fallback,
    segment_study,
)
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet
from TumorSegmentation4DLib.preprocessing import prepare_study

ROI = (16, 16, 16)
SPACING = (1.5, 1.0, 1.0)
TIMES = [0.0, 70.0, 150.0, 240.0, 330.0]


@pytest.fixture
def network(tiny_config: NetworkConfig) -> TemporalMambaUNet:
    torch.manual_seed(0)
    return TemporalMambaUNet(tiny_config).eval()


@pytest.fixture
def phases() -> np.ndarray:
    """Five random phases on a (12, 20, 18) grid of 1.5 x 1 x 1 mm."""
    return np.random.default_rng(1).uniform(0.0, 1.0, size=(5, 12, 20, 18)).astype(np.float32)


def segment(network: TemporalMambaUNet, phases: np.ndarray, **options) -> inference.SegmentationResult:
    return segment_study(network, phases, TIMES, SPACING, roi_size=ROI, overlap=0.25, device="cpu", **options)


def test_outputs_lie_on_the_input_grid(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    result = segment(network, phases)
    assert result.label.shape == result.probability.shape == (12, 20, 18)
    assert result.label.dtype == np.uint8 and result.probability.dtype == np.float32
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0
    np.testing.assert_array_equal(result.label, (result.probability > 0.5).astype(np.uint8))
    assert result.device == "cpu" and result.messages == []


def test_prediction_averages_every_later_phase(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    study = prepare_study(phases, TIMES, SPACING)
    samples = [(0, 1, 2), (0, 1, 3), (0, 1, 4)]
    assert segment(network, phases).samples == samples
    cpu = torch.device("cpu")
    single = [
        predict_probability(network, study.phases[list(s)], study.times[list(s)], ROI, cpu, 0.25)
        for s in samples
    ]
    averaged = average_probability(network, study, samples, ROI, cpu, 0.25)
    np.testing.assert_allclose(averaged, np.mean(single, axis=0), atol=1e-6)
    assert np.abs(single[0] - single[2]).max() > 1e-4


def test_phase_selection_restricts_the_samples(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    assert segment(network, phases, phase_selection=(0, 2, 4)).samples == [(0, 2, 4)]


def test_segmentation_is_deterministic(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    first, second = segment(network, phases), segment(network, phases)
    np.testing.assert_array_equal(first.probability, second.probability)
    np.testing.assert_array_equal(first.label, second.label)


def test_cuda_out_of_memory_falls_back_to_the_cpu(
    network: TemporalMambaUNet, phases: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = segment(network, phases)
    real_predict = inference.predict_probability
    devices_tried = []

    def out_of_memory_on_gpu(net, image, times, roi_size, device, *args):
        devices_tried.append(device.type)
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_predict(net, image, times, roi_size, device, *args)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(inference, "predict_probability", out_of_memory_on_gpu)
    messages = []
    result = segment_study(
        network,
        phases,
        TIMES,
        SPACING,
        roi_size=ROI,
        overlap=0.25,
        device="cuda",
        progress=lambda fraction, message: messages.append(message),
    )
    assert devices_tried[0] == "cuda" and set(devices_tried[1:]) == {"cpu"}
    assert result.device == "cpu"
    assert any("ran out of memory" in m for m in result.messages) and any(
        "ran out of memory" in m for m in messages
    )
    np.testing.assert_array_equal(result.probability, expected.probability)


def test_out_of_memory_on_the_cpu_is_not_hidden() -> None:
    def job(device: torch.device) -> None:
        raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_cpu_fallback(job, torch.device("cpu"), print)


def test_device_names_are_checked() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_keep_largest_component() -> None:
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[5:9, 5:9, 5:9] = 1
    kept = keep_largest_component(mask)
    assert kept.sum() == 64 and kept[6, 6, 6] == 1 and kept[1, 1, 1] == 0
    assert keep_largest_component(np.zeros((4, 4, 4))).sum() == 0


def test_keep_largest_option(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    result = segment(network, phases, keep_largest=True, threshold=0.0, phase_selection=(0, 1, 2))
    assert result.label.sum() == result.label.size


@pytest.mark.parametrize(
    ("phase_count", "times", "message"),
    [
        (2, TIMES[:2], "at least 3"),
        (5, None, "missing"),
        (5, [0.0, 70.0, 60.0, 240.0, 330.0], "increase strictly"),
    ],
)
def test_bad_input_is_refused(
    network: TemporalMambaUNet, phases: np.ndarray, phase_count: int, times, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        segment_study(network, phases[:phase_count], times, SPACING, roi_size=ROI, device="cpu")


def test_phases_of_different_shapes_are_refused(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    mixed = [*phases[:4], phases[4, :, :, :-1]]
    with pytest.raises(InputError, match="one geometry"):
        segment_study(network, mixed, TIMES, SPACING, roi_size=ROI, device="cpu")


def test_window_size_must_fit_the_network(network: TemporalMambaUNet, phases: np.ndarray) -> None:
    with pytest.raises(InputError, match="multiples of 8"):
        segment_study(network, phases, TIMES, SPACING, roi_size=(12, 16, 16), device="cpu")
