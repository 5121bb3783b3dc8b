"""Per-step cost of `fit` against a bare PyTorch loop doing the same maths, for every strategy, in one process.

    python benchmarks/step_overhead.py                                   # every case, 3 alternating repeats
    python benchmarks/step_overhead.py --strategies psgld --sizes 64 --chains 1 --repeats 2   # a quick look

Cases: each strategy (`sgd` Adam with ES-WMV, backtracking and EMA as `denoise.yaml`; `sgld`, `psgld` and
`psgld-mh` (Metropolis-adjusted) as `sgld_denoise.yaml`; `mcdropout` and `mfvi` as their configs) x image size
(64², 256²) x chains (1, 4), on DIP's skip net (width 64, depth 5), a noisy crop of `astronaut` (sigma 25),
the squared-error loss on both sides. `fit` runs the real task, strategy and callbacks with a CSV logger at
`log_every_n_steps` 10, samplers with burn-in = warm-up so that the timed steps take a posterior sample every
10 steps (thin 10) and log it, and the divergence guard on (its band at 1e6 sigma², so that it checks and
saves states as shipped but a net a few steps from its initialisation does not stop the chains). The bare loop is a plain `for` loop over the same
network with the same maths: forward, loss, backward, the optimizer step (the Langevin step written by hand
with the same per-parameter noise draws; the Metropolis-adjusted step is `optim.PSGLD`'s, whose maths it is),
and what the strategy keeps (the EMA, the ES-WMV window, a backtracking check every 10 steps; a Welford
update of the posterior moments every 10 steps; the dropout masks; the variational draws and the KL).

Time is the thread CPU time (`time.thread_time`) of the steps after a warm-up, with torch on one thread, so
other processes on the machine do not count (the wall clock of a shared 2-core machine varies by 10-40%);
with `--device cuda` it is the wall clock between two device synchronisations (the GPU works while the
host runs ahead). Repeats alternate all runs; the fastest of each counts. Last line: `ratio: X`, the worst
fit / bare ratio.

    python benchmarks/step_overhead.py --device cuda --repeats 2       # on a GPU
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch

from dip_lightning import optim
from dip_lightning.data import ImageData
from dip_lightning.moments import ChainMoments
from dip_lightning.nets import SkipNet
from dip_lightning.nets.chains import chain_parameters, copy_chains, set_streams, stack_chains
from dip_lightning.nets.variational import VariationalWeights
from dip_lightning.strategies import SGD, SGLD, MCDropout, MeanFieldVI
from dip_lightning.tasks import Denoise
from dip_lightning.tasks.base import chain_psnr

WIDTH, DEPTH, SIGMA, JITTER, THIN, LOG_EVERY = 64, 5, 25 / 255, 1 / 30, 10, 10
STRATEGIES = ("sgd", "sgld", "psgld", "psgld-mh", "mcdropout", "mfvi")


def strategy_of(name: str, chains: int, burn_in: int):
    """The strategy of a case, as the shipped configs set it."""
    langevin = dict(burn_in=burn_in, thin=THIN, chains=chains, max_mse_ratio=1e6)
    return {
        "sgd": lambda: SGD(lr=0.01, stopping="wmv", chains=chains),
        "sgld": lambda: SGLD("sgld", lr=3.0, **langevin),
        "psgld": lambda: SGLD("psgld", lr=0.01, eps=1e-4, **langevin),
        "psgld-mh": lambda: SGLD("psgld", lr=0.01, eps=1e-4, metropolis=True, **langevin),
        "mcdropout": lambda: MCDropout(optimizer="adamw", lr=0.01, weight_decay=1e-4, chains=chains),
        "mfvi": lambda: MeanFieldVI(lr=0.01, chains=chains),
    }[name]()


def net_factory(name: str) -> Callable[..., torch.nn.Module]:
    return functools.partial(SkipNet, width=WIDTH, depth=DEPTH, dropout=0.3 if name == "mcdropout" else 0.0)


def jitter_of(name: str) -> float:
    return JITTER if name in ("sgd", "mcdropout") else 0.0


def clock(device: torch.device) -> float:
    """Seconds: on a GPU the wall clock once the device has finished its work; on a CPU the thread CPU time
    where torch runs on one thread (other processes do not count), else the wall clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


