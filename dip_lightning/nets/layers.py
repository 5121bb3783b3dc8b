"""Building blocks shared by the DIP networks, for 1D signals and 2D images."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}
PADDING_MODES = ("reflect", "zeros", "replicate", "circular")


def activation(name: str) -> nn.Module:
    """Activation layer by name (`leaky_relu` is DIP's LeakyReLU(0.2))."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def conv(dim: int, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
         padding_mode: str = "reflect", bias: bool = True) -> nn.Module:
    """Same-size ("half" padded) convolution of `dim` dimensions; stride 2 halves each side."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {padding_mode!r}: choose one of {PADDING_MODES}")
    conv_class = {1: nn.Conv1d, 2: nn.Conv2d}[dim]
    return conv_class(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      padding_mode=padding_mode, bias=bias)


def batch_norm(dim: int, channels: int, enabled: bool) -> nn.Module:
    """BatchNorm of `dim` dimensions, or identity when disabled."""
    if not enabled:
        return nn.Identity()
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dim](channels)


class Stochastic(nn.Module):
    """A layer that draws random numbers in its forward pass, row b of a batch (chain k of a stacked network)
    from `generators[b]` when they are set (`nets.chains.use_streams`), from the global stream when None."""

    def __init__(self) -> None:
        super().__init__()
        self.generators: list[torch.Generator] | None = None


class ChannelDropout(Stochastic):
    """Dropout of whole channels (nn.Dropout1d/2d's rule) that can draw each row's mask from its own stream.

    In training mode each (row, channel) of an input (B, C, *S) is zeroed with probability `p` and the rest
    are scaled by 1/(1 − p); in eval mode it is the identity. In a stacked network (`nets.chains`) the rows are
    the chains, so each chain drops its own channels, its mask drawn from its own stream (`Stochastic`: a
    run is then reproducible and resumable).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(*x.shape[:2], *[1] * (x.dim() - 2), device=x.device, dtype=x.dtype)
        if self.generators is None:
            keep.bernoulli_(1.0 - self.p)
        else:
            for row, generator in zip(keep, self.generators, strict=True):
                row.bernoulli_(1.0 - self.p, generator=generator)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def conv_block(dim: int, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
               padding_mode: str = "reflect", norm: bool = True, act: str = "leaky_relu",
               dropout: float = 0.0) -> nn.Sequential:
    """conv -> BatchNorm -> activation, DIP's basic unit; with `dropout` > 0 channel dropout after the conv
    (conv -> dropout -> BatchNorm -> activation, the MC-dropout DIP of Laves et al.)."""
    layers = [conv(dim, in_channels, out_channels, kernel_size, stride=stride, padding_mode=padding_mode)]
    if dropout > 0:
        layers.append(ChannelDropout(dropout))
    return nn.Sequential(*layers, batch_norm(dim, out_channels, norm), activation(act))


def downsample(dim: int, in_channels: int, out_channels: int, kernel_size: int, mode: str, padding_mode: str,
               norm: bool, act: str, dropout: float = 0.0) -> nn.Sequential:
    """Halve the resolution: a stride-2 conv block (DIP's default) or pooling followed by a conv block."""
    block = dict(padding_mode=padding_mode, norm=norm, act=act, dropout=dropout)
    if mode == "stride":
        return conv_block(dim, in_channels, out_channels, kernel_size, stride=2, **block)
    pools = {"avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d}, "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d}}
    if mode not in pools:
        raise ValueError(f"unknown downsample mode {mode!r}: choose 'stride', 'avg' or 'max'")
    return nn.Sequential(pools[mode][dim](2), conv_block(dim, in_channels, out_channels, kernel_size, **block))


def upsample(dim: int, mode: str) -> nn.Upsample:
    """Double the resolution by interpolation (`bilinear` means linear in 1D)."""
    modes = {"bilinear": {1: "linear", 2: "bilinear"}, "nearest": {1: "nearest", 2: "nearest"},
             "bicubic": {2: "bicubic"}}
    if mode not in modes or dim not in modes[mode]:
        raise ValueError(f"unknown upsample mode {mode!r} for {dim}D: choose 'bilinear' or 'nearest'")
    interp = modes[mode][dim]
    align = False if interp in ("linear", "bilinear", "bicubic") else None
    return nn.Upsample(scale_factor=2, mode=interp, align_corners=align)


def padding_fits(side: int, kernel_size: int, padding_mode: str) -> bool:
    """Whether a same-size convolution's padding works on a side of `side` pixels: reflection padding needs
    fewer padded pixels than the side, circular at most as many; zeros and replicate pad any side."""
    pad = kernel_size // 2
    return {"reflect": pad < side, "circular": pad <= side}.get(padding_mode, True)


def smallest_side(fits) -> int:
    """The smallest side s >= 1 for which `fits(s)` holds (every constraint here holds from some side on)."""
    side = 1
    while not fits(side):
        side += 1
    return side


def refuse_size(size: tuple[int, ...], min_side: int, needs: str, choice: str = "") -> None:
    """Raise the InputError of a spatial size (*S) with a side below `min_side`: `needs` says why, `choice`
    adds a network setting that fits."""
    shown = "x".join(map(str, size))
    raise InputError(f"the {shown} image is too small for this network: each side must be at least {min_side} px "
                     f"({needs}): use a larger image{', or ' + choice if choice else ''}")
