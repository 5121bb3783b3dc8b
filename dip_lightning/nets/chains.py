"""K independent copies of a network evaluated as one: the chain dimension is the batch dimension.

`stack_chains` turns K networks of the same architecture into one module whose input and output carry
the chain index as their leading dimension, (K, C, *S). Every convolution becomes one grouped convolution
over the K chains' channels side by side and every BatchNorm one BatchNorm over K·C channels (batch
statistics per chain and channel, as in the K networks alone), so a step is one network evaluation for all
K chains, not a Python loop. Parameters keep their names with a leading chain dimension: chain k's weights
are `param[k]`, and the K chains never share a gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import Stochastic

_CONV = {1: F.conv1d, 2: F.conv2d}


def chain_parameters(net: nn.Module) -> list[torch.Tensor]:
    """The stacked network's parameter tensors, each (K, ...), as plain tensors for in-place updates."""
    return [p.data for p in net.parameters()]


def copy_chains(targets: list[torch.Tensor], sources: list[torch.Tensor], chains: torch.Tensor) -> None:
    """Row k of every target <- row k of its source for the chains k in the (K,) bool mask `chains`, in place
    and on the device (no host sync); targets and sources are (K, ...) tensors such as stacked parameters."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(torch.where(chains.view(-1, *[1] * (target.dim() - 1)), source, target))


class ChainConv(nn.Module):
    """K convolutions of one shape as one grouped convolution. Input (K, C, *S) -> (K, O, *S')."""

    def __init__(self, convs: list[nn.Conv1d | nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        self.dim = len(first.kernel_size)
        self.stride, self.dilation, self.groups = first.stride, first.dilation, first.groups
        self.in_channels, self.out_channels, self.kernel_size = first.in_channels, first.out_channels, first.kernel_size
        self.padding_mode = first.padding_mode
        self.padding = first.padding
        self.pad = first._reversed_padding_repeated_twice  # F.pad's order, for non-zero padding modes
        self.weight = nn.Parameter(torch.stack([c.weight.detach() for c in convs]))  # (K, O, C/groups, *k)
        self.bias = nn.Parameter(torch.stack([c.bias.detach() for c in convs])) if first.bias is not None else None
        self.memory_format = torch.contiguous_format

    def use_channels_last(self) -> None:
        """Run in channels_last (2D only): the weight is laid out so that its (K·O, C, kh, kw) view is
        channels_last (no copy per step), and the input's (1, K·C, H, W) view is made channels_last (a no-op
        when the previous layer kept the format; a copy otherwise)."""
        if self.dim != 2:
            raise InputError("model.channels_last applies to 2D convolutions; this network is 1D")
        weight = self.weight.detach()  # (K, O, C, kh, kw) with C innermost in memory
        self.weight.data = weight.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        self.memory_format = torch.channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.weight, self.bias)

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution of `x` (K, C, *S) with other stacked weights (K, O, C/groups, *k) and bias
        (K, O) or None (e.g. the variances of variational weights: `nets.variational`)."""
        chains = weight.shape[0]
        x = x.reshape(1, -1, *x.shape[2:]).contiguous(memory_format=self.memory_format)  # channels side by side
        padding = self.padding
        if self.padding_mode != "zeros":
            x, padding = F.pad(x, self.pad, mode=self.padding_mode), 0
        bias = None if bias is None else bias.flatten()
        weight = weight.flatten(0, 1).contiguous(memory_format=self.memory_format)  # a view when laid out
        y = _CONV[self.dim](x, weight, bias, self.stride, padding, self.dilation, self.groups * chains)
        return y.reshape(chains, self.out_channels, *y.shape[2:])  # a view in either format


class ChainBatchNorm(nn.Module):
    """K BatchNorms of C channels as one over K·C channels. Input (K, C, *S) -> the same shape.

    Batch statistics are per chain and channel (over the spatial positions of its one image), exactly
    those of the K BatchNorms alone; running statistics are (K, C) buffers.
    """

    def __init__(self, norms: list[nn.BatchNorm1d | nn.BatchNorm2d]) -> None:
        super().__init__()
        first = norms[0]
        if first.momentum is None:
            raise InputError("BatchNorm with momentum=None (a cumulative average) cannot run several chains at once")
        self.eps, self.momentum, self.track_running_stats = first.eps, first.momentum, first.track_running_stats
        self.num_features = first.num_features
        stack = lambda name: torch.stack([getattr(n, name).detach() for n in norms])  # noqa: E731
        self.weight = nn.Parameter(stack("weight")) if first.affine else None
        self.bias = nn.Parameter(stack("bias")) if first.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", stack("running_mean"))
            self.register_buffer("running_var", stack("running_var"))
        else:
            self.running_mean = self.running_var = None
        self.memory_format = torch.contiguous_format

    def use_channels_last(self) -> None:
        """Normalise the input's (1, K·C, H, W) view in channels_last (2D only), like `ChainConv`."""
        self.memory_format = torch.channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        flat = lambda t: None if t is None else t.view(-1)  # noqa: E731  (views: running stats update in place)
        stacked = x.reshape(1, -1, *x.shape[2:]).contiguous(memory_format=self.memory_format)
        y = F.batch_norm(stacked, flat(self.running_mean), flat(self.running_var),
                         flat(self.weight), flat(self.bias), use_batch_stats, self.momentum, self.eps)
        if self.memory_format != torch.contiguous_format:
            y = _GradInFormat.apply(y, self.memory_format)
        return y.reshape(x.shape)


class _GradInFormat(torch.autograd.Function):
    """Identity whose backward lays the gradient out in `memory_format`. CPU batch_norm's backward (torch 2.13)
    returned wrong input gradients when its gradient came in another memory format than its input (the
    padding before a channels_last convolution hands back a contiguous one), so a channels_last BatchNorm
    gets its gradient in its own format."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.memory_format = memory_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.contiguous(memory_format=ctx.memory_format), None


_STACKED = {nn.Conv1d: ChainConv, nn.Conv2d: ChainConv, nn.BatchNorm1d: ChainBatchNorm, nn.BatchNorm2d: ChainBatchNorm}


def stack_chains(nets: list[nn.Module]) -> nn.Module:
    """One module running the K networks `nets` (same architecture) at once on (K, C, *S) inputs.

    Convolutions and BatchNorms are stacked; every other layer must hold no parameters or buffers and
    treat batch entries independently (activations, padding, interpolation, pooling, concatenation), which
    holds for the DIP networks of `dip_lightning.nets`.
    """
    if type(nets[0]) in _STACKED:
        return _STACKED[type(nets[0])](nets)
    ensemble = copy.deepcopy(nets[0])
    members = [dict(net.named_modules()) for net in nets]
    for name, module in list(ensemble.named_modules()):
        if type(module) in _STACKED:
            parent, _, attr = name.rpartition(".")
            ensemble.get_submodule(parent).register_module(attr, _STACKED[type(module)]([m[name] for m in members]))
        elif next(module.parameters(recurse=False), None) is not None or next(module.buffers(recurse=False), None) \
                is not None:
            raise InputError(f"layer {name!r} ({type(module).__name__}) cannot run several chains at once: only "
                             f"Conv1d/2d and BatchNorm1d/2d layers hold weights in a chained network; use "
                             f"model.strategy.chains=1 with this network")
    return ensemble


@contextmanager
def use_streams(net: nn.Module, generators: list[torch.Generator] | None) -> Iterator[None]:
    """Within the block, every random layer of `net` (`layers.Stochastic`: dropout, variational weights) draws
    row k (chain k of a stacked network) from `generators[k]`; None: from the global stream. The layers' own
    streams are back afterwards. `set_streams` sets them for good."""
    layers = [module for module in net.modules() if isinstance(module, Stochastic)]
    previous = [layer.generators for layer in layers]
    set_streams(net, generators)
    try:
        yield
    finally:
        for layer, streams in zip(layers, previous, strict=True):
            layer.generators = streams


def set_streams(net: nn.Module, generators: list[torch.Generator] | None) -> None:
    """Make every random layer of `net` (`layers.Stochastic`) draw row k from `generators[k]` (None: the global
    stream), e.g. a task's per-chain streams, which its checkpoints save."""
    for module in net.modules():
        if isinstance(module, Stochastic):
            module.generators = generators


def to_channels_last(ensemble: nn.Module) -> None:
    """Put a stacked network's 2D convolutions and BatchNorms in channels_last (`use_channels_last`), in place;
    feed it inputs in `chains_channels_last` layout. InputError for a network with no 2D convolution."""
    convs = [m for m in ensemble.modules() if isinstance(m, ChainConv)]
    if not convs:
        raise InputError("model.channels_last needs a network of 2D convolutions")
    for conv in convs:
        conv.use_channels_last()
    for norm in ensemble.modules():
        if isinstance(norm, ChainBatchNorm):
            norm.use_channels_last()


def chains_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(K, C, H, W) laid out so that its (1, K·C, H, W) view is channels_last (for one chain: channels_last)."""
    return x.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)


def chain_state_dict(ensemble: nn.Module, chain: int) -> dict[str, torch.Tensor]:
    """The state dict of chain `chain` alone, loadable into one of the networks that were stacked."""
    return {name: value[chain] for name, value in ensemble.state_dict().items()}