class StepClock(L.Callback):
    """`clock` at the start of step `warmup` and at the end of the last step (`trainer.max_steps`)."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.start, self.end = warmup, device, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = clock(self.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= trainer.max_steps:
            self.end = clock(self.device)


def time_fit(name: str, size: int, chains: int, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step of `Trainer.fit` (`clock`)."""
    torch.manual_seed(0)
    task = Denoise(net=net_factory(name), strategy=strategy_of(name, chains, warmup), reg_noise_std=jitter_of(name),
                   likelihood="gaussian")
    timer = StepClock(warmup, device)
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(max_steps=steps, accelerator=device.type, devices=1, enable_checkpointing=False,
                            logger=L.pytorch.loggers.CSVLogger(folder), log_every_n_steps=LOG_EVERY,
                            enable_model_summary=False, enable_progress_bar=False, callbacks=[timer],
                            default_root_dir=folder, use_distributed_sampler=False)
        trainer.fit(task, datamodule=ImageData("astronaut", crop=size))
    return (timer.end - timer.start) / (steps - warmup)


class Bare:
    """The bare loop's problem: the stacked network, its code, the observation, the chains' generators."""

    def __init__(self, name: str, size: int, chains: int, device: torch.device) -> None:
        torch.manual_seed(0)
        clean = ImageData("astronaut", crop=size).image[None]
        self.noisy = (clean + torch.randn_like(clean) * SIGMA).clamp(0, 1).to(device)
        self.net = stack_chains([net_factory(name)(32, 3) for _ in range(chains)]).to(device)
        self.z = torch.rand(chains, 32, size, size, device=device) * 0.1
        self.generators = [torch.Generator(device).manual_seed(k) for k in range(chains)]
        self.params = list(self.net.parameters())
        self.temperature = 2 * SIGMA**2 / self.noisy.numel()
        self.jitter = jitter_of(name)

    def loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs (K, C, H, W), each chain's mean squared error (K,))."""
        z = self.z
        if self.jitter:
            z = z + self.jitter * optim.gaussian_like([z], self.generators)[0]
        out = self.net(z)
        return out, (out - self.noisy).square().flatten(1).mean(1)


def bare_sgd(bare: Bare, name: str, step: int, state: dict) -> None:
    """Adam (AdamW for MC dropout; the KL for MFVI), the EMA, the ES-WMV window, backtracking every 10 steps."""
    if not state:
        if name == "mfvi":
            state["weights"] = VariationalWeights(bare.net, 1.0, 1e-3)
            set_streams(bare.net, bare.generators)
            bare.params = list(bare.net.parameters())
        elif name == "mcdropout":
            set_streams(bare.net, bare.generators)
        state["opt"] = (torch.optim.AdamW(bare.params, lr=0.01, weight_decay=1e-4) if name == "mcdropout"
                        else torch.optim.Adam(bare.params, lr=0.01))
        shape, device = (bare.z.shape[0], 3, *bare.z.shape[2:]), bare.z.device
        state["ema"] = torch.zeros(shape, device=device)
        n = math.prod(shape[1:])
        state["ring"] = torch.zeros(100, shape[0], n, device=device)
        state["sum"] = torch.zeros(shape[0], n, dtype=torch.float64, device=device)
        state["good"] = [p.detach().clone() for p in bare.params]
        state["good_psnr"] = torch.full(shape[:1], -math.inf, device=device)
    opt = state["opt"]
    opt.zero_grad()
    out, loss = bare.loss()
    total = loss.sum()
    if name == "mfvi":
        weights = state["weights"]
        total = total + bare.temperature * (weights.kl_divergence() + weights.point_log_prior()).sum()
    total.backward()
    opt.step()
    with torch.no_grad():
        out = out.detach()
        state["ema"].lerp_(out, 0.01)
        if name == "sgd":
            flat = out.flatten(1)
            slot = step % 100
            state["sum"] += flat.double() - state["ring"][slot].double()
            state["ring"][slot] = flat
            if step % 10 == 0:
                current = chain_psnr(out, bare.noisy)
                good = current >= state["good_psnr"] - 5
                copy_chains(chain_parameters(bare.net), state["good"], ~good)
                copy_chains(state["good"], chain_parameters(bare.net), good)
                state["good_psnr"] = torch.where(good, current, state["good_psnr"])


