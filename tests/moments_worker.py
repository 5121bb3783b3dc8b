"""A spawned process of the cross-process moments test (kept light: spawned processes import only this)."""

import torch
import torch.distributed as dist

from dip_lightning.moments import ChainMoments, pool_moments


def gather_and_pool(rank: int, init: str, draws: torch.Tensor, result: str) -> None:
    """One of 2 processes: Welford moments of its half of the chains, gathered and pooled across processes."""
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    mine = draws[2 * rank:2 * rank + 2]  # 2 chains per process
    moments = ChainMoments(2, 4, 5, tuple(draws.shape[2:]))
    for i in range(draws.shape[1]):
        moments.update(mine[:, i], i)
    gathered = []
    for tensor in moments.state():
        parts = [torch.empty_like(tensor) for _ in range(2)]
        dist.all_gather(parts, tensor)
        gathered.append(torch.cat(parts).flatten(0, 1))
    if rank == 0:
        torch.save(pool_moments(*gathered), result)
    dist.destroy_process_group()
