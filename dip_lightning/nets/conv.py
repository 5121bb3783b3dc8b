"""A plain stack of same-size conv + activation layers (the paper's GP-limit network)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import activation as make_activation
from .layers import batch_norm as _norm
from .layers import conv


class ConvNet(nn.Module):
    """`depth` conv layers of `width` channels with an activation each, then a 1x1 output conv.

    No down/up-sampling, so its infinite-width limit is a stationary GP (SCIENCE.md §5).
    Input (B, in_channels, *S) -> (B, out_channels, *S); `body` ends at the last hidden activations.
    """

    def __init__(self, in_channels: int = 32, out_channels: int = 3, *, width: int = 64, depth: int = 3,
                 kernel_size: int = 3, activation: str = "relu", padding_mode: str = "reflect",
                 batch_norm: bool = False, sigmoid: bool = False, dim: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [conv(dim, in_channels if i == 0 else width, width, kernel_size, padding_mode=padding_mode),
                       _norm(dim, width, batch_norm), make_activation(activation)]
        self.depth = depth
        self.size_multiple = 1
        self.body = nn.Sequential(*layers)
        self.head = conv(dim, width if depth else in_channels, out_channels, 1, padding_mode=padding_mode)
        self.output_activation = nn.Sigmoid() if sigmoid else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.head(self.body(z)))


