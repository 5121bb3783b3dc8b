"""Building blocks shared by the DIP networks, for 1D signals and 2D images."""

from __future__ import annotations

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


def conv_block(dim: int, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
               padding_mode: str = "reflect", norm: bool = True, act: str = "leaky_relu") -> nn.Sequential:
    """conv -> BatchNorm -> activation, DIP's basic unit."""
    return nn.Sequential(
        conv(dim, in_channels, out_channels, kernel_size, stride=stride, padding_mode=padding_mode),
        batch_norm(dim, out_channels, norm),
        activation(act),
    )


def downsample(dim: int, in_channels: int, out_channels: int, kernel_size: int, mode: str, padding_mode: str,
               norm: bool, act: str) -> nn.Sequential:
    """Halve the resolution: a stride-2 conv block (DIP's default) or pooling followed by a conv block."""
    if mode == "stride":
        return conv_block(dim, in_channels, out_channels, kernel_size, stride=2, padding_mode=padding_mode,
                          norm=norm, act=act)
    pools = {"avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d}, "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d}}
    if mode not in pools:
        raise ValueError(f"unknown downsample mode {mode!r}: choose 'stride', 'avg' or 'max'")
    return nn.Sequential(pools[mode][dim](2),
                         conv_block(dim, in_channels, out_channels, kernel_size, padding_mode=padding_mode,
                                    norm=norm, act=act))


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