def bare_langevin(bare: Bare, name: str, step: int, state: dict) -> None:
    """The Langevin step by hand (SGLD, or pSGLD with its preconditioner frozen), noise drawn per parameter and
    chain as the sampler draws it; Metropolis-adjusted: optim.PSGLD's step; a Welford update every THIN steps."""
    chains = bare.z.shape[0]
    if not state:
        state["moments"] = ChainMoments(chains, 2, 10**6, (3, *bare.z.shape[2:])).to(bare.z.device)
        state["sample"] = torch.zeros(chains, 3, *bare.z.shape[2:], device=bare.z.device)
        if name == "psgld-mh":
            state["opt"] = optim.PSGLD(bare.params, lr=0.01, temperature=bare.temperature, prior_std=1.0, eps=1e-4,
                                       generator=bare.generators, metropolis=True,
                                       chain_losses=lambda: state["loss"])
        else:
            state["square_avg"] = [torch.zeros_like(p) for p in bare.params]
    for p in bare.params:
        p.grad = None
    out, loss = bare.loss()
    loss.sum().backward()
    with torch.no_grad():
        temperature, params = bare.temperature, [p.data for p in bare.params]
        if name == "psgld-mh":
            state["loss"] = loss.detach().double()
            opt = state["opt"]
            opt.step()
            state["sample"] = torch.where(opt.accepted.view(-1, 1, 1, 1), out, state["sample"])
        else:
            drift = torch._foreach_add([p.grad for p in bare.params], params, alpha=temperature)
            lr = 3.0 if name == "sgld" else 0.01
            if name == "psgld":
                if step < 5:  # the preconditioner adapts during the warm-up, then is frozen (as after burn-in)
                    torch._foreach_mul_(state["square_avg"], 0.99)
                    torch._foreach_addcmul_(state["square_avg"], drift, drift, value=0.01)
                    gain = torch._foreach_reciprocal(torch._foreach_add(torch._foreach_sqrt(state["square_avg"]), 1e-4))
                    state["gain"], state["gain_sqrt"] = gain, torch._foreach_sqrt(gain)
                torch._foreach_mul_(drift, state["gain"])
            torch._foreach_add_(params, drift, alpha=-lr)
            noise = optim.gaussian_like(params, bare.generators)
            if name == "psgld":
                torch._foreach_mul_(noise, state["gain_sqrt"])
            torch._foreach_add_(params, noise, alpha=math.sqrt(2 * lr * temperature))
            state["sample"] = out.detach()
        if step % THIN == 0:
            state["moments"].update(state["sample"], step // THIN)


def time_bare(name: str, size: int, chains: int, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step of the bare loop (`clock`)."""
    bare, state = Bare(name, size, chains, device), {}
    step_fn = bare_sgd if name in ("sgd", "mcdropout", "mfvi") else bare_langevin
    for step in range(steps):
        if step == warmup:
            start = clock(device)
        step_fn(bare, name, step, state)
    return (clock(device) - start) / (steps - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--chains", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--steps", type=int, nargs=2, default=[120, 35], metavar=("AT_64", "AT_256"),
                        help="steps per run at 64² and at 256² (and above), warm-up included")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    device = torch.device(args.device)
    least = args.warmup + 2 * THIN  # the samplers' burn-in is the warm-up, and a run must plan 2 samples
    if min(args.steps) < least:
        parser.error(f"--steps {' '.join(map(str, args.steps))}: each must be >= warm-up + 2 x thin = {least}")
    torch.set_num_threads(1)
    cases = [(name, size, chains) for size in args.sizes for chains in args.chains for name in args.strategies]
    times: dict[tuple, dict[str, list[float]]] = {case: {"fit": [], "bare": []} for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            steps = args.steps[0] if case[1] <= 64 else args.steps[1]
            times[case]["bare"].append(time_bare(*case, steps, args.warmup, device))
            times[case]["fit"].append(time_fit(*case, steps, args.warmup, device))
            print(f"{case}: bare {1e3 * times[case]['bare'][-1]:.1f} ms, fit {1e3 * times[case]['fit'][-1]:.1f} ms",
                  file=sys.stderr, flush=True)
    timing = (f"wall time per step on {torch.cuda.get_device_name(device)}" if device.type == "cuda"
              else f"thread CPU time per step, torch threads: {torch.get_num_threads()}")
    print(f"{timing}, warm-up {args.warmup} steps, {args.repeats} alternating repeats, fastest of each")
    print("| strategy | size | chains | bare ms/step | fit ms/step | fit / bare |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for case, runs in times.items():
        bare, fit = min(runs["bare"]), min(runs["fit"])
        worst = max(worst, fit / bare)
        print(f"| {case[0]} | {case[1]}² | {case[2]} | {1e3 * bare:.1f} | {1e3 * fit:.1f} | {fit / bare:.3f} |")
    print(f"ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
