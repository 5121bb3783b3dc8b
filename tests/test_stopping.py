"""Stopping and backtracking callbacks against brute-force references (fake trainer, tensor outputs)."""

from types import SimpleNamespace

import torch
from torch import nn

from dip_lightning.callbacks import Backtracking, WMVStopping
from dip_lightning.nets.chains import stack_chains


def _trainer():
    return SimpleNamespace(global_step=0, should_stop=False,
                           strategy=SimpleNamespace(reduce_boolean_decision=lambda x, all=True: x))


def test_wmv_selects_the_output_at_the_brute_force_variance_minimum_and_stops_after_patience():
    torch.manual_seed(0)
    window, patience, steps = 5, 12, 60
    # outputs settle (variance falls) until step 25, then drift apart again
    scales = torch.cat([torch.linspace(1, 0.05, 25), torch.linspace(0.05, 1, steps - 25)])
    outputs = [s * torch.randn(1, 2, 4, 4) + 0.5 for s in scales]
    module = SimpleNamespace(output=torch.zeros(1, 2, 4, 4), ema=torch.zeros(1, 2, 4, 4), step=torch.tensor(0))
    trainer = _trainer()
    wmv = WMVStopping(window, patience, check_every_n_steps=1)
    wmv.on_train_start(trainer, module)
    stopped_at = None
    for t, x in enumerate(outputs, start=1):
        trainer.global_step, module.step = t, torch.tensor(t)
        module.output = x
        wmv.on_train_batch_end(trainer, module, None, t, t)
        if trainer.should_stop and stopped_at is None:
            stopped_at = t
    stack = torch.stack([x.flatten() for x in outputs])
    variances = [((stack[t - window:t] - stack[t - window:t].mean(0)) ** 2).sum(1).mean() / stack.shape[1]
                 for t in range(window, steps + 1)]
    best = window + int(torch.stack(variances).argmin())
    images, steps = wmv.selection(module)
    assert steps.tolist() == [best]
    assert torch.equal(images, outputs[best - 1])
    assert stopped_at == best + patience


def _guarded_net(every_n_steps: int):
    """Two chains of a small stacked net in a fake task, with a started Backtracking guard."""
    net = stack_chains([nn.Conv1d(3, 2, 1), nn.Conv1d(3, 2, 1)])
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    trainer = _trainer()
    guard = Backtracking(drop_db=5.0, every_n_steps=every_n_steps)
    guard.on_train_start(trainer, module)
    return net, module, trainer, guard


def _chain(params, k: int) -> list[torch.Tensor]:
    return [p[k].detach().clone() for p in params]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_backtracking_restores_the_parameters_that_gave_a_chains_last_good_fit():
    net, module, trainer, guard = _guarded_net(every_n_steps=1)
    snapshots = []

    def step(psnr_0: float, psnr_1: float = 20.0) -> None:
        trainer.global_step = len(snapshots)
        guard.on_train_batch_start(trainer, module, 0, 0)
        snapshots.append([p.detach().clone() for p in net.parameters()])
        with torch.no_grad():  # the optimizer's update
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        module.psnr_observation = torch.tensor([psnr_0, psnr_1])
        guard.on_train_batch_end(trainer, module, None, 0, 0)

    step(20.0)  # good: keeps the update
    after_good = _chain(net.parameters(), 0)
    step(18.0)  # a 2 dB drop is tolerated
    assert not _same(after_good, _chain(net.parameters(), 0))
    step(10.0)  # an 8 dB drop: chain 0's parameters of the step that gave 18 dB come back
    assert _same(_chain(snapshots[1], 0), _chain(net.parameters(), 0))
    assert not _same(_chain(snapshots[1], 1), _chain(net.parameters(), 1))  # chain 1 was fine: it moved on
    step(float("nan"))  # non-finite counts as bad
    assert _same(_chain(snapshots[1], 0), _chain(net.parameters(), 0))


def test_backtracking_checks_only_every_n_steps():
    net, module, trainer, guard = _guarded_net(every_n_steps=2)
    for step, psnr in enumerate([20.0, 5.0, 5.0]):  # checked at steps 0 and 2
        trainer.global_step = step
        guard.on_train_batch_start(trainer, module, 0, 0)
        if step == 0:
            checked = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        unchecked = [p.detach().clone() for p in net.parameters()]
        module.psnr_observation = torch.tensor([psnr, psnr])
        guard.on_train_batch_end(trainer, module, None, 0, 0)
        if step == 1:  # the drop at an unchecked step goes unseen
            assert _same(unchecked, list(net.parameters()))
    # the drop at step 2 restores the parameters that gave 20 dB at step 0
    assert _same(checked, list(net.parameters()))
