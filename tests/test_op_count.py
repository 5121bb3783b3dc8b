"""The posterior update costs a few whole-tensor operations, whatever the image size: no per-pixel Python."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from host_sync import OpCounter

from dip_lightning.callbacks import PosteriorAverage
from dip_lightning.tasks.base import psnr


def _sample_step(size: int) -> int:
    """Aten operations and operands of one posterior update plus its logging (a sample step that is a log step) at 3 x size²."""
    torch.manual_seed(0)
    logged = {}
    truth = torch.rand(1, 3, size, size)
    task = SimpleNamespace(output=torch.rand(1, 3, size, size), has_ground_truth=True, ground_truth=truth,
                           data_range=1.0, log=lambda key, value: logged.update({key: value}))
    trainer = SimpleNamespace(max_steps=100, global_step=20, log_every_n_steps=10,
                              strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor))
    callback = PosteriorAverage(burn_in=0, thin=10)
    callback.on_train_start(trainer, task)
    with OpCounter() as counter:
        callback.on_train_batch_end(trainer, task, None, 0, 0)
    expected = psnr(task.output, truth)  # one sample: the posterior mean is the output
    assert torch.allclose(logged["psnr/posterior_mean"], expected)
    return counter.count


def test_a_posterior_update_with_its_logging_is_a_few_dozen_operations_at_any_size():
    small, large = _sample_step(16), _sample_step(256)
    # measured: 54 operations with 72 operands, 126 in all, at either size (Welford update, the pooled mean,
    # the PSNR; 139 with torchmetrics' PSNR before it was written out); with the image unpacked into one tensor per pixel, as the posterior update once did:
    # 906 at 16², 196 746 at 256²
    assert large == small and large <= 200, (small, large)
