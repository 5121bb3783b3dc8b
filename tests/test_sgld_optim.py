"""dip_lightning.optim samplers: Gaussian targets, prior, noise placement, checkpoint resume."""

import copy
import io
import math

import pytest
import torch
from torch import nn

from dip_lightning.optim import PSGLD, SGLD, PaperSGLD

CHAINS, DIMS = 32, 256  # one (CHAINS, DIMS) tensor: 32 independent chains of a 256-dim target


def _target(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean m ~ N(0, 1) and variances v log-spaced over 0.1..2, one per dimension."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(DIMS, generator=gen), torch.logspace(math.log10(0.1), math.log10(2.0), DIMS)


def _moments(make_opt, m, v, temperature, burn_in, n, freeze=False, shape=(CHAINS, DIMS)):
    """Run the chain on L(θ) = T·Σ(θ−m)²/(2v), whose target exp(−L/T) is N(m, v).

    Returns the per-dimension mean and variance over all chains and the iterates after burn-in.
    The gradient is set in closed form to keep the test fast.
    """
    theta = nn.Parameter(torch.zeros(shape))
    mm, vv = m.expand(CHAINS, DIMS).reshape(shape), v.expand(CHAINS, DIMS).reshape(shape)
    opt = make_opt([theta], torch.Generator().manual_seed(0))
    s1, s2 = torch.zeros(shape), torch.zeros(shape)
    for i in range(burn_in + n):
        theta.grad = temperature * (theta.detach() - mm) / vv
        opt.step()
        if i == burn_in - 1 and freeze:
            opt.freeze_preconditioner()
        if i >= burn_in:
            s1 += theta.detach()
            s2 += theta.detach() ** 2
    s1, s2 = s1.reshape(CHAINS, DIMS) / n, s2.reshape(CHAINS, DIMS) / n
    mean = s1.mean(0)
    return mean, s2.mean(0) - mean**2


@pytest.mark.parametrize(
    "name, make_opt, burn_in, n, freeze",
    [
        ("SGLD", lambda p, g: SGLD(p, lr=0.01, temperature=0.5, generator=g), 1000, 4000, False),
        ("PSGLD", lambda p, g: PSGLD(p, lr=0.01, temperature=0.5, generator=g), 500, 3000, True),
    ],
    ids=["SGLD", "PSGLD-frozen"],
)
def test_recovers_gaussian_target(name, make_opt, burn_in, n, freeze):
    m, v = _target()
    mean, var = _moments(make_opt, m, v, 0.5, burn_in, n, freeze)
    mean_err = ((mean - m).abs() / v.sqrt()).mean()  # in target standard deviations
    var_err = ((var - v).abs() / v).mean()  # relative, per dimension
    var_bias = (var / v).mean() - 1
    print(
        f"{name}: |mean err| {mean_err:.4f} std, |var err| {var_err:.4f}, var bias {var_bias:+.4f}"
    )
    assert mean_err < 0.1
    assert var_err < 0.1
    assert abs(var_bias) < 0.05


def test_paper_sgld_spread_ignores_target_variance():
    m, _ = _target()
    variances = []
    for target_var in (0.1, 0.4):
        v = torch.full((DIMS,), target_var)
        make_opt = lambda p, g: PaperSGLD(p, lr=0.01, generator=g)  # noqa: E731
        mean, var = _moments(make_opt, m, v, 1.0, 1000, 3000, shape=(CHAINS, DIMS, 1))
        variances.append(var.mean())
        print(f"PaperSGLD target var {target_var}: sample var {var.mean():.5f}")
        assert (var / v).mean() < 0.5  # off by far more than 10%
    # a 4x larger target variance leaves the spread (nearly) unchanged: Adam ignores loss scale
    assert variances[1] / variances[0] == pytest.approx(1.0, abs=0.1)


def test_paper_sgld_noise_only_on_groups_with_noise():
    torch.manual_seed(0)
    model = nn.ModuleList(
        [nn.Conv1d(16, 64, 5), nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.Linear(64, 8)]
    )
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    reference = copy.deepcopy(model)
    torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=5e-8).step()
    for noise_std, expected in ((None, 0.02), (0.05, 0.05)):
        noisy = copy.deepcopy(model)
        conv_weights = [noisy[0].weight, noisy[1].weight]
        rest = [p for p in noisy.parameters() if all(p is not w for w in conv_weights)]
        opt = PaperSGLD([{"params": conv_weights}, {"params": rest, "noise_std": 0.0}], lr=0.01, noise_std=noise_std)
        calls: list[int] = []
        opt.register_step_post_hook(lambda *_, calls=calls: calls.append(1))
        opt.step()
        assert calls == [1]  # the user's hooks run once per step
        for (name, p), q in zip(noisy.named_parameters(), reference.parameters(), strict=True):
            if name.endswith("weight") and p.dim() in (3, 4):  # conv weights: Adam step + N(0, noise_std²)
                assert (p - q).std().item() == pytest.approx(expected, rel=0.05), name
            else:  # biases, BatchNorm, linear weights: the plain Adam step
                assert torch.equal(p, q), name


