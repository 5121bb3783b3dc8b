"""The DIP "skip" encoder-decoder (Ulyanov et al. 2018), in 1D and 2D."""

from __future__ import annotations

import torch
from torch import nn

from .layers import (ChannelDropout, batch_norm, conv, conv_block, downsample, padding_fits, refuse_size,
                     smallest_side, upsample)

DROPOUT_PLACES = ("down", "up", "skip", "output")


class _Scale(nn.Module):
    """One scale of the hourglass: skip branch beside a down -> deeper -> up branch, then merge.

    Input (B, in, S) -> output (B, up, S) where S is the spatial size (a multiple of 2^scales left).
    """

    def __init__(self, dim: int, in_channels: int, down: int, up: int, skip: int, deeper: nn.Module | None,
                 deeper_channels: int, kernel_size_down: int, kernel_size_up: int, kernel_size_skip: int,
                 downsample_mode: str, upsample_mode: str, padding_mode: str, norm: bool, act: str,
                 conv1x1_up: bool, dropout: dict[str, float]) -> None:
        super().__init__()
        block = dict(padding_mode=padding_mode, norm=norm, act=act)
        self.skip = (conv_block(dim, in_channels, skip, kernel_size_skip, **block, dropout=dropout["skip"])
                     if skip else None)
        self.down = nn.Sequential(
            downsample(dim, in_channels, down, kernel_size_down, downsample_mode, padding_mode, norm, act,
                       dropout["down"]),
            conv_block(dim, down, down, kernel_size_down, **block, dropout=dropout["down"]),
        )
        self.deeper = deeper if deeper is not None else nn.Identity()
        self.upsample = upsample(dim, upsample_mode)
        merged = skip + deeper_channels
        layers = [batch_norm(dim, merged, norm),
                  conv_block(dim, merged, up, kernel_size_up, **block, dropout=dropout["up"])]
        if conv1x1_up:
            layers.append(conv_block(dim, up, up, 1, **block, dropout=dropout["up"]))
        self.merge = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.upsample(self.deeper(self.down(x)))
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], dim=1)
        return self.merge(deep)


