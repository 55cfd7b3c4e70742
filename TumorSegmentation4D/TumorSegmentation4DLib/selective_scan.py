"""Selective scan of the Mamba state-space layer, in pure PyTorch and through ``mamba_ssm`` on a GPU.

The selective scan (Gu and Dao, "Mamba: linear-time sequence modeling with selective state spaces",
arXiv:2312.00752, Algorithm 2) runs, for every channel ``d`` and state index ``n``, the discretised
linear recurrence

    h[t] = exp(delta[t] * A[d, n]) * h[t-1] + delta[t] * B[n, t] * u[d, t]
    y[d, t] = sum_n C[n, t] * h[t] + D[d] * u[d, t]

(zero-order hold for ``A``, Euler for ``B``), optionally gated by ``silu(z)``. ``delta``, ``B`` and ``C``
depend on the input, which is what makes the scan selective.

Three implementations share one signature (the one of ``mamba_ssm.selective_scan_fn``):

- :func:`selective_scan_sequential` steps through the sequence one position at a time. It is the
  direct definition and serves as the reference.
- :func:`selective_scan_chunked` cuts the sequence into chunks and runs the recurrence inside all
  chunks at once, then carries the state across chunk boundaries. It returns the same values as the
  sequential scan (to rounding) with a chunk-sized working set instead of a full ``(B, D, N, L)``
  state history, and ``2 * chunk + n_chunks`` Python steps instead of ``L``.
- :func:`selective_scan` picks the CUDA kernel of ``mamba_ssm`` when the inputs are on a GPU and the
  package imports, otherwise the chunked scan.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from SpatioTemporalCommonLib.errors import InputError

ScanBackend = Literal["auto", "chunked", "sequential", "cuda"]


def _check_shapes(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> None:
    """Raise ``InputError`` unless the scan operands have consistent shapes."""
    if u.ndim != 3 or delta.shape != u.shape:
        raise InputError(
            f"selective scan needs u and delta of one shape (batch, channels, length); got "
            f"{tuple(u.shape)} and {tuple(delta.shape)}"
        )
    batch, channels, length = u.shape
    if A.ndim != 2 or A.shape[0] != channels:
        raise InputError(
            f"selective scan needs A of shape (channels={channels}, state); got {tuple(A.shape)}"
        )
    expected = (batch, A.shape[1], length)
    if tuple(B.shape) != expected or tuple(C.shape) != expected:
        raise InputError(
            f"selective scan needs B and C of shape (batch, state, length) = {expected}; got "
            f"{tuple(B.shape)} and {tuple(C.shape)}"
        )


def _prepare_delta(
    delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool
) -> torch.Tensor:
    """Add the per-channel bias to the step sizes and apply softplus when asked."""
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish_output(
    y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None
) -> torch.Tensor:
    """Add the skip term ``D * u`` and apply the ``silu(z)`` gate."""
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan by direct recurrence, one sequence position at a time (the reference).

    Parameters
    ----------
    u : torch.Tensor
        Input sequence, shape ``(batch, channels, length)``.
    delta : torch.Tensor
        Step sizes before bias and softplus, shape ``(batch, channels, length)``.
    A : torch.Tensor
        State matrix diagonal (negative for a stable scan), shape ``(channels, state)``.
    B, C : torch.Tensor
        Input and output projections, shape ``(batch, state, length)``.
    D : torch.Tensor, optional
        Skip weights, shape ``(channels,)``.
    z : torch.Tensor, optional
        Gate, shape ``(batch, channels, length)``; the output is multiplied by ``silu(z)``.
    delta_bias : torch.Tensor, optional
        Bias added to ``delta``, shape ``(channels,)``.
    delta_softplus : bool
        Apply softplus to ``delta`` after the bias.

    Returns
    -------
    torch.Tensor
        Output sequence, shape ``(batch, channels, length)``, dtype of ``u``.
    """
    _check_shapes(u, delta, A, B, C)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for t in range(u.shape[2]):
        step = delta[:, :, t, None]
        state = torch.exp(step * A) * state + (step * u[:, :, t, None]) * B[:, None, :, t]
        outputs.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    y = torch.stack(outputs, dim=-1) if outputs else torch.zeros_like(u)
    return _finish_output(y, u, D, z)


def default_chunk_length(length: int) -> int:
    """Chunk length that minimises the number of Python steps ``2 * chunk + length / chunk``.

    Parameters
    ----------
    length : int
        Sequence length (number of tokens).

    Returns
    -------
    int
        ``round(sqrt(length / 2))``, at least 1.
    """
    return max(1, round(math.sqrt(length / 2)))


def _to_chunks(x: torch.Tensor, chunk: int, n_chunks: int) -> torch.Tensor:
    """Reshape ``(batch, rows, length)`` to ``(chunk, batch, rows, n_chunks)``, zero-padding the end."""
    pad = chunk * n_chunks - x.shape[-1]
    x = F.pad(x, (0, pad))
    return x.reshape(x.shape[0], x.shape[1], n_chunks, chunk).permute(3, 0, 1, 2).contiguous()


