"""Shapes, FiLM conditioning, determinism and input checks of the temporal Mamba U-net."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet, VisualStateSpaceBlock

SHAPE = (16, 16, 24)


def network_and_input(
    config: NetworkConfig, batch: int = 2, seed: int = 0
) -> tuple[TemporalMambaUNet, torch.Tensor]:
    """Seeded network in evaluation mode and a matching random input."""
    torch.manual_seed(seed)
    network = TemporalMambaUNet(config).eval()
    return network, torch.randn(batch, config.in_channels, *SHAPE)


def times_for(
    config: NetworkConfig, batch: int, values: tuple[float, ...] = (0.0, 90.0, 300.0)
) -> torch.Tensor:
    """Acquisition times (s) of the right width for the network."""
    row = torch.tensor(values[1:2] if config.in_channels == 1 else values, dtype=torch.float32)
    return row.repeat(batch, 1)


def test_output_has_one_logit_map_per_class(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(tiny_config)
    with torch.no_grad():
        logits = network(image, times_for(tiny_config, 2))
    assert logits.shape == (2, tiny_config.out_channels, *SHAPE)
    assert torch.isfinite(logits).all()


def test_deep_supervision_returns_three_resolutions_in_training_only(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(dataclasses.replace(tiny_config, deep_supervision=True))
    outputs = network.train()(image, times_for(tiny_config, 2))
    assert [tuple(o.shape[2:]) for o in outputs] == [
        SHAPE,
        tuple(n // 2 for n in SHAPE),
        tuple(n // 4 for n in SHAPE),
    ]
    with torch.no_grad():
        assert network.eval()(image, times_for(tiny_config, 2)).shape == (2, 2, *SHAPE)


def test_times_change_the_output_only_when_film_is_on(tiny_config: NetworkConfig) -> None:
    for use_film in (True, False):
        config = dataclasses.replace(tiny_config, use_film=use_film)
        network, image = network_and_input(config)
        with torch.no_grad():
            early = network(image, times_for(config, 2, (0.0, 60.0, 150.0)))
            late = network(image, times_for(config, 2, (0.0, 120.0, 480.0)))
        difference = (early - late).abs().max().item()
        if use_film:
            assert difference > 1e-3
        else:
            assert difference == 0.0


def test_network_without_film_needs_no_times(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(dataclasses.replace(tiny_config, use_film=False))
    with torch.no_grad():
        assert network(image).shape == (2, 2, *SHAPE)


def test_film_network_refuses_missing_times(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(tiny_config)
    with pytest.raises(InputError, match="acquisition times"):
        network(image)


def test_single_phase_network_takes_one_channel(tiny_config: NetworkConfig) -> None:
    config = dataclasses.replace(tiny_config, in_channels=1)
    network, image = network_and_input(config)
    with torch.no_grad():
        assert network(image, times_for(config, 2)).shape == (2, 2, *SHAPE)
    with pytest.raises(InputError, match="expects"):
        network(torch.zeros(2, 3, *SHAPE), times_for(config, 2))


def test_forward_pass_is_deterministic(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(tiny_config)
    with torch.no_grad():
        first = network(image, times_for(tiny_config, 2))
        second = network(image, times_for(tiny_config, 2))
    assert torch.equal(first, second)


def test_scan_backends_give_the_same_network_output(tiny_config: NetworkConfig) -> None:
    network, image = network_and_input(tiny_config)
    times = times_for(tiny_config, 2)
    with torch.no_grad():
        chunked = network(image, times)
        network.set_scan(backend="sequential")
        sequential = network(image, times)
        network.set_scan(chunk_size=3, backend="chunked")
        small_chunks = network(image, times)
    torch.testing.assert_close(chunked, sequential, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small_chunks, sequential, rtol=1e-5, atol=1e-5)


def test_spatial_size_must_fit_the_downsampling(tiny_config: NetworkConfig) -> None:
    network, _ = network_and_input(tiny_config)
    with pytest.raises(InputError, match="multiple of 8"):
        network(torch.zeros(1, 3, 12, 16, 16), times_for(tiny_config, 1))


def test_state_space_level_refuses_more_than_32_cubed_tokens() -> None:
    block = VisualStateSpaceBlock(channels=2, d_state=2, expand=1)
    with pytest.raises(InputError, match="32768"):
        block(torch.zeros(1, 2, 33, 32, 32))


def test_config_round_trips_and_refuses_unknown_settings(tiny_config: NetworkConfig) -> None:
    assert NetworkConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(InputError, match="another architecture"):
        NetworkConfig.from_dict({**tiny_config.to_dict(), "heads": 4})
    with pytest.raises(InputError, match="levels"):
        NetworkConfig(features=(4, 8))