class SkipNet(nn.Module):
    """DIP's skip network: `depth` scales of stride-2 encoder, interpolating decoder, 1x1 skip convs.

    Defaults follow the papers (docs/science.md §1): 5 scales x 128 channels, 4 skip channels, 3x3 convs,
    BatchNorm, LeakyReLU(0.2), reflection padding, bilinear upsampling, 1x1 output conv + sigmoid.
    `width`/`depth` set every scale at once (for sweeps); the per-scale lists override them.
    Input (B, in_channels, *S) with each side of S a multiple of 2^depth -> (B, out_channels, *S).
    `body` maps the input to the last hidden activations, `head` is the output 1x1 conv. Each side must be
    at least `min_side`: at the deepest scale BatchNorm needs more than one value per channel and
    reflection padding more pixels than it pads (`check_size` refuses smaller sizes).

    Args:
        in_channels: channels of the input code z (the task's `input_channels`).
        out_channels: channels of the output image.
        width: channels of every scale, down and up (the papers: 128).
        depth: number of scales; each halves the resolution once (the papers: 5).
        skip_channels: channels of each skip connection (0: no skips, the auto-encoder).
        channels_down: per-scale encoder channels (overrides `width` and `depth`).
        channels_up: per-scale decoder channels (overrides `width` and `depth`).
        channels_skip: per-scale skip channels (overrides `skip_channels` and `depth`).
        kernel_size_down: encoder conv kernel size.
        kernel_size_up: decoder conv kernel size.
        kernel_size_skip: skip conv kernel size.
        downsample_mode: `stride` (a stride-2 conv, DIP's default), `avg` or `max` pooling.
        upsample_mode: `bilinear` (linear in 1D), `nearest` or `bicubic`.
        activation: `leaky_relu` (DIP's LeakyReLU(0.2)), `relu`, `elu` or `tanh`.
        padding_mode: `reflect` (DIP's), `zeros`, `replicate` or `circular`.
        batch_norm: BatchNorm after every conv.
        conv1x1_up: a 1x1 conv block after each decoder conv.
        sigmoid: a sigmoid on the output (images in [0, 1]; off for signals of any range).
        dim: 2 for images, 1 for signals.
        dropout: probability of channel dropout (`layers.ChannelDropout`) at the places `dropout_at`; 0: none
            (the MC-dropout DIP of Laves et al. uses 0.3 in the down and up blocks; strategy `MCDropout`).
        dropout_at: where: `down` (after each encoder conv), `up` (after each decoder conv), `skip` (after
            each skip conv), `output` (on the last hidden activations, before the output conv). Inside a conv
            block the order is conv -> dropout -> BatchNorm -> activation, as in their code.
    """

    def __init__(self, in_channels: int = 32, out_channels: int = 3, *, width: int = 128, depth: int = 5,
                 skip_channels: int = 4, channels_down: list[int] | None = None,
                 channels_up: list[int] | None = None, channels_skip: list[int] | None = None,
                 kernel_size_down: int = 3, kernel_size_up: int = 3, kernel_size_skip: int = 1,
                 downsample_mode: str = "stride", upsample_mode: str = "bilinear",
                 activation: str = "leaky_relu", padding_mode: str = "reflect", batch_norm: bool = True,
                 conv1x1_up: bool = True, sigmoid: bool = True, dim: int = 2, dropout: float = 0.0,
                 dropout_at: list[str] | tuple[str, ...] = ("down", "up")) -> None:
        super().__init__()
        unknown = sorted(set(dropout_at) - set(DROPOUT_PLACES))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout}")
        if unknown:
            raise ValueError(f"unknown dropout_at {unknown}: choose from {list(DROPOUT_PLACES)}")
        rates = {place: dropout if place in dropout_at else 0.0 for place in DROPOUT_PLACES}
        down = list(channels_down or [width] * depth)
        up = list(channels_up or [width] * depth)
        skip = list(channels_skip or [skip_channels] * depth)
        if not len(down) == len(up) == len(skip) or not down:
            raise ValueError(f"channels_down/up/skip need one entry per scale, got {down}, {up}, {skip}")
        self.depth = len(down)
        self.size_multiple = 2**self.depth
        deeper, deeper_channels = None, 0
        for i in reversed(range(self.depth)):
            in_ch = in_channels if i == 0 else down[i - 1]
            deeper = _Scale(dim, in_ch, down[i], up[i], skip[i], deeper,
                            deeper_channels if deeper_channels else down[i], kernel_size_down,
                            kernel_size_up, kernel_size_skip, downsample_mode, upsample_mode, padding_mode,
                            batch_norm, activation, conv1x1_up, rates)
            deeper_channels = up[i]
        self.body = nn.Sequential(deeper, ChannelDropout(rates["output"])) if rates["output"] > 0 else deeper
        self.head = conv(dim, up[0], out_channels, 1, padding_mode=padding_mode)
        self.output_activation = nn.Sigmoid() if sigmoid else nn.Identity()
        # the deepest scale works at 1/2^depth of each side; the convs around it (stride-2 down, skip,
        # merge) at twice that
        widest = max(kernel_size_down, kernel_size_up, kernel_size_skip)
        self.deepest_side = smallest_side(lambda s: padding_fits(s, kernel_size_down, padding_mode)
                                          and padding_fits(2 * s, widest, padding_mode)
                                          and (not batch_norm or s**dim >= 2))
        self.min_side = self.size_multiple * self.deepest_side
        self._needs = " and ".join(need for need, active in (("BatchNorm", batch_norm),
                                                             (f"{padding_mode} padding", self.deepest_side > 1
                                                              and padding_mode in ("reflect", "circular")))
                                   if active)

    def check_size(self, size: tuple[int, ...]) -> None:
        """Refuse (InputError) an output size (*S) with a side below `min_side`, naming a depth that fits."""
        if min(size) >= self.min_side:
            return
        depths = [d for d in range(1, self.depth) if 2**d * self.deepest_side <= min(size)]
        needs = (f"a {self.depth}-scale network's deepest scale, 1/{self.size_multiple} of a side, needs "
                 f"{self.deepest_side} px for {self._needs}" if self.deepest_side > 1
                 else f"a {self.depth}-scale network halves each side {self.depth} times")
        refuse_size(size, self.min_side, needs, f"model.net.depth={depths[-1]}" if depths else "")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.head(self.body(z)))


class AutoEncoder(SkipNet):
    """DIP's hourglass without skip connections (the paper's "auto-encoder")."""

    def __init__(self, in_channels: int = 32, out_channels: int = 3, **kwargs) -> None:
        kwargs.setdefault("skip_channels", 0)
        super().__init__(in_channels, out_channels, **kwargs)
