"""Catch host synchronisations inside training steps: CUDA's sync debug mode, or a CPU stand-in.

`SyncCheck` arms a checker from the start of a step to the start of the next one (the step's hooks, the
training step, backward, the optimizer step, every callback's batch-end hook), for the steps that are on
no periodic check: the ones that must sync (listed in `PERIODIC`) are left out.

On CUDA the checker is `torch.cuda.set_sync_debug_mode("error")`: any synchronising call raises. On a CPU
nothing synchronises, so `ScalarReads` stands in: it records every operation that needs the value of a
tensor on the host (`.item()`, `bool(t)`, `float(t)`) or whose output size depends on tensor values
(`nonzero`, boolean masks, `unique`), the operations that synchronise a GPU. A read of a tensor that lives
on the host on a GPU too (the Adam step counter) is no sync; `HOST_TENSORS` names where those are read.
"""

from __future__ import annotations

import traceback
from collections import Counter

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SYNC_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2",
            "aten::unique_consecutive", "aten::unique_dim", "aten::masked_scatter"}
"""Operations that need tensor values on the host: each is a device synchronisation on a GPU."""

HOST_TENSORS = ("torch/optim/",)
"""Code whose scalar reads are of tensors kept on the host on a GPU too (torch's optimizers' step counts)."""

PERIODIC = {"log_every_n_steps": None, "StepProgressBar": 10, "NonFiniteGuard": 25, "LangevinChain": 25, "WMVStopping": 50,
            "RunArtifacts images": 250, "RunCheckpoint": 500}
"""The checks that must sync, by their period in steps: logging (the trainer's `log_every_n_steps`: the
logged values are read), the progress bar's refresh (it reads `psnr`), the guards' stop decisions (one `bool` each), images sent to image loggers and
checkpoints. A step n is checked when no period divides n or n + 1."""


class ScalarReads(TorchDispatchMode):
    """Records (operation, the innermost project or Lightning frame) for each host read of a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in SYNC_OPS:
            frames = [f for f in traceback.extract_stack() if "host_sync.py" not in f.filename]
            outer = max((i for i, f in enumerate(frames) if "/torch/" not in f.filename), default=0)
            where, inner = frames[outer], frames[outer + 1:]  # the last frame outside torch, torch's own frames
            if not any(part in f.filename for f in inner for part in HOST_TENSORS):
                self.reads.append((name, f"{where.filename}:{where.lineno} {where.line}"))
        return func(*args, **(kwargs or {}))


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside it and their tensor operands (`count`: an image unpacked into
    one tensor per pixel, `torch.stack([*image.flatten()])`, is one `stack` of that many operands), and the
    operations by name (`names`)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.names: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        operands = [a for a in tree_flatten((args, kwargs or {}))[0] if isinstance(a, torch.Tensor)]
        self.count += 1 + len(operands)
        self.names[func._schema.name] += 1
        return func(*args, **(kwargs or {}))


class SyncCheck(L.Callback):
    """Arms `checker` ("cuda" or "cpu") over each step whose number n (1-based) and n + 1 are multiples of
    none of `periods`; `checked` counts those steps, `reads` lists the CPU checker's findings."""

    def __init__(self, checker: str, periods: list[int]) -> None:
        self.checker, self.periods = checker, periods
        self.mode: ScalarReads | None = None
        self.armed = False
        self.checked = 0
        self.reads: list[tuple[str, str]] = []

    def quiet(self, step: int) -> bool:
        return all(step % p and (step + 1) % p for p in self.periods)

    def _arm(self) -> None:
        if self.checker == "cuda":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        else:
            self.mode = ScalarReads()
            self.mode.__enter__()
        self.armed = True

    def _disarm(self) -> None:
        if not self.armed:
            return
        if self.checker == "cuda":
            torch.cuda.set_sync_debug_mode(0)
        else:
            self.mode.__exit__(None, None, None)
            self.reads += self.mode.reads
        self.armed = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._disarm()
        step = trainer.global_step + 1  # the step about to run
        if step > 1 and self.quiet(step):  # the first step allocates lazily (optimizer state)
            self.checked += 1
            self._arm()

    def on_train_end(self, trainer, pl_module) -> None:
        self._disarm()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._disarm()