def test_sgld_flat_loss_samples_prior():
    prior_std, n_burn, n = 0.5, 500, 2000
    theta = nn.Parameter(torch.zeros(20_000))
    theta.grad = torch.zeros_like(theta)  # L = 0
    opt = SGLD([theta], lr=0.001, temperature=2.0, prior_std=prior_std,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    s1, s2 = 0.0, 0.0
    for i in range(n_burn + n):
        opt.step()
        if i >= n_burn:
            s1 += theta.detach().mean()
            s2 += theta.detach().pow(2).mean()
    mean, var = s1 / n, s2 / n - (s1 / n) ** 2
    print(f"SGLD prior: mean {mean:+.4f}, var {var:.4f} (target 0, {prior_std**2})")
    assert abs(mean) < 0.05 * prior_std
    assert var == pytest.approx(prior_std**2, rel=0.05)


def test_psgld_stays_stable_on_a_weight_the_loss_does_not_see_under_a_tight_prior():
    # a conv bias before a BatchNorm: zero loss gradient; DIP's temperature and pSGLD's lr, eps. With V
    # from the loss gradient only, G = 1/eps and the prior step lr·G·T/σ_p² = 3.9 (> 2) would diverge.
    prior_std, temperature = 0.02, 2 * (25 / 255) ** 2 / (3 * 64 * 64)
    theta = nn.Parameter(torch.full((20_000,), prior_std))
    opt = PSGLD([theta], lr=0.01, temperature=temperature, prior_std=prior_std,
                generator=torch.Generator().manual_seed(0))
    for i in range(3000):
        if i == 1000:
            opt.freeze_preconditioner()
        theta.grad = torch.zeros_like(theta)
        opt.step()
    std = float(theta.detach().std())
    assert math.isfinite(std) and 0.8 * prior_std < std < 1.4 * prior_std, std  # about the prior


def _model_and_loss():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 3, padding=1)
    )
    x, y = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    return model, lambda net: nn.functional.mse_loss(net(x), y)


def _steps(model, opt, loss_fn, n):
    def closure():  # the loss at the point: a Metropolis-adjusted step's energy
        opt.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        return loss

    for _ in range(n):
        opt.step(closure)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p, g: SGLD(p, lr=1e-3, prior_std=1.0, generator=g),
        lambda p, g: PSGLD(p, lr=1e-3, prior_std=1.0, generator=g),
        lambda p, g: PaperSGLD(p, lr=1e-3, generator=g),
        lambda p, g: SGLD(p, lr=1e-3, prior_std=1.0, generator=g, metropolis=True, adapt_until=6),
        lambda p, g: PSGLD(p, lr=1e-3, prior_std=1.0, generator=g, metropolis=True, adapt_until=3),
    ],
    ids=["SGLD", "PSGLD", "PaperSGLD", "MALA", "PMALA"],
)
def test_state_dict_resume_is_identical(make_opt):
    model, loss_fn = _model_and_loss()
    gen = torch.Generator().manual_seed(0)
    opt = make_opt(model.parameters(), gen)
    _steps(model, opt, loss_fn, 5)
    if isinstance(opt, PSGLD):
        opt.freeze_preconditioner()
        _steps(model, opt, loss_fn, 2)

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    gen_state = gen.get_state()
    _steps(model, opt, loss_fn, 5)

    buf.seek(0)
    ckpt = torch.load(buf)
    resumed, _ = _model_and_loss()
    resumed.load_state_dict(ckpt["model"])
    gen2 = torch.Generator()
    gen2.set_state(gen_state)
    opt2 = make_opt(resumed.parameters(), gen2)
    opt2.load_state_dict(ckpt["opt"])
    _steps(resumed, opt2, loss_fn, 5)
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_psgld_freeze_survives_state_dict():
    model, loss_fn = _model_and_loss()
    opt = PSGLD(model.parameters(), lr=1e-3)
    _steps(model, opt, loss_fn, 3)
    opt.freeze_preconditioner()
    frozen_v, frozen_g = opt.flat["square_avg"].clone(), opt.preconditioner().clone()
    _steps(model, opt, loss_fn, 3)
    assert torch.equal(opt.flat["square_avg"], frozen_v) and torch.equal(opt.preconditioner(), frozen_g)

    opt2 = PSGLD(model.parameters(), lr=1e-3)
    assert not opt2.frozen
    opt2.load_state_dict(opt.state_dict())
    assert opt2.frozen
    _steps(model, opt2, loss_fn, 2)
    assert opt2.flat["v_steps"] == 3
    assert torch.equal(opt2.flat["square_avg"], frozen_v) and torch.equal(opt2.preconditioner(), frozen_g)


