"""Per-step cost of `fit` against a bare PyTorch loop doing the same maths, for every strategy, in one process.

    python benchmarks/step_overhead.py                                   # every case, 3 alternating repeats
    python benchmarks/step_overhead.py --strategies psgld --sizes 64 --chains 1 --repeats 2   # a quick look

Cases: each strategy (`sgd` Adam with ES-WMV, backtracking and EMA as `denoise.yaml`; `sgld`, `psgld` and
`psgld-mh` (Metropolis-adjusted) as `sgld_denoise.yaml`; `mcdropout` and `mfvi` as their configs) x image size
(64², 256²) x chains (1, 4), on DIP's skip net (width 64, depth 5), a noisy crop of `astronaut` (sigma 25),
the squared-error loss on both sides. `fit` runs the real task, strategy and callbacks with a CSV logger at
`log_every_n_steps` 10, samplers with burn-in = warm-up (a multiple of 10) so that the timed steps take a
posterior sample every 10 steps (thin 10) on the log steps and log its running mean, and the divergence guard on (its band at 1e6 sigma², so that it checks and
saves states as shipped but a net a few steps from its initialisation does not stop the chains). The bare
loop is a plain `for` loop over the same network with the same maths: forward, loss, backward, the optimizer
step (Adam, AdamW, or the Langevin step of `optim.SGLD` / `optim.PSGLD` with its Metropolis-Hastings gauge
every 10 steps, as `fit` runs it, the preconditioner frozen at the warm-up's end), what a DIP notebook's loop
does after each step and `fit` does too (the EMA of the outputs; the PSNRs of the output to the observation
and to the truth and of the EMA to the truth; each chain's best output so far; the PSNRs read on the host
every 10 steps, as a logger does), and what the strategy keeps (the ES-WMV window and a backtracking check
every 10 steps; each chain's noise ratio, its in-band test and a save of its in-band state every 25 steps,
the guard's; a Welford update of the posterior moments every 10 steps; the dropout masks; the variational
draws and the KL). `--langevin-step` times the Langevin step alone instead:
`optim.PSGLD`'s against the same step written by hand with `torch._foreach_*` ops.

Time is the thread CPU time (`time.thread_time`) of each step after a warm-up, with torch on one thread, so
other processes on the machine do not count (the wall clock of a shared 2-core machine varies by 10-40%).
Repeats alternate all runs; a run's time per step is the sum over its steps of each step's fastest time
across the repeats, divided by the steps (a disturbance slows a few steps of one repeat, not the same
step of every repeat; step i does the same work in every repeat, its log and sample steps included; a
pause that lands on different steps in different repeats, as Python's garbage collection can, drops out of
it). With
`--device cuda` it is the wall clock between two device synchronisations, at the warm-up and at the end
(the GPU works while the host runs ahead), and the fastest run counts. The table also gives each repeat's
whole-run ratio (each repeat's every pause included), the spread. Last line: `ratio: X`, the worst fit / bare ratio.

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
from types import SimpleNamespace

import lightning as L
import torch

from dip_lightning import optim
from dip_lightning.data import ImageData
from dip_lightning.moments import ChainMoments
from dip_lightning.nets import SkipNet
from dip_lightning.nets.chains import chain_parameters, copy_chains, set_streams, stack_chains
from dip_lightning.nets.variational import VariationalWeights
from dip_lightning.optim.sgld import FlatLayout, Langevin, fill_normal_
from dip_lightning.strategies import SGD, SGLD, MCDropout, MeanFieldVI
from dip_lightning.tasks import Denoise
from dip_lightning.tasks.base import chain_psnr, psnr
from dip_lightning.tasks.noise import GaussianNoise
from dip_lightning.tracking import ArgBest

WIDTH, DEPTH, SIGMA, JITTER, THIN, LOG_EVERY = 64, 5, 25 / 255, 1 / 30, 10, 10
# the guard's band (sigma²): it checks and saves states as shipped, but a net a few steps from its initialisation
# does not leave it and stop the chains; and its check period (LangevinChain's default)
MAX_MSE_RATIO, GUARD_EVERY = 1e6, 25
STRATEGIES = ("sgd", "sgld", "psgld", "psgld-mh", "mcdropout", "mfvi")


def strategy_of(name: str, chains: int, burn_in: int):
    """The strategy of a case, as the shipped configs set it."""
    langevin = dict(burn_in=burn_in, thin=THIN, chains=chains, max_mse_ratio=MAX_MSE_RATIO)
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


def marks_step(step: int, warmup: int, last: int | None, device: torch.device) -> bool:
    """Whether the clock is read at the start of `step`: at the warm-up's end, at step `last`, and on a CPU at
    every step between (on a GPU a synchronisation per step would stop the host from running ahead)."""
    inside = step > warmup and (last is None or step < last)
    return step in (warmup, last) or (inside and device.type != "cuda")


class StepClock(L.Callback):
    """`clock` at the start of the steps `marks_step` names and, without a `last` step, at the end of the run's
    last step (`trainer.max_steps`; the hooks of later callbacks in that step are then left out): `marks`,
    seconds."""

    def __init__(self, warmup: int, device: torch.device, last: int | None = None) -> None:
        self.warmup, self.device, self.last, self.marks = warmup, device, last, []

    @property
    def start(self) -> float:
        return self.marks[0]

    @property
    def end(self) -> float:
        return self.marks[-1]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if marks_step(trainer.global_step, self.warmup, self.last, self.device):
            self.marks.append(clock(self.device))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.last is None and trainer.global_step >= trainer.max_steps:
            self.marks.append(clock(self.device))


def segments(marks: list[float]) -> list[float]:
    """Seconds between consecutive clock marks: each timed step (CPU), or the whole timed run (GPU)."""
    return [end - start for start, end in zip(marks, marks[1:])]


def time_fit(name: str, size: int, chains: int, steps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each timed segment of `Trainer.fit` (`segments`): steps `warmup` to `steps` - 1, each with every
    hook of its own (the run takes one step more, whose start ends the timing)."""
    torch.manual_seed(0)
    task = Denoise(net=net_factory(name), strategy=strategy_of(name, chains, warmup), reg_noise_std=jitter_of(name),
                   likelihood="gaussian")
    timer = StepClock(warmup, device, last=steps)
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(max_steps=steps + 1, accelerator=device.type, devices=1, enable_checkpointing=False,
                            logger=L.pytorch.loggers.CSVLogger(folder), log_every_n_steps=LOG_EVERY,
                            enable_model_summary=False, enable_progress_bar=False, callbacks=[timer],
                            default_root_dir=folder, use_distributed_sampler=False)
        trainer.fit(task, datamodule=ImageData("astronaut", crop=size))
    return segments(timer.marks)


