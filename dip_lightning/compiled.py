"""A network's forward compiled by `torch.compile`, falling back to the eager network where it cannot compile."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn


class CompiledForward:
    """Calls `torch.compile(net.forward)`; if the first call fails (no compiler, an unsupported backend or
    operation), warns in one line and calls the eager `net` from then on. The network's parameters, names
    and state dict are untouched (not wrapped in an `OptimizedModule`), so checkpoints are interchangeable
    with uncompiled runs. `compiled` says whether the compiled path is in use."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.forward = torch.compile(net.forward)
        self.compiled = True
        self._tried = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self.net(x)
        if self._tried:
            return self.forward(x)
        try:
            y = self.forward(x)
        except Exception as err:  # noqa: BLE001  (any compiler failure: the run goes on uncompiled)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            rank_zero_warn(f"model.compile: torch.compile could not compile the network ({type(err).__name__}: "
                           f"{reason}); running it uncompiled")
            self.compiled = False
            return self.net(x)
        self._tried = True
        return y
