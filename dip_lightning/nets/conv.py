"""A plain stack of same-size conv + activation layers (the paper's GP-limit network)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import activation as make_activation
from .layers import batch_norm as _norm
from .layers import conv, padding_fits, refuse_size, smallest_side


class ConvNet(nn.Module):
    """`depth` conv layers of `width` channels with an activation each, then a 1x1 output conv.

    No down/up-sampling, so its infinite-width limit is a stationary GP (docs/science.md §5).
    Input (B, in_channels, *S) -> (B, out_channels, *S); `body` ends at the last hidden activations.

    Args:
        in_channels: channels of the input code z (the task's `input_channels`).
        out_channels: channels of the output.
        width: channels of every hidden layer.
        depth: number of conv + activation layers.
        kernel_size: conv kernel size.
        activation: `relu`, `leaky_relu`, `elu` or `tanh`.
        padding_mode: `reflect`, `zeros`, `replicate` or `circular`.
        batch_norm: BatchNorm after every conv.
        sigmoid: a sigmoid on the output.
        dim: 2 for images, 1 for signals.
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
        # BatchNorm needs more than one value per channel, reflection padding more pixels than it pads
        self.min_side = smallest_side(lambda s: (not depth or padding_fits(s, kernel_size, padding_mode))
                                      and (not (batch_norm and depth) or s**dim >= 2))

    def check_size(self, size: tuple[int, ...]) -> None:
        """Refuse (InputError) an output size (*S) with a side below `min_side`."""
        if min(size) < self.min_side:
            refuse_size(size, self.min_side, "BatchNorm and padding need more than one pixel")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.head(self.body(z)))