class Bare:
    """The bare loop's problem: the stacked network, its code, the observation and the truth, the chains'
    generators."""

    def __init__(self, name: str, size: int, chains: int, device: torch.device) -> None:
        torch.manual_seed(0)
        clean = ImageData("astronaut", crop=size).image[None]
        self.clean, self.noisy = clean.to(device), (clean + torch.randn_like(clean) * SIGMA).clamp(0, 1).to(device)
        self.net = stack_chains([net_factory(name)(32, 3) for _ in range(chains)]).to(device)
        self.z = torch.rand(chains, 32, size, size, device=device) * 0.1
        self.generators = [torch.Generator(device).manual_seed(k) for k in range(chains)]
        self.params = list(self.net.parameters())
        self.noise_model = GaussianNoise((SIGMA,), (SIGMA,), floor=0.0)  # sigma known, as Denoise(sigma=25)
        self.temperature = self.noise_model.temperature(1.0, self.noisy.numel())  # the Bayes posterior's T
        self.jitter = jitter_of(name)

    def loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs (K, C, H, W), each chain's mean squared error (K,))."""
        z = self.z
        if self.jitter:
            z = z + self.jitter * optim.gaussian_like([z], self.generators)[0]
        out = self.net(z)
        return out, (out - self.noisy).square().flatten(1).mean(1)


