"""A second output head on a DIP network: the per-entry noise level of the observation (heteroscedastic)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv


class WithLogPrecision(nn.Module):
    """A DIP network (any of `nets`: it exposes `body`, `head`, `output_activation`) with a second 1x1 conv
    head on the same last hidden activations that predicts a log precision s = −log σ² per output entry, the
    aleatoric noise of the observation (Laves et al.'s heteroscedastic MC-dropout DIP; no output activation).

    Input (B, C_in, *S) -> (B, 2·C, *S): the C image channels (the network's own output), then the C
    channels of s. `split` takes them apart.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.network = net
        head = net.head
        dim = head.weight.dim() - 2
        self.log_precision = conv(dim, head.in_channels, head.out_channels, 1, padding_mode=head.padding_mode)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = self.network.body(z)
        image = self.network.output_activation(self.network.head(hidden))
        return torch.cat([image, self.log_precision(hidden)], dim=1)

    @staticmethod
    def split(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2·C, *S) -> the image (B, C, *S) and the log precision s (B, C, *S)."""
        return output.chunk(2, dim=1)