def test_psgld_frozen_before_first_step_uses_first_gradient():
    theta = nn.Parameter(torch.zeros(10))
    opt = PSGLD([theta], lr=1e-3, alpha=0.9)
    opt.freeze_preconditioner()
    theta.grad = torch.full_like(theta, 2.0)
    opt.step()
    theta.grad = torch.full_like(theta, 5.0)
    opt.step()
    assert opt.flat["v_steps"] == 1
    assert torch.allclose(opt.flat["square_avg"], torch.full((1, 10), 0.1 * 4.0))


def test_a_frozen_psgld_proposal_follows_each_change_of_its_step_scale():
    """With G frozen the proposal's gains s·G and sqrt(s·G) are kept between steps; a change of the step scale s
    (a recovery's `scale_steps`) still reaches the next proposal θ' = θ − lr·s·G·d + sqrt(2·lr·T·s·G)·ξ."""
    lr, temperature = 1e-3, 0.5
    theta = nn.Parameter(torch.randn(2, 50, generator=torch.Generator().manual_seed(0)))
    opt = PSGLD([theta], lr=lr, temperature=temperature, generator=[torch.Generator().manual_seed(k) for k in (0, 1)])
    opt.freeze_preconditioner()
    for step in range(5):
        if step in (2, 4):
            opt.scale_steps(torch.tensor([True, step == 4]), 0.25)
        theta.grad = 3.0 * theta.detach()
        before, drift = theta.detach().clone(), theta.grad.clone()  # a flat prior: the drift is the gradient
        opt.step()
        gain = opt.step_scale[:, None] * opt.preconditioner()
        expected = before - lr * gain * drift + math.sqrt(2 * lr * temperature) * gain.sqrt() * opt.flat["noise"]
        torch.testing.assert_close(theta.detach(), expected)
    assert opt.step_scale.tolist() == [0.0625, 0.25]


def _chain_moments(make_opt, m, v, temperature, burn_in, n, seed=0):
    """CHAINS chains (one generator each) of the Gaussian target N(m, v) of `_moments`, the energy given to the
    optimizer; each chain starts at a draw of the target. Returns (mean over chains of the per-dimension variance ratio − 1,
    mean acceptance rate, mean step scale), the moments taken over all chains' states after burn-in."""
    theta = nn.Parameter(m + v.sqrt() * torch.randn(CHAINS, DIMS, generator=torch.Generator().manual_seed(seed)))
    losses = {}
    gens = [torch.Generator().manual_seed(1000 * seed + k) for k in range(CHAINS)]
    opt = make_opt([theta], gens, lambda: losses["loss"])
    s1, s2, accepted = torch.zeros(CHAINS, DIMS), torch.zeros(CHAINS, DIMS), torch.zeros(CHAINS)
    for i in range(burn_in + n):
        current = theta.detach()
        losses["loss"] = temperature * ((current - m) ** 2 / (2 * v)).sum(1)
        theta.grad = temperature * (current - m) / v
        opt.step()
        if i == burn_in - 1 and isinstance(opt, PSGLD):
            opt.freeze_preconditioner()
        if i >= burn_in:
            state = opt.state_point()
            s1, s2, accepted = s1 + state, s2 + state**2, accepted + opt.accepted
    mean = s1.mean(0) / n  # pooled over the chains (a chain's own variance over n correlated draws is low)
    var = s2.mean(0) / n - mean**2
    return float((var / v).mean() - 1), float(accepted.mean() / n), float(opt.step_scale.mean())


