"""Fixtures of the tumour-segmentation tests: small networks and CPU thread limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from TumorSegmentation4DLib.network import NetworkConfig

TINY_FEATURES = (4, 8, 8, 16)


@pytest.fixture(autouse=True, scope="session")
def two_torch_threads() -> Iterator[None]:
    """Run PyTorch on at most two threads, as on the reference CPU machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_config() -> NetworkConfig:
    """A four-level network (inputs divisible by 8) small enough for fast CPU tests."""
    return NetworkConfig(features=TINY_FEATURES, d_state=4, time_embedding=8)
