"""Stopping and backtracking callbacks against brute-force references (fake trainer, tensor outputs)."""

from types import SimpleNamespace

import torch
from torch import nn

from dip_lightning.callbacks import Backtracking, WMVStopping
from dip_lightning.nets.chains import stack_chains


def _trainer():
    return SimpleNamespace(global_step=0, should_stop=False,
                           strategy=SimpleNamespace(reduce_boolean_decision=lambda x, all=True: x))


def _run_wmv(outputs: list[torch.Tensor], window: int, patience: int, check_every: int):
    """ES-WMV over the given outputs (K, C, H, W) per step; returns (its selection, the step it stopped at)."""
    module = SimpleNamespace(output=torch.zeros_like(outputs[0]), ema=torch.zeros_like(outputs[0]),
                             step=torch.tensor(0))
    trainer = _trainer()
    wmv = WMVStopping(window, patience, check_every_n_steps=check_every)
    wmv.on_train_start(trainer, module)
    for t, x in enumerate(outputs, start=1):
        trainer.global_step, module.step = t, torch.tensor(t)
        module.output = x
        wmv.on_train_batch_end(trainer, module, None, t, t)
        if trainer.should_stop:
            return wmv.selection(module), t
    return wmv.selection(module), None


def _settling_outputs(chains: int, steps: int, settle: list[int]) -> list[torch.Tensor]:
    """Outputs whose spread falls until step settle[k] for chain k, then grows again."""
    torch.manual_seed(0)
    scales = torch.stack([torch.cat([torch.linspace(1, 0.05, s), torch.linspace(0.05, 1, steps - s)]) for s in settle])
    return [scales[:, t].view(chains, 1, 1, 1) * torch.randn(chains, 2, 4, 4) + 0.5 for t in range(steps)]


def test_wmv_selects_the_output_at_the_brute_force_variance_minimum_and_stops_after_patience():
    window, patience, steps = 5, 12, 60
    outputs = _settling_outputs(1, steps, [25])
    (images, chosen), stopped_at = _run_wmv(outputs, window, patience, check_every=1)
    stack = torch.stack([x.flatten() for x in outputs])
    variances = [((stack[t - window:t] - stack[t - window:t].mean(0)) ** 2).sum(1).mean() / stack.shape[1]
                 for t in range(window, steps + 1)]
    best = window + int(torch.stack(variances).argmin())
    assert chosen.tolist() == [best]
    assert torch.equal(images, outputs[best - 1])
    assert stopped_at == best + patience


def test_wmv_chains_choose_alone_the_run_stops_when_all_are_done_and_checks_change_nothing_chosen():
    window, patience, steps = 5, 12, 90
    outputs = _settling_outputs(2, steps, [20, 45])
    (images, chosen), stopped_at = _run_wmv(outputs, window, patience, check_every=1)
    for k in range(2):  # each chain's own minimum, as if it ran alone
        (alone, step), _ = _run_wmv([x[k:k + 1] for x in outputs], window, patience, check_every=1)
        assert chosen[k] == step[0] and torch.equal(images[k], alone[0])
    assert stopped_at == int(chosen.max()) + patience  # the later chain decides
    (sparse_images, sparse_chosen), sparse_stop = _run_wmv(outputs, window, patience, check_every=7)
    assert torch.equal(sparse_chosen, chosen) and torch.equal(sparse_images, images)  # decided every step
    assert sparse_stop % 7 == 0 and stopped_at <= sparse_stop < stopped_at + 7


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
