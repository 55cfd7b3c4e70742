"""Temporal Mamba U-net: a 3D U-shaped segmenter conditioned on the acquisition times of its input phases.

Input: ``in_channels`` co-registered phases of one DCE-MRI study at 1 mm (default three:
pre-contrast, first post-contrast, one later post-contrast), with their acquisition times in seconds
after contrast injection. Output: per-voxel class logits (background, tumour).

Structure:

- Encoder: a convolutional stem at full resolution, then one stride-2 convolution and one residual
  block per level. From level :attr:`NetworkConfig.first_state_space_level` on (1/4 resolution and
  coarser) the block is a Visual-State-Space block: a Mamba selective scan (Gu and Dao,
  arXiv:2312.00752) over the flattened volume in three orders -- forward, reversed, and across slices
  (slice index varying fastest) -- whose outputs are summed, as in the tri-orientated Mamba of
  SegMamba (Xing et al., MICCAI 2024, arXiv:2401.13560) and the VSS block of VMamba (Liu et al.,
  arXiv:2401.10166). State-space levels are refused above ``MAX_STATE_SPACE_TOKENS`` = 32^3 tokens.
- Decoder: transposed-convolution upsampling, concatenation with the encoder skip, residual block;
  1x1x1 heads at the two finest decoder levels below full resolution for optional deep supervision.
- Temporal conditioning by FiLM (Perez et al., AAAI 2018, arXiv:1709.07871): a small MLP embeds the
  acquisition times and every encoder level, the bottleneck and every decoder level is modulated as
  ``gamma(t) * x + beta(t)``. ``use_film=False`` removes the conditioning (the times are then ignored).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from SpatioTemporalCommonLib.errors import InputError
from torch import nn

from .selective_scan import ScanBackend, selective_scan

ARCHITECTURE_NAME = "TemporalMambaUNet3D"
ARCHITECTURE_VERSION = 1
MAX_STATE_SPACE_TOKENS = 32**3
SCAN_DIRECTIONS = ("forward", "reversed", "across_slices")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes the architecture (and hence the shape of the weights).

    Attributes
    ----------
    in_channels : int
        Number of input phases (3: pre, first post, later post; 1: first post-contrast only).
    out_channels : int
        Number of output classes including background.
    features : tuple of int
        Channels per level, full resolution first; the last level is the bottleneck. Each level
        after the first halves the resolution, so inputs must be divisible by ``2 ** (levels - 1)``.
    first_state_space_level : int
        First level (0 = full resolution) whose block is a Visual-State-Space block.
    use_film : bool
        Condition every encoder level, the bottleneck and every decoder level on the times.
    time_embedding : int
        Width of the time-embedding MLP.
    time_scale_s : float
        Times are divided by this (s) before the MLP.
    d_state : int
        State size ``N`` of the selective scan (8 instead of Mamba's 16: the scan's cost on a CPU grows
        with it, and vision models work with small states, cf. VMamba's ``d_state=1`` variants).
    expand : int
        Inner width of the state-space mixer as a multiple of the level's channels.
    deep_supervision : bool
        In training mode, also return the logits of the two finest decoder levels below full resolution.
    """

    in_channels: int = 3
    out_channels: int = 2
    features: tuple[int, ...] = (16, 24, 32, 48, 64)
    first_state_space_level: int = 2
    use_film: bool = True
    time_embedding: int = 32
    time_scale_s: float = 300.0
    d_state: int = 8
    expand: int = 2
    deep_supervision: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.in_channels < 1 or self.out_channels < 2:
            raise InputError(
                f"network needs at least 1 input channel and 2 output classes; got "
                f"{self.in_channels} and {self.out_channels}"
            )
        if len(self.features) < 3 or min(self.features) < 1:
            raise InputError(
                f"network needs at least 3 levels of positive channel counts; got {self.features}"
            )
        if not 1 <= self.first_state_space_level < len(self.features):
            raise InputError(
                f"first_state_space_level {self.first_state_space_level} must lie in "
                f"[1, {len(self.features) - 1}]"
            )

    @property
    def divisor(self) -> int:
        """Spatial sizes of the input must be multiples of this."""
        return 2 ** (len(self.features) - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, stored next to the weights."""
        values = dataclasses.asdict(self)
        values["features"] = list(self.features)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NetworkConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"weights file is for another architecture: unknown network settings {unknown}")
        return cls(**values)


class TimeEmbedding(nn.Module):
    """Embeds acquisition times (s after injection) with a two-layer MLP."""

    def __init__(self, n_times: int, width: int, time_scale_s: float) -> None:
        super().__init__()
        self.time_scale_s = time_scale_s
        self.mlp = nn.Sequential(nn.Linear(n_times, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        """Map times ``(batch, n_times)`` in seconds to an embedding ``(batch, width)``."""
        return self.mlp(times / self.time_scale_s)


class FiLM(nn.Module):
    """Feature-wise linear modulation ``gamma(t) * x + beta(t)`` of a 3D feature map.

    The projection starts close to the identity (``gamma ~ 1``, ``beta ~ 0``) but not at it, so the
    times influence the output from the first training step.
    """

    def __init__(self, embedding_width: int, channels: int) -> None:
        super().__init__()
        self.projection = nn.Linear(embedding_width, 2 * channels)
        with torch.no_grad():
            self.projection.weight.mul_(0.1)
            self.projection.bias.zero_()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` ``(batch, channels, k, j, i)`` by the time embedding ``(batch or 1, width)``."""
        gamma_offset, beta = self.projection(embedding)[:, :, None, None, None].chunk(2, dim=1)
        return (1.0 + gamma_offset) * x + beta


def _to_sequence(volume: torch.Tensor, direction: str) -> torch.Tensor:
    """Flatten ``(batch, channels, k, j, i)`` to ``(batch, channels, tokens)`` in the scan order."""
    if direction == "forward":
        return volume.flatten(2)
    if direction == "reversed":
        return volume.flatten(2).flip(-1)
    return volume.permute(0, 1, 3, 4, 2).flatten(2)


def _from_sequence(sequence: torch.Tensor, direction: str, spatial: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`_to_sequence`: back to ``(batch, channels, k, j, i)``."""
    batch, channels = sequence.shape[:2]
    if direction == "forward":
        return sequence.reshape(batch, channels, *spatial)
    if direction == "reversed":
        return sequence.flip(-1).reshape(batch, channels, *spatial)
    k, j, i = spatial
    return sequence.reshape(batch, channels, j, i, k).permute(0, 1, 4, 2, 3)


class SelectiveScanBranch(nn.Module):
    """Input-dependent (selective) state-space parameters and scan for one scan direction.

    Initialisation follows Mamba: ``A = -[1..N]`` per channel, ``D = 1``, and a step-size bias such
    that ``softplus(bias)`` is log-uniform in [1e-3, 0.1].
    """

    def __init__(self, channels: int, d_state: int) -> None:
        super().__init__()
        self.dt_rank = math.ceil(channels / 16)
        self.d_state = d_state
        self.x_proj = nn.Linear(channels, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, channels)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        step = torch.exp(torch.rand(channels) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(step + torch.log(-torch.expm1(-step)))
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)
        )
        self.D = nn.Parameter(torch.ones(channels))

    def forward(self, sequence: torch.Tensor, chunk_size: int | None, backend: ScanBackend) -> torch.Tensor:
        """Scan ``(batch, channels, tokens)`` and return the same shape."""
        projected = self.x_proj(sequence.transpose(1, 2))
        dt, B, C = projected.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)
        return selective_scan(
            sequence,
            delta.contiguous(),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            chunk_size=chunk_size,
            backend=backend,
        )


class TriDirectionalStateSpaceMixer(nn.Module):
    """Mamba mixer over a volume: gated projection, depthwise 3D convolution, three directional scans."""

    def __init__(self, channels: int, d_state: int, expand: int) -> None:
        super().__init__()
        inner = expand * channels
        self.in_proj = nn.Linear(channels, 2 * inner, bias=False)
        self.depthwise = nn.Conv3d(inner, inner, kernel_size=3, padding=1, groups=inner)
        self.branches = nn.ModuleList(SelectiveScanBranch(inner, d_state) for _ in SCAN_DIRECTIONS)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, channels, bias=False)
        self.chunk_size: int | None = None
        self.backend: ScanBackend = "auto"

    def forward(self, tokens: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Mix tokens ``(batch, k*j*i, channels)`` of a volume of shape ``spatial``."""
        x, gate = self.in_proj(tokens).chunk(2, dim=-1)
        volume = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *spatial)
        volume = F.silu(self.depthwise(volume))
        mixed = sum(
            _from_sequence(
                branch(_to_sequence(volume, direction), self.chunk_size, self.backend), direction, spatial
            )
            for branch, direction in zip(self.branches, SCAN_DIRECTIONS, strict=True)
        )
        mixed = mixed.flatten(2).transpose(1, 2)
        return self.out_proj(self.out_norm(mixed) * F.silu(gate))


class VisualStateSpaceBlock(nn.Module):
    """Pre-norm residual block: tri-directional state-space mixer, then a channel MLP."""

    def __init__(self, channels: int, d_state: int, expand: int) -> None:
        super().__init__()
        self.mixer_norm = nn.LayerNorm(channels)
        self.mixer = TriDirectionalStateSpaceMixer(channels, d_state, expand)
        self.mlp_norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(batch, channels, k, j, i)``."""
        spatial = tuple(x.shape[2:])
        n_tokens = math.prod(spatial)
        if n_tokens > MAX_STATE_SPACE_TOKENS:
            raise InputError(
                f"state-space level gets {n_tokens} tokens (grid {spatial}), more than "
                f"{MAX_STATE_SPACE_TOKENS}: use sliding-window patches of at most 128^3 voxels"
            )
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.mixer(self.mixer_norm(tokens), spatial)
        tokens = tokens + self.mlp(self.mlp_norm(tokens))
        return tokens.transpose(1, 2).reshape(x.shape)


def _residual_block(in_channels: int, out_channels: int) -> nn.Module:
    """Two 3x3x3 convolutions with instance norm and leaky ReLU, with a residual path."""
    return UnetResBlock(3, in_channels, out_channels, kernel_size=3, stride=1, norm_name="instance")


def _downsample(in_channels: int, out_channels: int) -> nn.Module:
    """Stride-2 3x3x3 convolution, instance norm, leaky ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.InstanceNorm3d(out_channels, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class TemporalMambaUNet(nn.Module):
    """U-net with Visual-State-Space encoder levels and FiLM conditioning on acquisition times.

    Parameters
    ----------
    config : NetworkConfig
        Architecture settings.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        features = config.features
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, features[0], 3, padding=1, bias=False),
            _residual_block(features[0], features[0]),
        )
        self.down = nn.ModuleList(
            _downsample(features[level - 1], features[level]) for level in range(1, len(features))
        )
        self.encoder_blocks = nn.ModuleList(
            VisualStateSpaceBlock(features[level], config.d_state, config.expand)
            if level >= config.first_state_space_level
            else _residual_block(features[level], features[level])
            for level in range(1, len(features))
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(features[level + 1], features[level], 2, stride=2)
            for level in range(len(features) - 1)
        )
        self.decoder_blocks = nn.ModuleList(
            _residual_block(2 * features[level], features[level]) for level in range(len(features) - 1)
        )
        self.head = nn.Conv3d(features[0], config.out_channels, 1)
        self.deep_heads = (
            nn.ModuleList(nn.Conv3d(features[level], config.out_channels, 1) for level in (1, 2))
            if config.deep_supervision
            else None
        )
        if config.use_film:
            self.time_embedding = TimeEmbedding(
                config.in_channels, config.time_embedding, config.time_scale_s
            )
            self.encoder_film = nn.ModuleList(FiLM(config.time_embedding, f) for f in features)
            self.decoder_film = nn.ModuleList(FiLM(config.time_embedding, f) for f in features[:-1])

    def set_scan(self, chunk_size: int | None = None, backend: ScanBackend = "auto") -> None:
        """Choose the selective-scan implementation and chunk length of every state-space mixer."""
        for module in self.modules():
            if isinstance(module, TriDirectionalStateSpaceMixer):
                module.chunk_size, module.backend = chunk_size, backend

    def _check_input(self, image: torch.Tensor, times: torch.Tensor | None) -> None:
        """Raise ``InputError`` for an image or times the network cannot take."""
        if image.ndim != 5 or image.shape[1] != self.config.in_channels:
            raise InputError(
                f"network expects (batch, {self.config.in_channels}, k, j, i) input; got {tuple(image.shape)}"
            )
        if any(size % self.config.divisor for size in image.shape[2:]):
            raise InputError(
                f"spatial size {tuple(image.shape[2:])} must be a multiple of {self.config.divisor}: "
                "pad the input or use sliding-window inference"
            )
        if self.config.use_film and (
            times is None or times.ndim != 2 or times.shape[1] != self.config.in_channels
        ):
            shape = None if times is None else tuple(times.shape)
            raise InputError(
                f"network with FiLM needs acquisition times of shape (batch, "
                f"{self.config.in_channels}) in seconds after injection; got {shape}"
            )

    def forward(
        self, image: torch.Tensor, times: torch.Tensor | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """Segment a batch of multi-phase patches.

        Parameters
        ----------
        image : torch.Tensor
            ``(batch, in_channels, k, j, i)`` normalised phase intensities.
        times : torch.Tensor, optional
            ``(batch or 1, in_channels)`` acquisition times in seconds after injection; required with FiLM.

        Returns
        -------
        torch.Tensor or list of torch.Tensor
            Logits ``(batch, out_channels, k, j, i)``; in training mode with deep supervision, a list
            of the full-resolution logits followed by those at 1/2 and 1/4 resolution.
        """
        self._check_input(image, times)
        embedding = self.time_embedding(times.to(image.dtype)) if self.config.use_film else None
        x = self._film(self.stem(image), "encoder", 0, embedding)
        skips = [x]
        for level, (down, block) in enumerate(zip(self.down, self.encoder_blocks, strict=True), start=1):
            x = self._film(block(down(x)), "encoder", level, embedding)
            skips.append(x)
        deep_outputs = []
        for level in reversed(range(len(self.up))):
            x = self.up[level](x)
            x = self.decoder_blocks[level](torch.cat([x, skips[level]], dim=1))
            x = self._film(x, "decoder", level, embedding)
            if self.deep_heads is not None and level in (1, 2):
                deep_outputs.insert(0, self.deep_heads[level - 1](x))
        logits = self.head(x)
        if self.training and self.deep_heads is not None:
            return [logits, *deep_outputs]
        return logits

    def _film(self, x: torch.Tensor, path: str, level: int, embedding: torch.Tensor | None) -> torch.Tensor:
        """Apply the FiLM layer of ``path`` ('encoder' or 'decoder') at ``level``, if conditioning is on."""
        if embedding is None:
            return x
        layers = self.encoder_film if path == "encoder" else self.decoder_film
        return layers[level](x, embedding)


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