def bare_track(bare: Bare, out: torch.Tensor, step: int, state: dict) -> None:
    """After every step, as a DIP notebook's loop: the EMA of the outputs, the PSNRs of the output to the
    observation and to the truth and of the EMA to the truth, each chain's best output; read every LOG_EVERY."""
    if "ema" not in state:
        state["ema"], state["best"] = torch.zeros_like(out), ArgBest(tuple(out.shape)).to(out.device)
        state["step"] = torch.zeros((), dtype=torch.long, device=out.device)
    state["step"].add_(1)
    state["ema"].lerp_(out, 0.01)
    truth = chain_psnr(out, bare.clean)
    state["best"].update(truth, out, state["step"])
    psnrs = torch.stack([chain_psnr(out, bare.noisy), truth, chain_psnr(state["ema"], bare.clean)])
    if (step + 1) % LOG_EVERY == 0:
        state["logged"] = psnrs.mean(1).tolist()


def bare_sgd(bare: Bare, name: str, step: int, state: dict) -> None:
    """Adam (AdamW for MC dropout; the KL for MFVI), the tracking, the ES-WMV window, backtracking every 10
    steps."""
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
        bare_track(bare, out, step, state)
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


def langevin_optimizer(name: str, bare: Bare, burn_in: int) -> tuple[Langevin, SimpleNamespace]:
    """The case's sampler as `fit` builds it, by the case's strategy (`strategy_of`), from what its
    `configure_optimizer` reads of a task: (the sampler, that task view, whose `chain_loss` the step sets)."""
    task = SimpleNamespace(net=bare.net, generators=bare.generators, num_observed=bare.noisy.numel(),
                           noise_model=bare.noise_model,
                           hparams=SimpleNamespace(reg_noise_std=bare.jitter),
                           _trainer=SimpleNamespace(log_every_n_steps=LOG_EVERY),
                           chain_loss=torch.zeros(bare.z.shape[0], dtype=torch.float64, device=bare.z.device))
    return strategy_of(name, bare.z.shape[0], burn_in).configure_optimizer(task), task


