"""Several processes (devices, nodes), each running its own independent chains: no gradient averaging.

Lightning's DDP copies rank 0's weights to every process and averages gradients, which would couple the
chains and shrink the Langevin noise. `IndependentChains` keeps DDP's process group, launchers and
collectives (guards decide together, moments are gathered) but never wraps the network, and each process
saves its own chains in its own checkpoint file. The run directory is chosen once for all processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.strategies import DDPStrategy

from .artifacts import new_run_dir
from .errors import InputError

RUN_DIR_ENV = "DIP_LIGHTNING_RUN_DIR"
"""Set by the launching process for the processes it starts: the run directory they share."""


class IndependentChains(DDPStrategy):
    """DDP's processes without DDP's model wrapper: every process fits its own chains.

    Checkpoints: rank 0 writes the given path, rank r writes `<name>.rank<r>.ckpt` beside it, and each
    rank resumes from its own file, so a resumed run continues every chain where it stopped.
    """

    strategy_name = "independent_chains"

    def configure_ddp(self) -> None:
        """Keep the LightningModule unwrapped: no weight broadcast, no gradient all-reduce."""

    def _rank_path(self, path: str | Path) -> Path:
        path = Path(path)
        return path if self.global_rank == 0 else path.with_name(f"{path.stem}.rank{self.global_rank}{path.suffix}")

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: str | Path,
                        storage_options: Any | None = None) -> None:
        self.checkpoint_io.save_checkpoint(checkpoint, self._rank_path(filepath), storage_options=storage_options)

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
        path = self._rank_path(checkpoint_path)
        if not path.is_file():
            raise InputError(f"process {self.global_rank} has no checkpoint {path}: resume a multi-process run with "
                             f"the same number of processes, from the run directory it wrote")
        return self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)

    def remove_checkpoint(self, filepath: str | Path) -> None:
        self.checkpoint_io.remove_checkpoint(self._rank_path(filepath))


def launched_processes() -> int:
    """The number of processes an external launcher started: torchrun's WORLD_SIZE, SLURM's SLURM_NTASKS; 1."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def process_count(accelerator: Any, devices: Any, num_nodes: int) -> int:
    """The number of processes of a run: a Trainer's devices per node x nodes, or those an external
    launcher started."""
    if accelerator in ("auto", None):
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    gpu = accelerator in ("gpu", "cuda")
    if devices in ("auto", None):
        per_node = torch.cuda.device_count() if gpu else 1
    else:
        parsed = (CUDAAccelerator if gpu else CPUAccelerator).parse_devices(devices)
        per_node = len(parsed) if isinstance(parsed, list) else int(parsed)
    return max(launched_processes(), per_node * num_nodes)


def chain_strategy(strategy: Any) -> IndependentChains:
    """The multi-process strategy for a Trainer `strategy` setting: auto or a DDP name maps to independent
    chains (with that DDP's start method); anything else is refused."""
    start_methods = {"auto": "popen", "ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork",
                     "ddp_notebook": "fork", "independent_chains": "popen"}
    if isinstance(strategy, IndependentChains):
        return strategy
    if strategy not in start_methods:
        raise InputError(f"trainer.strategy={strategy!r}: several processes run independent chains; use "
                         f"trainer.strategy=auto (or ddp / ddp_spawn for their launch method)")
    return IndependentChains(start_method=start_methods[strategy])


def shared_run_dir(root: str | Path, name: str, processes: int) -> Path:
    """The run directory, one for all processes of a run.

    One process: a new directory. Processes that this one will launch (Lightning's launcher) find it in
    RUN_DIR_ENV. Processes started by torchrun or SLURM name it after their job (SLURM_JOB_ID, else torchrun's
    rendezvous id: use `--standalone` or a `--rdzv-id` of your own), so that they all agree without talking.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    if launched_processes() > 1 and job:
        path = Path(root) / f"{name}-job{job}"
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = new_run_dir(root, name)
    if processes > 1:
        os.environ[RUN_DIR_ENV] = str(path)  # inherited by the processes the launcher starts
    return path
