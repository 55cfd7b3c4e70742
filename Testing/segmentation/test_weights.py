"""Weights files: round trip, architecture checks, and refusal of pickles that carry code."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SegResNet
from safetensors.torch import save_file
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet
from TumorSegmentation4DLib.weights import load_network, read_weights, save_weights


class WritesAFile:
    """Unpickling this object writes a marker file: a stand-in for arbitrary code in a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def saved_network(config: NetworkConfig, path: Path, seed: int = 0) -> TemporalMambaUNet:
    """Seeded network written to ``path``."""
    torch.manual_seed(seed)
    network = TemporalMambaUNet(config).eval()
    save_weights(path, network, {"roi_size": [16, 16, 16], "trained_on": "random initialisation"})
    return network


def test_saved_weights_load_into_an_identical_network(tiny_config: NetworkConfig, tmp_path: Path) -> None:
    original = saved_network(tiny_config, tmp_path / "w.safetensors")
    loaded, metadata = load_network(tmp_path / "w.safetensors")
    assert loaded.config == tiny_config
    assert metadata == {"roi_size": [16, 16, 16], "trained_on": "random initialisation"}
    image, times = torch.randn(1, 3, 16, 16, 16), torch.tensor([[0.0, 80.0, 200.0]])
    with torch.no_grad():
        assert torch.equal(original(image, times), loaded(image, times))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_carries_code_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    payload = {"architecture": "TemporalMambaUNet3D", "state_dict": {}, "extra": WritesAFile(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(InputError, match="refused"):
        read_weights(path)
    assert not marker.exists()


def test_the_malicious_pickle_of_the_refusal_test_does_run_code_when_unpickled_unsafely(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker.txt"
    pickle.loads(pickle.dumps(WritesAFile(marker)))
    assert marker.read_text() == "code ran"


def test_weights_of_another_named_architecture_are_refused(
    tiny_config: NetworkConfig, tmp_path: Path
) -> None:
    network = TemporalMambaUNet(tiny_config)
    header = {
        "architecture": json.dumps("SwinUNETR"),
        "architecture_version": "1",
        "network_config": json.dumps(tiny_config.to_dict()),
    }
    save_file(
        {name: t.contiguous() for name, t in network.state_dict().items()}, tmp_path / "w.safetensors", header
    )
    with pytest.raises(InputError, match="weights file is for another architecture: 'SwinUNETR'"):
        read_weights(tmp_path / "w.safetensors")


def test_tensors_that_do_not_match_the_stored_settings_are_refused(
    tiny_config: NetworkConfig, tmp_path: Path
) -> None:
    wider = dataclasses.replace(tiny_config, features=(4, 8, 8, 24))
    network = TemporalMambaUNet(wider)
    header = {
        "architecture": json.dumps("TemporalMambaUNet3D"),
        "architecture_version": "1",
        "network_config": json.dumps(tiny_config.to_dict()),
    }
    save_file(
        {name: t.contiguous() for name, t in network.state_dict().items()}, tmp_path / "w.safetensors", header
    )
    with pytest.raises(InputError, match=r"another architecture: .* of another shape"):
        read_weights(tmp_path / "w.safetensors")


def test_a_plain_state_dict_of_another_network_is_refused(tmp_path: Path) -> None:
    torch.save(SegResNet(init_filters=8).state_dict(), tmp_path / "segresnet.pt")
    with pytest.raises(InputError, match="weights file is for another architecture"):
        read_weights(tmp_path / "segresnet.pt")


def test_missing_and_corrupt_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_weights(tmp_path / "absent.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable"):
        read_weights(tmp_path / "corrupt.safetensors")
