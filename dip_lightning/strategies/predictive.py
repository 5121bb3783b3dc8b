"""The common ground of MC dropout and mean-field VI: fit with SGD's machinery, return T stochastic passes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from ..moments import ChainMoments, State, pool_moments, variance
from ..nets.chains import chain_parameters, copy_chains, use_streams
from .base import Gather, Selection, chain_metrics, uncertainty_selection
from .sgd import SGD

if TYPE_CHECKING:
    from ..callbacks import SelectedParameters
    from ..tasks.base import RestorationTask

EVAL_SEED_OFFSET = 0x5EED_0F_7E57
"""Chain k's evaluation passes draw from a stream seeded by its training stream's seed plus this: the same
draws at every evaluation (the estimate changes only with the parameters), the training streams untouched."""


class PredictiveStrategy(SGD):
    """Fit the network with SGD's optimizers and stopping rules, then return the mean and the std of
    `samples` stochastic forward passes of every chain, pooled over all chains (of all processes): the
    spread within a chain and between chains. A subclass makes the passes stochastic (dropout masks,
    weights drawn from a variational posterior) and may split an extra output head off (`split`).

    The passes run the network as it is fitted (BatchNorm on each pass's batch statistics, as in every DIP
    step; its running statistics untouched) on the fixed code z, without input jitter, chain k's randomness
    from an evaluation stream of its own, seeded afresh for every evaluation (`EVAL_SEED_OFFSET`). With
    `stopping` `oracle` or `wmv` they run at each chain's parameters of the step its rule selects (kept during
    fitting by `SelectedParameters`); with `fixed`, at the final parameters.

    Args:
        samples: number T of stochastic passes per chain.
        eval_every_n_steps: steps between evaluations during fitting that log `psnr/posterior_mean` (with a
            ground truth) and `std/posterior_mean` (`callbacks.PredictiveLog`); 0: none.
        optimizer, lr, weight_decay, stopping, window, patience, backtracking, backtracking_drop_db,
            backtracking_every_n_steps, chains: as `SGD` (its `use_ema` does not apply: the image is the mean
            of the passes).
    """

    def __init__(self, samples: int = 25, eval_every_n_steps: int = 250,
                 optimizer: Literal["adam", "adamw", "sgd"] = "adam", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, stopping: Literal["fixed", "oracle", "wmv"] = "fixed",
                 window: int = 100, patience: int = 1000, backtracking: bool = False,
                 backtracking_drop_db: float = 5.0, backtracking_every_n_steps: int = 10, chains: int = 1) -> None:
        super().__init__(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         stopping=stopping, window=window, patience=patience, use_ema=False,
                         backtracking=backtracking, backtracking_drop_db=backtracking_drop_db,
                         backtracking_every_n_steps=backtracking_every_n_steps, chains=chains)
        if samples < 2:
            raise ValueError(f"samples must be >= 2 for a spread, got {samples}")
        self.samples = samples
        self.eval_every_n_steps = eval_every_n_steps
        self._selected: SelectedParameters | None = None

    # ----- what a subclass supplies ------------------------------------------------------------------------
    def sampling(self) -> AbstractContextManager:
        """The context in which a forward pass is one stochastic pass of the returned distribution (beyond
        training mode and the evaluation streams, which every pass gets)."""
        return nullcontext()

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A network output (K, C', *S) -> the image (K, C, *S) and an aleatoric variance (K, C, *S) or None."""
        return output, None

    # ----- fitting -----------------------------------------------------------------------------------------
    def callbacks(self, task: RestorationTask) -> list[Callback]:
        from ..callbacks import PredictiveLog, SelectedParameters

        callbacks = super().callbacks(task)  # backtracking, ES-WMV
        self._selected = SelectedParameters(self._rule_steps) if self.stopping != "fixed" else None
        if self._selected is not None:
            callbacks.append(self._selected)  # after ES-WMV, whose choice of this step it reads
        if self.eval_every_n_steps:
            callbacks.append(PredictiveLog(lambda t: self.predict(t)[0], self.eval_every_n_steps))
        return callbacks

    def _rule_steps(self, task: RestorationTask) -> torch.Tensor:
        """(K,): the step each chain's stopping rule selects so far (0: none yet); on the device, no sync."""
        return self._wmv.best.step if self.stopping == "wmv" else task.best.step

    # ----- the result --------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, task: RestorationTask) -> tuple[State, torch.Tensor | None]:
        """`samples` stochastic passes of this process's chains at their current parameters: their moments
        (count (K,), mean (K, C, *S), M2 (K, C, *S)) and the mean aleatoric variance (K, C, *S) or None.
        Leaves no trace: the network's mode, its buffers and the training streams are as before."""
        net, device = task.net, task.z.device
        buffers, training = [b.clone() for b in net.buffers()], net.training
        generators = [torch.Generator(device).manual_seed((g.initial_seed() + EVAL_SEED_OFFSET) % 2**63)
                      for g in task.generators]
        moments = ChainMoments(len(generators), 1, self.samples, tuple(task.output.shape[1:])).to(task.output)
        aleatoric = None
        net.train()
        try:
            with use_streams(net, generators), self.sampling():
                for index in range(self.samples):
                    image, noise = self.split(task(task.z).to(task.output.dtype))
                    moments.update(image, index)
                    if noise is not None:
                        aleatoric = noise / self.samples + (0 if aleatoric is None else aleatoric)
        finally:
            for buffer, saved in zip(net.buffers(), buffers, strict=True):
                buffer.copy_(saved)
            net.train(training)
        count, mean, m2 = (t[:, 0] for t in moments.state())
        return (count, mean, m2), aleatoric

    @contextmanager
    def _at_selected_parameters(self, task: RestorationTask) -> Iterator[torch.Tensor]:
        """Within the block each chain has its parameters of the step its stopping rule selected (the final
        ones under `fixed`, or where the rule chose the last step); yields those steps (K,)."""
        steps = self.selected_outputs(task)[1]
        if self._selected is None:
            yield steps
            return
        params = chain_parameters(task.net)
        final = [p.clone() for p in params]
        copy_chains(params, self._selected.params, steps < task.step)
        try:
            yield steps
        finally:
            torch._foreach_copy_(params, final)

    def select(self, task: RestorationTask, gather: Gather) -> Selection:
        """The mean of the passes pooled over every chain, with its std; chains whose passes are not finite
        (diverged) are left out (a warning says so), and with none left SGD's choice of outputs is returned."""
        with self._at_selected_parameters(task) as steps:
            (count, mean, m2), aleatoric = self.predict(task)
        finite = (torch.isfinite(mean).flatten(1).all(1) & torch.isfinite(m2).flatten(1).all(1)).long()
        count, mean, m2, steps, finite = (gather(t) for t in (count, mean, m2, steps, finite))
        finite = finite.bool()
        if not bool(finite.all()):
            rank_zero_warn(f"{int((~finite).sum())} of {len(finite)} chain(s) diverged (non-finite passes): "
                           f"{'left out of the result' if bool(finite.any()) else 'returning the outputs SGD selects'}")
            if not bool(finite.any()):
                return super().select(task, gather)
        total, pooled_mean, pooled_m2 = pool_moments(count[finite], mean[finite], m2[finite])
        metrics = {"samples": int(total), **chain_metrics(task, mean[finite])}
        if self.stopping != "fixed":
            metrics["step_per_chain"] = steps.tolist()
        maps = {}
        if aleatoric is not None:  # the observation's noise as the head predicts it, apart from the image's std
            aleatoric_std = gather(aleatoric)[finite].mean(0).sqrt()
            maps["aleatoric_std"] = aleatoric_std
            metrics["aleatoric_std_mean"] = float(aleatoric_std.mean())
        return uncertainty_selection(task, pooled_mean, variance(total, pooled_m2), metrics, maps=maps)