def bare_langevin(bare: Bare, name: str, step: int, state: dict, warmup: int) -> None:
    """The sampler's step, the tracking, the guard (each chain's noise ratio and in-band test; every
    GUARD_EVERY steps its in-band state saved and one host read), a Welford update every THIN steps."""
    chains = bare.z.shape[0]
    if not state:
        state["moments"] = ChainMoments(chains, 2, 10**6, (3, *bare.z.shape[2:])).to(bare.z.device)
        state["sample"] = torch.zeros(chains, 3, *bare.z.shape[2:], device=bare.z.device)
        state["opt"], state["task"] = langevin_optimizer(name, bare, burn_in=warmup)
    opt = state["opt"]
    if step == warmup and isinstance(opt, optim.PSGLD):
        opt.freeze_preconditioner()  # as after burn-in
    for p in bare.params:
        p.grad = None
    out, loss = bare.loss()
    loss.sum().backward()
    with torch.no_grad():
        state["task"].chain_loss = loss.detach().double()
        opt.step()
        out = out.detach()
        bare_track(bare, out, step, state)
        in_band = loss.detach() / SIGMA**2 <= MAX_MSE_RATIO
        if (step + 1) % GUARD_EVERY == 0:
            point = opt.state_point()
            state["good"] = torch.where(in_band[:, None], point, state.get("good", point))
            bool(in_band.all())
        state["sample"] = torch.where(opt.accepted.view(-1, 1, 1, 1), out, state["sample"]) if opt.metropolis else out
        if step >= warmup and (step + 1 - warmup) % THIN == 0:  # a sample, on a log step: the running mean's PSNR
            state["moments"].update(state["sample"], (step + 1 - warmup) // THIN - 1)
            _, mean, _ = state["moments"].posterior()
            float(psnr(mean[None], bare.clean))


def langevin_step_by_hand(params: list[torch.Tensor], temperature: float, generators: list[torch.Generator],
                          state: dict) -> None:
    """pSGLD's step with a frozen preconditioner G, written by hand: θ ← θ − lr·G·d + sqrt(2·lr·T·G)·ξ,
    d = ∇L + T·θ, the noise drawn per parameter and chain as the sampler draws it."""
    lr = 0.01
    drift = torch._foreach_add([p.grad for p in params], params, alpha=temperature)
    if "gain" not in state:
        square = torch._foreach_mul(drift, drift)
        state["gain"] = torch._foreach_reciprocal(torch._foreach_add(torch._foreach_sqrt(square), 1e-4))
        state["gain_sqrt"] = torch._foreach_sqrt(state["gain"])
    torch._foreach_mul_(drift, state["gain"])
    torch._foreach_add_(params, drift, alpha=-lr)
    noise = optim.gaussian_like(params, generators)
    torch._foreach_mul_(noise, state["gain_sqrt"])
    torch._foreach_add_(params, noise, alpha=math.sqrt(2 * lr * temperature))


def time_langevin_steps(chains: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step of the pSGLD step alone (frozen preconditioner, fixed gradients): (`optim.PSGLD`'s,
    by hand)."""
    times = []
    for by_hand in (False, True):
        bare = Bare("psgld", 64, chains, device)
        for p in bare.params:
            p.grad = torch.randn_like(p) * 1e-3
        opt, state = None, {}
        if not by_hand:
            opt, _ = langevin_optimizer("psgld", bare, burn_in=0)
            opt.diagnose_every = steps + 1  # no MH gauge: as by hand
            opt.freeze_preconditioner()
        for step in range(steps):
            if step == warmup:
                start = clock(device)
            if by_hand:
                with torch.no_grad():  # as the optimizer's step
                    langevin_step_by_hand(bare.params, bare.temperature, bare.generators, state)
            else:
                opt.step()
        times.append((clock(device) - start) / (steps - warmup))
    return times[0], times[1]


def bare_step(name: str, warmup: int) -> Callable[[Bare, str, int, dict], None]:
    """The bare loop's step of a strategy (a sampler's burn-in ends at `warmup`)."""
    return bare_sgd if name in ("sgd", "mcdropout", "mfvi") else functools.partial(bare_langevin, warmup=warmup)


def time_bare(name: str, size: int, chains: int, steps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each timed segment of the bare loop (`segments`)."""
    bare, state, marks = Bare(name, size, chains, device), {}, []
    step_fn = bare_step(name, warmup)
    for step in range(steps):
        if marks_step(step, warmup, None, device):
            marks.append(clock(device))
        step_fn(bare, name, step, state)
    marks.append(clock(device))
    return segments(marks)


def per_step(repeats: list[list[float]], steps: int) -> float:
    """Seconds per step: the sum over segments of each segment's fastest time across the repeats, over `steps`."""
    return sum(map(min, zip(*repeats, strict=True))) / steps


def time_noise_draws(chains: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step of the Langevin noise alone, into a (K, D) buffer: (one draw per parameter tensor and
    chain, as `fill_normal_` draws it; one draw per chain over its whole row, a different stream)."""
    layout = FlatLayout(list(Bare("psgld", 64, chains, device).params), chains)
    noise, generators = layout.zeros(), [torch.Generator(device).manual_seed(k) for k in range(chains)]
    views, times = layout.views(noise), []
    for per_parameter in (True, False):
        for step in range(steps + 1):
            if step == 1:  # the first draw (its memory's first touch) untimed
                start = clock(device)
            if per_parameter:
                fill_normal_(views, generators)
            else:
                for row, generator in zip(noise, generators, strict=True):
                    row.normal_(generator=generator)
        times.append((clock(device) - start) / steps)
    return times[0], times[1]


def print_langevin_steps(args: argparse.Namespace, device: torch.device) -> None:
    """The pSGLD step alone at each chain count, `optim.PSGLD`'s against by hand (fastest of the repeats)."""
    print(f"pSGLD step alone (width {WIDTH}, depth {DEPTH}, frozen preconditioner), {args.steps[0]} steps, "
          f"warm-up {args.warmup}, fastest of {args.repeats} alternating repeats")
    print("| chains | optim.PSGLD ms/step | by hand ms/step | optim / by hand |\n|---|---|---|---|")
    for chains in args.chains:
        runs = [time_langevin_steps(chains, args.steps[0], args.warmup, device) for _ in range(args.repeats)]
        ours, hand = (min(times) for times in zip(*runs, strict=True))
        print(f"| {chains} | {1e3 * ours:.2f} | {1e3 * hand:.2f} | {ours / hand:.3f} |")
    print("\nits noise alone\n| chains | one draw per parameter tensor ms/step | one draw per chain ms/step |\n|---|---|---|")
    for chains in args.chains:
        runs = [time_noise_draws(chains, args.steps[0], device) for _ in range(args.repeats)]
        per_parameter, per_chain = (min(times) for times in zip(*runs, strict=True))
        print(f"| {chains} | {1e3 * per_parameter:.2f} | {1e3 * per_chain:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--chains", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--steps", type=int, nargs=2, default=[120, 35], metavar=("AT_64", "AT_256"),
                        help="steps per run at 64² and at 256² (and above), warm-up included")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps; the samplers' burn-in (a multiple "
                        "of 10, so that their samples fall on the log steps as in a shipped run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--langevin-step", action="store_true",
                        help="time the pSGLD step alone (optim.PSGLD's against by hand), at each --chains")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    device = torch.device(args.device)
    if args.warmup % LOG_EVERY:
        parser.error(f"--warmup {args.warmup}: give a multiple of {LOG_EVERY} (the samplers' burn-in)")
    least = args.warmup + 2 * THIN  # the samplers' burn-in is the warm-up, and a run must plan 2 samples
    if min(args.steps) < least:
        parser.error(f"--steps {' '.join(map(str, args.steps))}: each must be >= warm-up + 2 x thin = {least}")
    torch.set_num_threads(1)
    if args.langevin_step:
        print_langevin_steps(args, device)
        return
    cases = [(name, size, chains) for size in args.sizes for chains in args.chains for name in args.strategies]
    times: dict[tuple, dict[str, list[list[float]]]] = {case: {"fit": [], "bare": []} for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            steps = args.steps[0] if case[1] <= 64 else args.steps[1]
            times[case]["bare"].append(time_bare(*case, steps, args.warmup, device))
            times[case]["fit"].append(time_fit(*case, steps, args.warmup, device))
            bare, fit = (1e3 * sum(times[case][run][-1]) / (steps - args.warmup) for run in ("bare", "fit"))
            print(f"{case}: bare {bare:.1f} ms, fit {fit:.1f} ms", file=sys.stderr, flush=True)
    timing = (f"wall time per step on {torch.cuda.get_device_name(device)}, fastest run" if device.type == "cuda"
              else f"thread CPU time per step, torch threads: {torch.get_num_threads()}, each step's fastest")
    print(f"{timing}, warm-up {args.warmup} steps, {args.repeats} alternating repeats")
    print("| strategy | size | chains | bare ms/step | fit ms/step | fit / bare | whole-run fit / bare per repeat |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for case, runs in times.items():
        timed = (args.steps[0] if case[1] <= 64 else args.steps[1]) - args.warmup
        bare, fit = per_step(runs["bare"], timed), per_step(runs["fit"], timed)
        worst = max(worst, fit / bare)
        spread = ", ".join(f"{sum(f) / sum(b):.3f}" for f, b in zip(runs["fit"], runs["bare"], strict=True))
        print(f"| {case[0]} | {case[1]}² | {case[2]} | {1e3 * bare:.1f} | {1e3 * fit:.1f} | {fit / bare:.3f} | {spread} |")
    print(f"ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
