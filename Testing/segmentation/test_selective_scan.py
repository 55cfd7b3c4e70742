"""The chunked selective scan against the direct sequential recurrence (and the CUDA kernel where present)."""

from __future__ import annotations

import pytest
import torch
from SpatioTemporalCommonLib.errors import InputError
from TumorSegmentation4DLib.selective_scan import (
    cuda_kernel_available,
    selective_scan,
    selective_scan_chunked,
    selective_scan_sequential,
)

BATCH, CHANNELS, STATE, LENGTH = 2, 5, 3, 64


def scan_operands(
    dtype: torch.dtype = torch.float64, length: int = LENGTH, seed: int = 0, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Random operands with Mamba-like ranges: negative A, step sizes around softplus(-1)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    return {
        "u": randn(BATCH, CHANNELS, length),
        "delta": randn(BATCH, CHANNELS, length) - 1.0,
        "A": -torch.rand(CHANNELS, STATE, generator=g, dtype=dtype).to(device) * 4.0 - 0.1,
        "B": randn(BATCH, STATE, length),
        "C": randn(BATCH, STATE, length),
        "D": randn(CHANNELS),
        "z": randn(BATCH, CHANNELS, length),
        "delta_bias": randn(CHANNELS) * 0.5,
    }


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 16, 63, 64, 200, None])
def test_chunked_scan_equals_sequential_scan(chunk_size: int | None) -> None:
    operands = scan_operands()
    expected = selective_scan_sequential(**operands, delta_softplus=True)
    actual = selective_scan_chunked(**operands, delta_softplus=True, chunk_size=chunk_size)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_chunked_scan_without_optional_terms_equals_sequential_scan() -> None:
    operands = {key: value for key, value in scan_operands(seed=1).items() if key in "u delta A B C".split()}
    operands["delta"] = torch.nn.functional.softplus(operands["delta"])
    expected = selective_scan_sequential(**operands)
    torch.testing.assert_close(
        selective_scan_chunked(**operands, chunk_size=5), expected, rtol=1e-12, atol=1e-12
    )


def test_chunked_scan_gradients_equal_sequential_scan_gradients() -> None:
    def gradients(scan) -> list[torch.Tensor]:
        operands = {
            key: value.clone().requires_grad_(True) for key, value in scan_operands(length=40, seed=2).items()
        }
        (scan(operands).square().sum()).backward()
        return [operands[key].grad for key in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]

    expected = gradients(lambda o: selective_scan_sequential(**o, delta_softplus=True))
    actual = gradients(lambda o: selective_scan_chunked(**o, delta_softplus=True, chunk_size=6))
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_auto_backend_on_cpu_is_the_exact_pure_pytorch_scan() -> None:
    operands = scan_operands(seed=3)
    expected = selective_scan_sequential(**operands, delta_softplus=True)
    torch.testing.assert_close(
        selective_scan(**operands, delta_softplus=True), expected, rtol=1e-12, atol=1e-12
    )


def test_scan_refuses_inconsistent_shapes() -> None:
    operands = scan_operands()
    operands["B"] = operands["B"][:, :, :-1]
    with pytest.raises(InputError, match="B and C"):
        selective_scan_chunked(**operands)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(InputError, match="backend"):
        selective_scan(**scan_operands(), backend="fft")


@pytest.mark.skipif(not cuda_kernel_available(), reason="needs a CUDA GPU and the mamba-ssm package")
def test_cuda_kernel_agrees_with_chunked_scan() -> None:
    operands = scan_operands(dtype=torch.float32, length=512, seed=4, device="cuda")
    kernel = selective_scan(**operands, delta_softplus=True, backend="cuda")
    chunked = selective_scan(**operands, delta_softplus=True, backend="chunked")
    torch.testing.assert_close(kernel, chunked, rtol=1e-3, atol=1e-3)
