"""Safe storage of network weights together with the architecture they belong to.

Weights files never run code. Two formats are read:

- ``.safetensors`` (preferred, shipped weights): tensors plus a string header that holds the
  architecture name and version, the :class:`~TumorSegmentation4DLib.network.NetworkConfig` and
  free-form metadata (patch size, what the weights were trained on);
- PyTorch files (training checkpoints), read with ``torch.load(..., weights_only=True)``, which only
  rebuilds tensors and plain containers and refuses any pickle that would import or call code.

Before weights are loaded into a network, the stored architecture and the tensor names and shapes
are checked, so a file for another network fails with a message instead of a half-loaded model.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from SpatioTemporalCommonLib.errors import InputError

from .network import ARCHITECTURE_NAME, ARCHITECTURE_VERSION, NetworkConfig, TemporalMambaUNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "temporal_mamba_unet.safetensors"
SAFETENSORS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class StoredWeights:
    """Contents of a weights file after the architecture check.

    Attributes
    ----------
    config : NetworkConfig
        Architecture the tensors belong to.
    state_dict : dict of str to torch.Tensor
        Network tensors (on the CPU).
    metadata : dict
        Everything else stored with them (e.g. ``roi_size``, ``trained_on``).
    """

    config: NetworkConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]


def architecture_header(config: NetworkConfig, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Architecture identification stored with weights and checkpoints.

    Parameters
    ----------
    config : NetworkConfig
        Network settings.
    metadata : dict, optional
        JSON-serialisable extra information.

    Returns
    -------
    dict
        ``architecture``, ``architecture_version``, ``network_config`` and ``metadata`` entries.
    """
    return {
        "architecture": ARCHITECTURE_NAME,
        "architecture_version": ARCHITECTURE_VERSION,
        "network_config": config.to_dict(),
        "metadata": dict(metadata or {}),
    }


def save_weights(
    path: str | os.PathLike, network: TemporalMambaUNet, metadata: dict[str, Any] | None = None
) -> None:
    """Write the network's tensors and architecture to a ``.safetensors`` file.

    Parameters
    ----------
    path : path-like
        Output file (``.safetensors``).
    network : TemporalMambaUNet
        Network whose tensors are stored.
    metadata : dict, optional
        JSON-serialisable information stored with them.
    """
    header = architecture_header(network.config, metadata)
    strings = {key: json.dumps(value) for key, value in header.items()}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    save_file(tensors, os.fspath(path), metadata=strings)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a PyTorch file with tensors and plain containers only.

    Parameters
    ----------
    path : path-like
        File written by ``torch.save``.

    Returns
    -------
    dict
        The stored dictionary.

    Raises
    ------
    InputError
        The file is missing, unreadable, not a dictionary, or holds Python objects other than
        tensors and plain containers (such a pickle could run code and is never unpickled).
    """
    if not Path(path).is_file():
        raise InputError(
            f"weights file {os.fspath(path)} does not exist: give the path of a .safetensors or .pt file"
        )
    try:
        content = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        raise InputError(
            f"weights file {os.fspath(path)} was refused: it is not a tensors-only PyTorch file "
            f"(it may hold code or other Python objects; {type(error).__name__}). Use a "
            ".safetensors file or a checkpoint written by train-segmentation"
        ) from error
    if not isinstance(content, dict):
        raise InputError(
            f"weights file {os.fspath(path)} holds a {type(content).__name__}, not a dictionary: use "
            "a .safetensors file or a checkpoint written by train-segmentation"
        )
    return content


def _read_safetensors(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Header entries (JSON-decoded) and tensors of a ``.safetensors`` file."""
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            strings = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise InputError(
            f"weights file {os.fspath(path)} is not a readable .safetensors file ({error}): give a "
            "file written by train-segmentation"
        ) from error
    try:
        header = {key: json.loads(value) for key, value in strings.items()}
    except json.JSONDecodeError as error:
        raise InputError(
            f"weights file is for another architecture: its header is not ours ({error})"
        ) from error
    return header, tensors


def _config_from_header(header: dict[str, Any]) -> NetworkConfig:
    """Network settings from a stored header, after checking the architecture name and version."""
    name, version = header.get("architecture"), header.get("architecture_version")
    if name != ARCHITECTURE_NAME or version != ARCHITECTURE_VERSION:
        raise InputError(
            f"weights file is for another architecture: {name!r} version {version!r}, but this module "
            f"runs {ARCHITECTURE_NAME!r} version {ARCHITECTURE_VERSION}; use weights written by "
            "train-segmentation of this version"
        )
    settings = header.get("network_config")
    if not isinstance(settings, dict):
        raise InputError("weights file is for another architecture: it does not record the network settings")
    return NetworkConfig.from_dict(settings)


def _check_tensors(config: NetworkConfig, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ``InputError`` unless the tensors match, by name and shape, the network ``config`` builds."""
    expected = {name: tuple(t.shape) for name, t in TemporalMambaUNet(config).state_dict().items()}
    stored = {name: tuple(t.shape) for name, t in state_dict.items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    mismatched = sorted(name for name in set(expected) & set(stored) if expected[name] != stored[name])
    if missing or unexpected or mismatched:
        raise InputError(
            f"weights file is for another architecture: {len(missing)} tensors missing (e.g. "
            f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(mismatched)} of "
            f"another shape (e.g. {mismatched[:3]}); use weights trained for this network"
        )


def read_weights(path: str | os.PathLike) -> StoredWeights:
    """Read and check a weights file (``.safetensors``, or a ``.pt`` checkpoint of train-segmentation).

    Parameters
    ----------
    path : path-like
        Weights file.

    Returns
    -------
    StoredWeights
        Architecture, tensors and metadata.

    Raises
    ------
    InputError
        Unreadable file, a pickle carrying code, or weights for another architecture.
    """
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        if not Path(path).is_file():
            raise InputError(
                f"weights file {os.fspath(path)} does not exist: give the path of a .safetensors file"
            )
        header, state_dict = _read_safetensors(path)
    else:
        header = read_checkpoint(path)
        state_dict = header.get("state_dict")
        if not isinstance(state_dict, dict):
            raise InputError(
                "weights file is for another architecture: it has no 'state_dict' entry of tensors"
            )
    config = _config_from_header(header)
    _check_tensors(config, state_dict)
    metadata = header.get("metadata") or {}
    return StoredWeights(config=config, state_dict=state_dict, metadata=dict(metadata))


def load_network(path: str | os.PathLike = SHIPPED_WEIGHTS) -> tuple[TemporalMambaUNet, dict[str, Any]]:
    """Build the network a weights file describes and load its tensors (CPU, evaluation mode).

    Parameters
    ----------
    path : path-like
        Weights file; default the shipped phantom-trained weights.

    Returns
    -------
    network : TemporalMambaUNet
        Network in evaluation mode.
    metadata : dict
        Metadata stored with the weights (``roi_size`` and training information).
    """
    stored = read_weights(path)
    network = TemporalMambaUNet(stored.config)
    network.load_state_dict(stored.state_dict, strict=True)
    return network.eval(), stored.metadata
