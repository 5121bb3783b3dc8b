"""A per-layer Gaussian weight prior at PyTorch's default initialisation scale, as optimizer param groups.

PyTorch initialises a conv or linear layer's weight and bias from U(−1/sqrt(fan_in), 1/sqrt(fan_in)), of
variance 1/(3·fan_in); a zero-mean Gaussian prior of that variance per layer is the prior of the network
whose wide limit the GP view analyses, and it holds the weights that feed a BatchNorm (which the output
does not see the scale of) near their initial scale instead of letting them drift. BatchNorm's own
scale and shift (initialised to 1 and 0, not drawn) and any other parameter keep a fixed prior std.
Stds are looked up by parameter name from the module structure, so parameters stored elsewhere under
the same names (stacked per chain, say) get the same groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from ..nets.chains import ChainConv


def _fan_in(layer: nn.Module) -> int | None:
    """The fan-in PyTorch's default init of `layer` uses; None for a layer it does not draw that way."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, ChainConv):  # K stacked convolutions (several chains): each one's fan-in
        return layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    if isinstance(layer, _ConvNd):  # a transposed conv's weight is (in, out / groups, *k): PyTorch uses out
        channels = layer.out_channels if layer.transposed else layer.in_channels
        return channels // layer.groups * math.prod(layer.kernel_size)
    return None


def init_prior_stds(module: nn.Module, other_std: float = 1.0) -> dict[str, float]:
    """Parameter name -> prior std: 1/sqrt(3·fan_in) for the weight and bias of every conv and linear
    layer, `other_std` for every other parameter (BatchNorm's scale and shift)."""
    stds: dict[str, float] = {}
    for prefix, layer in module.named_modules():
        fan_in = _fan_in(layer)
        if fan_in is not None:
            for name, _ in layer.named_parameters(prefix=prefix, recurse=False):
                stds[name] = 1 / math.sqrt(3 * fan_in)
    return {name: stds.get(name, other_std) for name, _ in module.named_parameters()}


def prior_param_groups(named_parameters: Iterable[tuple[str, Tensor]],
                       stds: dict[str, float]) -> list[dict[str, Any]]:
    """Optimizer param groups, one per distinct prior std (key `prior_std`), in order of first appearance."""
    groups: dict[float, list[Tensor]] = {}
    for name, parameter in named_parameters:
        groups.setdefault(stds[name], []).append(parameter)
    return [{"params": params, "prior_std": std} for std, params in groups.items()]