def _from_chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`_to_chunks`: ``(chunk, batch, rows, n_chunks)`` to ``(batch, rows, length)``."""
    chunk, batch, rows, n_chunks = x.shape
    return x.permute(1, 2, 3, 0).reshape(batch, rows, n_chunks * chunk)[..., :length]


def _recur_in_chunks(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    start: torch.Tensor,
    C: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the recurrence inside every chunk at once from the given start states.

    ``u`` and ``delta`` are ``(chunk, batch, channels, n_chunks)``, ``B`` and ``C`` are
    ``(chunk, batch, state, n_chunks)``, ``start`` is ``(batch, channels, state, n_chunks)``.
    Returns the state after the last position of each chunk and, when ``C`` is given, the outputs
    ``(chunk, batch, channels, n_chunks)``. Slices are taken with ``unbind`` so that the backward pass
    gathers the per-position gradients once instead of allocating a full-size gradient per position.
    """
    decay_rate = A[None, :, :, None]
    output_rows = C.unbind(0) if C is not None else None
    state = start
    outputs = []
    for t, (u_t, delta_t, B_t) in enumerate(zip(u.unbind(0), delta.unbind(0), B.unbind(0), strict=True)):
        step = delta_t[:, :, None, :]
        state = torch.exp(step * decay_rate) * state + (step * u_t[:, :, None, :]) * B_t[:, None, :, :]
        if output_rows is not None:
            outputs.append(torch.einsum("bdnc,bnc->bdc", state, output_rows[t]))
    return state, (torch.stack(outputs) if outputs else None)


def _carry_across_chunks(chunk_end_states: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
    """States entering each chunk, from the zero-start end states and the decay over each chunk.

    Both inputs and the result are ``(batch, channels, state, n_chunks)``.
    """
    entering = [torch.zeros_like(chunk_end_states[..., 0])]
    for end_state, decay in zip(chunk_end_states.unbind(-1)[:-1], chunk_decay.unbind(-1)[:-1], strict=True):
        entering.append(decay * entering[-1] + end_state)
    return torch.stack(entering, dim=-1)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Selective scan computed chunk-parallel with the state carried across chunks.

    The sequence is cut into ``n_chunks`` chunks of ``chunk_size`` positions. First the recurrence
    runs inside all chunks at once from a zero state, which gives each chunk's own contribution to
    its end state. These are chained across chunks with the chunk's total decay
    ``exp(A * sum(delta))`` to get the true state entering every chunk. Finally the recurrence runs
    again inside all chunks from those states and emits the outputs. Padding positions carry
    ``delta = 0`` (no decay, no input), so they change nothing.

    Parameters
    ----------
    u, delta, A, B, C, D, z, delta_bias, delta_softplus
        As in :func:`selective_scan_sequential`.
    chunk_size : int, optional
        Positions per chunk; default :func:`default_chunk_length` of the sequence length.

    Returns
    -------
    torch.Tensor
        Output sequence, shape ``(batch, channels, length)``; equal to
        :func:`selective_scan_sequential` to floating-point rounding.
    """
    _check_shapes(u, delta, A, B, C)
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk size {chunk_size} must be a positive number of sequence positions")
    length = u.shape[2]
    chunk = min(chunk_size or default_chunk_length(length), max(length, 1))
    n_chunks = math.ceil(length / chunk)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    u_c, delta_c = _to_chunks(u, chunk, n_chunks), _to_chunks(delta, chunk, n_chunks)
    B_c, C_c = _to_chunks(B, chunk, n_chunks), _to_chunks(C, chunk, n_chunks)
    zero_start = u.new_zeros(u.shape[0], u.shape[1], A.shape[1], n_chunks)
    chunk_end_states, _ = _recur_in_chunks(u_c, delta_c, A, B_c, zero_start, None)
    chunk_decay = torch.exp(delta_c.sum(dim=0)[:, :, None, :] * A[None, :, :, None])
    entering = _carry_across_chunks(chunk_end_states, chunk_decay)
    _, y_c = _recur_in_chunks(u_c, delta_c, A, B_c, entering, C_c)
    return _finish_output(_from_chunks(y_c, length), u, D, z)


@functools.lru_cache(maxsize=1)
def _mamba_cuda_scan() -> Callable[..., torch.Tensor] | None:
    """``mamba_ssm``'s CUDA selective scan, or None where the package or its extension does not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):
        return None
    return selective_scan_fn


def cuda_kernel_available() -> bool:
    """True when a GPU is visible and ``mamba_ssm``'s CUDA selective scan imports."""
    return torch.cuda.is_available() and _mamba_cuda_scan() is not None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int | None = None,
    backend: ScanBackend = "auto",
) -> torch.Tensor:
    """Selective scan with the fastest available implementation.

    Parameters
    ----------
    u, delta, A, B, C, D, z, delta_bias, delta_softplus
        As in :func:`selective_scan_sequential`.
    chunk_size : int, optional
        Chunk length of the pure-PyTorch scan (ignored by the CUDA kernel).
    backend : {"auto", "chunked", "sequential", "cuda"}
        ``"auto"`` uses ``mamba_ssm``'s CUDA kernel for GPU tensors when it imports, otherwise the
        chunked pure-PyTorch scan.

    Returns
    -------
    torch.Tensor
        Output sequence, shape ``(batch, channels, length)``.
    """
    if backend == "auto":
        backend = "cuda" if u.is_cuda and _mamba_cuda_scan() is not None else "chunked"
    if backend == "chunked":
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)
    if backend == "sequential":
        return selective_scan_sequential(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend != "cuda":
        raise InputError(
            f"unknown selective-scan backend {backend!r}: use 'auto', 'chunked', 'sequential' or 'cuda'"
        )
    kernel = _mamba_cuda_scan()
    if kernel is None or not u.is_cuda:
        raise InputError(
            "the mamba_ssm CUDA selective scan needs GPU tensors and the mamba-ssm package: "
            "install mamba-ssm on a CUDA machine or use backend='chunked'"
        )
    _check_shapes(u, delta, A, B, C)
    return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