# Gaussian targets where the unadjusted step's variance is off by more than 10% (temperature 0.5, burn-in 800,
# 1500 steps after it, 32 chains; Metropolis-adjusted: unadjusted until step 800, or until 400 and then adapted
# until 800, the preconditioner frozen where the adjustment starts). Measured over seeds 0-4: SGLD (variances
# 0.1-2) unadjusted +15.1% to +15.2%, MALA -0.4% to +0.4% (acceptance 0.22-0.23), adapted -0.4% to +0.1% at
# acceptance 0.586-0.596; PSGLD (anisotropic: variances 0.01-1, eps 1e-8) unadjusted +12.8% to +12.9%, MALA
# -0.1% to +0.2% (acceptance 0.39-0.40), adapted -0.1% to +0.04% at acceptance 0.589-0.597. Asserted: the
# issue's figures (within 3%, acceptance in [0.45, 0.70]), several times the spread. Over 4 decades of
# variance RMSprop's G ∝ sqrt(v) leaves the widest directions mixing so slowly that 1500 steps estimate their
# variance a few % off: a mixing figure, not a bias (it shrinks with more steps), so the targets span 1-2.
TARGETS = {
    "SGLD": (SGLD, dict(lr=0.15), torch.logspace(math.log10(0.1), math.log10(2.0), DIMS)),
    "PSGLD": (PSGLD, dict(lr=0.06, eps=1e-8), torch.logspace(-2, 0, DIMS)),
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_metropolis_is_exact_where_the_unadjusted_step_is_not(name):
    cls, kwargs, v = TARGETS[name]
    m, _ = _target()
    temperature, burn_in, n = 0.5, 800, 1500
    runs = {}
    for label, extra in (("unadjusted", {}), ("metropolis", {"metropolis": True, "warmup_steps": burn_in}),
                         ("adapted", {"metropolis": True, "warmup_steps": burn_in // 2, "adapt_until": burn_in})):
        make = lambda p, g, losses, extra=extra: cls(p, temperature=temperature, generator=g,  # noqa: E731
                                                      chain_losses=losses, **kwargs, **extra)
        runs[label] = _chain_moments(make, m, v, temperature, burn_in, n)
        print(name, label, runs[label])
    assert runs["unadjusted"][0] > 0.10  # the unadjusted chain is too hot
    assert abs(runs["metropolis"][0]) < 0.03 and abs(runs["adapted"][0]) < 0.03
    assert 0.45 <= runs["adapted"][1] <= 0.70
    assert runs["metropolis"][1] < 0.45  # at the unadjusted step size MALA rejects often (0.23, 0.37)


@pytest.mark.parametrize("cls", [SGLD, PSGLD])
def test_the_unadjusted_diagnostic_on_every_kth_step_leaves_the_chain_and_its_values_as_they_were(cls):
    """diagnose_every=5 computes accept_prob on steps 5, 10, ... only (NaN on the others), equal to what the
    every-step diagnostic gives there; the chain's path is the same to the bit."""
    m, v = _target()
    runs = {}
    for every in (1, 5):
        theta = nn.Parameter(torch.zeros(4, DIMS))
        losses = {}
        opt = cls([theta], lr=0.05, temperature=0.5, generator=[torch.Generator().manual_seed(k) for k in range(4)],
                  chain_losses=lambda losses=losses: losses["loss"], diagnose_every=every)
        probs = []
        for _ in range(20):
            current = theta.detach()
            losses["loss"] = 0.5 * ((current - m) ** 2 / (2 * v)).sum(1)
            theta.grad = 0.5 * (current - m) / v
            opt.step()
            probs.append(opt.accept_prob.clone())
        runs[every] = theta.detach().clone(), torch.stack(probs)
    assert torch.equal(runs[1][0], runs[5][0])
    diagnosed = torch.arange(1, 21) % 5 == 0
    assert runs[5][1][~diagnosed].isnan().all()
    torch.testing.assert_close(runs[5][1][diagnosed], runs[1][1][diagnosed])
    assert (runs[5][1][diagnosed] > 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", [SGLD, PSGLD, PaperSGLD])
def test_cuda_step(cls):
    theta = nn.Parameter(torch.zeros(4, 3, 3, 3, device="cuda"))
    theta.grad = torch.ones_like(theta)
    gen = torch.Generator(device="cuda").manual_seed(0)
    opt = cls([theta], lr=1e-2, generator=gen)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(state)
    opt.step()
    assert theta.is_cuda and torch.isfinite(theta).all() and theta.std() > 0
