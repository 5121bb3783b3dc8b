"""The restoration task: a LightningModule that fits a DIP network f_θ(z) to one observation."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch import Callback
from torch import nn

from ..compiled import CompiledForward
from ..console import warn
from ..errors import InputError
from ..images import crop_to_multiple
from ..nets import SkipNet
from ..optim import gaussian_like
from ..nets.chains import chains_channels_last, stack_chains, to_channels_last
from ..strategies.base import Selection, Strategy
from ..tracking import ArgBest
from .likelihood import clipped_entries
from .noise import (NOISE_MODELS, GaussianNoise, NoiseModel, PoissonGaussianNoise, classical_poisson_gaussian,
                    classical_sigma)

NetFactory = Callable[[int, int], nn.Module]
"""A network class configured from YAML; called with (input channels, output channels)."""


def chain_psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each chain's image in `prediction` (K, C, *S) against `target` (1 or K, C, *S), for values
    spanning `data_range`: (K,). Written out, as it runs in every step: torchmetrics' per-image PSNR builds
    its entry count as a tensor from a host list, a host-to-device copy and a GPU sync per call."""
    mse = (prediction - target).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB over all entries of `prediction` against `target` (the same shape, or one that broadcasts to
    it), as a 0-d tensor: `chain_psnr`'s arithmetic, so a figure of one chain reads the same from either."""
    return chain_psnr(prediction.reshape(1, -1), target.expand_as(prediction).reshape(1, -1), data_range)[0]


def chain_seed(index: int) -> int:
    """The seed of chain `index` (counted over all processes): the run's seed (`seed_everything`) + index, so
    chain k of any run is reproduced alone by a one-chain run with `seed_everything` = seed + k."""
    return (torch.initial_seed() + index) % 2**63


class RestorationTask(L.LightningModule):
    """Fits f_θ(z) so that A(f_θ(z)) matches the observation y; a subclass supplies the operator A.

    A subclass implements `observe` (clean image -> simulated observation) and, when A is not the
    identity, `forward_operator` (and `observed_mask` for a partial observation). The datamodule gives
    the image (ground truth, or the observation itself when `data.is_observation` is set); the task builds
    the observation (seeded by `observation_seed`) in `build_problem`, the networks and the fixed input
    codes in `build_chains`.

    The observation is taken to be clipped to `clip_range` ([0, 1], as every image file is); a subclass
    whose observation is not clipped sets `clip_range = None`. Under the `censored` likelihood the entries
    at a bound of that range get the censored (Tobit) term of `tasks.likelihood`, the others the squared
    error; under `gaussian` every entry gets the squared error.

    Chains: the strategy's `chains` K independent networks (SGLD chains or SGD restarts) run as one
    batched network (`nets.chains`); the chain index is the leading dimension of every per-step tensor
    (`z`, `output`, `ema`: (K, C, *S)), and the observation (1, C, *S) is shared. Chain k draws its weights,
    its code z, its input jitter and its Langevin noise from its own stream, seeded by `chain_seed`.

    Noise (`tasks.noise`, docs/science.md §10): `noise` is the model of the observation noise, Gaussian
    N(0, σ²) or Poisson-Gaussian (variance a·x + b: photon noise of `peak` photons per unit intensity, a =
    1/peak, plus read noise of std `sigma`, b = σ²); it makes the observation of a clean image and gives the
    likelihood. Its parameters are known (`sigma`, `peak`) or inferred with the image by the Langevin
    samplers (`infer_sigma`): then `sigma` and `peak` only simulate the observation of a clean image. The
    classical estimate from the observation (wavelet MAD) is always computed and reported.

    Args:
        net: network class; called with (input_channels, image channels).
        strategy: how θ is fitted and what is returned (SGD + stopping, SGLD + posterior average).
        sigma: std of the additive Gaussian observation noise (the read noise under `poisson_gaussian`), in
            0-255 units; null: unknown (a real observation's).
        noise: `gaussian` or `poisson_gaussian` (photon + read noise).
        peak: photons per unit intensity of `poisson_gaussian` noise (a = 1/peak).
        infer_sigma: infer the noise level (σ, or a and b) with the image (sgld/psgld: a Gibbs step in each
            Langevin step); null (the default): inferred for a real observation (`data.is_observation`) under
            such a sampler, known otherwise (for a real observation under another strategy: the classical
            estimate); false: `sigma` (and `peak`) are the noise of the observation, also of a real one.
        input_channels: channels of the fixed code z ~ U(0, input_scale).
        input_scale: upper bound of the uniform code.
        reg_noise_std: std of the N(0, ·) jitter added to z each step (DIP's regulariser); 0 disables it.
        ema_decay: weight of the exponential moving average of outputs ("SGD+Avg").
        likelihood: `censored` (clipped entries of the observation say only "at or beyond the bound",
            which keeps a posterior near black or white calibrated) or `gaussian` (the squared error on
            every entry, the papers' loss). The two agree where the observation is not clipped.
        observation_seed: seed of the simulated observation (noise, masks): the same problem for every run.
        image_every_n_steps: how often the current output is sent to the loggers as an image.
        channels_last: run the network's 2D convolutions in channels_last memory format (its input too), which
            GPU tensor cores prefer; off by default: not measured on a GPU yet (docs/benchmarks.md, "GPU").
        compile: `torch.compile` the network (the first step compiles it, which takes seconds to a minute;
            where it cannot compile, a one-line warning and the run goes on uncompiled); off by default:
            not measured on a GPU yet.

    Precision: under `--trainer.precision=bf16-mixed` (or `16-mixed`) Lightning autocasts the step; the task
    casts the network's output to float32 and computes the loss, the trackers and the metrics in float32
    with autocast off, so only the network runs in half precision. Weights, gradients, optimizer states,
    Langevin noise and posterior moments are float32 in every precision.
    """

    def __init__(self, net: NetFactory = SkipNet, strategy: Strategy | None = None, sigma: float | None = 25.0,
                 input_channels: int = 32, input_scale: float = 0.1, reg_noise_std: float = 1 / 30,
                 ema_decay: float = 0.99, likelihood: Literal["gaussian", "censored"] = "censored",
                 noise: Literal["gaussian", "poisson_gaussian"] = "gaussian", peak: float | None = None,
                 infer_sigma: bool | None = None, observation_seed: int = 0, image_every_n_steps: int = 250,
                 channels_last: bool = False, compile: bool = False) -> None:
        if likelihood not in ("gaussian", "censored"):
            raise InputError(f"model.likelihood={likelihood!r}: choose gaussian or censored")
        if noise not in NOISE_MODELS:
            raise InputError(f"model.noise={noise!r}: choose {' or '.join(NOISE_MODELS)}")
        if sigma is not None and not (math.isfinite(sigma) and sigma >= 0):
            raise InputError(f"model.sigma={sigma}: the noise std must be a finite number >= 0 (0-255 units for "
                             f"images), or null when unknown")
        if peak is not None and not (math.isfinite(peak) and peak > 0):
            raise InputError(f"model.peak={peak}: the photons per unit intensity must be a finite number > 0")
        super().__init__()
        from ..strategies import SGD  # the default strategy; imported late to avoid an import cycle

        self.save_hyperparameters(ignore=["net", "strategy"])
        self.net_factory = net
        self.strategy = strategy if strategy is not None else SGD()
        self.net: nn.Module | None = None
        self.compiled_net: CompiledForward | None = None  # the net's compiled forward (model.compile)
        self.register_buffer("ground_truth", None)  # (1, C, *S) once set up, unless only an observation is given
        self.register_buffer("observation", None)  # (1, C, *S) once the problem is built
        self.noise_model: NoiseModel | None = None  # the likelihood's noise, once the problem is built
        self.likelihood = likelihood  # also here, not only in hparams: a subclass may fix it (Signal1D)
        self.data_range = 1.0  # the span of the values PSNR is computed for: [0, 1] images

    clip_range: tuple[float, float] | None = (0.0, 1.0)
    """The range the observation is clipped to (by `observe`, or by the file format); None: not clipped."""

    sigma_scale: float = 255.0
    """`model.sigma` is in units of 1/sigma_scale of the data (0-255 units for [0, 1] images)."""

    noise_floor: float = 1 / (255 * math.sqrt(12))
    """The smallest noise std a likelihood takes, in data units: an image's 8-bit quantisation noise."""

    # ----- the forward model: what a subclass supplies -------------------------------------------------
    @abstractmethod
    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Simulate the observation y of a clean image (C, *S), drawing randomness from `generator`."""

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        """A: network outputs (K, C, *S) -> the observation's space. Identity by default."""
        return output

    def add_noise(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noisy observation of noise-free values `clean` (A x) under `model.noise`, clipped to `clip_range`:
        clean + N(0, σ²), or Poisson(peak·clean)/peak + N(0, σ²) (σ = `noise_std`), from `generator`."""
        if self.hparams.noise == "poisson_gaussian":
            peak = self.hparams.peak
            clean = torch.poisson(clean.clamp(min=0) * peak, generator=generator) / peak
        noisy = clean + torch.randn(clean.shape, generator=generator) * self.noise_std
        return noisy if self.clip_range is None else noisy.clamp(*self.clip_range)

    @property
    def observed_mask(self) -> torch.Tensor | None:
        """Which entries of the observation were observed, broadcastable to it; None: all of them."""
        return None

    def data_loss(self, output: torch.Tensor) -> torch.Tensor:
        """(K,): each chain's mean data term over the P observed entries, for outputs (K, C, *S).

        Under Gaussian noise the term is the squared error between A(output) and the observation, or at
        clipped entries under the censored likelihood −2σ² log Φ(·) (see `tasks.likelihood`); over the
        temperature T = τ·2σ²/P it is the negative log-likelihood over τ either way (`tasks.noise` for the
        Poisson-Gaussian terms, whose mean over T is that too).
        """
        return self.prediction_loss(self.forward_operator(output))

    def prediction_loss(self, prediction: torch.Tensor, gradient: bool = True) -> torch.Tensor:
        """`data_loss` of predictions A(output) (K, C', *S') already in the observation's space; at the noise
        parameters of the gradient (`gradient`, what the optimizer steps with) or at the current ones (the
        energy: they differ only for a Metropolis-adjusted chain that infers them)."""
        return self.observed_mean(self.noise_model.terms(prediction, self.observation, self.censoring_bounds,
                                                         gradient))

    def observed_mean(self, values: torch.Tensor) -> torch.Tensor:
        """(K, C, *S) -> (K,) float64: the sum of each chain's values over the observed entries, divided by P.
        Summed in float64: a Metropolis-Hastings ratio compares losses over the temperature, P/(2σ²) times
        their size, so float32 rounding of the sum would be of order one in the energy for large images."""
        if self.observed_mask is not None:
            values = values * self.observed_mask
        return values.flatten(1).sum(1, dtype=torch.float64) / self.num_observed

    def interior_mask(self) -> torch.Tensor:
        """(1, C, *S) float: 1 at the observed entries the likelihood treats as uncensored."""
        interior = torch.ones_like(self.observation)
        if self.observed_mask is not None:
            interior = interior * self.observed_mask
        if self.censoring_bounds is not None:
            at_low, at_high = clipped_entries(self.observation, self.censoring_bounds)
            interior = interior * ~(at_low | at_high)
        return interior

    @property
    def censoring_bounds(self) -> tuple[float, float] | None:
        """The bounds at which entries are censored; None under the Gaussian likelihood or without clipping."""
        return self.clip_range if self.likelihood == "censored" else None

    def output_size(self, observation: torch.Tensor) -> tuple[int, ...]:
        """Spatial size of the network output for an observation (C, *S); the same size by default."""
        return tuple(observation.shape[1:])

    def fit_to_network(self, image: torch.Tensor, multiple: int) -> torch.Tensor:
        """Crop an image so the network can produce it (each side a multiple of `multiple`)."""
        return crop_to_multiple(image, multiple)

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quality figures of an output (1, C, *S) against the ground truth; `psnr` at least."""
        return {"psnr": psnr(image, self.ground_truth, self.data_range)}

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """Write files of the task's own into `run_dir` at the end of a run (a mask, a baseline, a plot of
        1D data), beside RunArtifacts' standard images and metrics.json. Nothing by default."""

    @property
    def noise_std(self) -> float | None:
        """`model.sigma` in the data's units (the [0, 1] intensity scale for images): the std of the simulated
        Gaussian (or read) noise; None when unknown. The likelihood's noise is `noise_model`'s."""
        return None if self.hparams.sigma is None else self.hparams.sigma / self.sigma_scale

    @property
    def num_observed(self) -> int:
        """P: the number of observed entries the loss averages over."""
        return self.observation.numel()

    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth is not None

    # ----- set-up --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.observation is None:  # the CLI builds the problem before a run starts
            self.build_problem(self.trainer.datamodule)
        if self.net is None:  # the chains need this process's rank and device
            self.build_chains(self.trainer.global_rank, self.trainer.strategy.root_device)

    def build_problem(self, data: L.LightningDataModule | None) -> None:
        """Build the problem from the datamodule's image, once: the observation (and ground truth), checked
        against the network's size rules. The CLI calls it before a run starts (`setup` otherwise), so that
        bad input (an image too small for the network, a mask of the wrong size) fails before anything is
        written. The chains (networks, codes, trackers) follow in `build_chains`.
        """
        if data is None or not hasattr(data, "image"):
            raise InputError("the task needs a datamodule that provides the image (e.g. dip_lightning.data.ImageData)")
        self.datamodule = data  # the datamodule the problem is built from (tasks read e.g. its crop)
        with torch.random.fork_rng(devices=[]):  # a network to read the size rules from; the chains build theirs
            network = self.net_factory(self.hparams.input_channels, data.image.shape[0])
        multiple = getattr(network, "size_multiple", 1)
        check_size = getattr(network, "check_size", None)  # a network may refuse sizes it cannot process
        if check_size is not None:  # before cropping: a side below the network's minimum is refused here
            check_size(tuple(self.output_size(data.image) if data.is_observation else data.image.shape[1:]))
        if data.is_observation:
            observation = self.fit_to_network(data.image, multiple)
        else:
            self._check_simulation()
            clean = self.fit_to_network(data.image, multiple)
            generator = torch.Generator().manual_seed(self.hparams.observation_seed)
            observation = self.observe(clean, generator)
            self.register_buffer("ground_truth", clean[None])
        self.register_buffer("observation", observation[None])
        if check_size is not None:  # a task may crop further (super-resolution: to its factor too)
            check_size(self.output_size(observation))
        self.complete_problem()
        self.noise_model = self.build_noise(data.is_observation)
        self.strategy.check(self)

    def complete_problem(self) -> None:
        """Finish the problem once the observation is registered, before its noise is estimated (e.g. the mask
        of an observation given as it is). Nothing by default."""

    def _check_simulation(self) -> None:
        """Refuse a clean image whose observation cannot be simulated: unknown noise std or photon count."""
        if self.hparams.sigma is None:
            raise InputError("model.sigma=null: simulating the observation of a clean image needs its noise std; "
                             "give model.sigma (0-255 units), or data.is_observation=true for a real noisy image")
        if self.hparams.noise == "poisson_gaussian" and self.hparams.peak is None:
            raise InputError("model.noise=poisson_gaussian: simulating the observation of a clean image needs "
                             "model.peak (photons per unit intensity; model.sigma is the read-noise std)")

    def build_noise(self, is_observation: bool) -> NoiseModel:
        """The likelihood's noise model: inferred (`infer_sigma`, or by default for a real observation under a
        sampler that can), else known: `sigma` (and `peak`), or for a real observation by default the classical
        estimate. Refuses what cannot be inferred or is not known."""
        choice, poisson = self.hparams.infer_sigma, self.hparams.noise == "poisson_gaussian"
        if choice and not self.strategy.infers_noise:
            raise InputError(f"model.infer_sigma=true needs a sampler that infers the noise with the image: "
                             f"model.strategy=SGLD with sampler sgld or psgld (this run's strategy is "
                             f"{self.strategy.name}); give model.sigma instead")
        if poisson and self.clip_range is None:
            raise InputError(f"model.noise=poisson_gaussian models photon counts of an image in [0, 1]: "
                             f"{type(self).__name__} takes model.noise=gaussian")
        infer = choice if choice is not None else is_observation and self.strategy.infers_noise
        from_estimate = not infer and choice is None and is_observation  # a real observation, no sampler to infer
        if not infer and not from_estimate and (self.hparams.sigma is None or (poisson and self.hparams.peak is None)):
            raise InputError("model.infer_sigma=false needs the observation's noise: give model.sigma"
                             + (" and model.peak" if poisson else "") + ", or model.infer_sigma=true")
        observed, bounds = self.observed_mask, self.clip_range
        if not poisson:
            estimate = classical_sigma(self.observation, observed, bounds)
            known = None if infer else (max(estimate, self.noise_floor),) if from_estimate else (self.noise_std,)
            model = GaussianNoise(known, (estimate,), self.noise_floor)
            if (infer or from_estimate) and model.looks_noise_free(estimate):
                scale = self.sigma_scale
                warn(f"the observation looks noise-free (wavelet estimate sigma = {scale * estimate:.2f}, {scale:g} = "
                     f"full range): its posterior is nearly a point and the uncertainty map near zero; sigma is kept "
                     f">= {scale * self.noise_floor:.2f}")
            return model
        estimate = classical_poisson_gaussian(self.observation, observed, bounds, self.noise_floor)
        known = (None if infer else estimate if from_estimate else (1 / self.hparams.peak, self.noise_std**2))
        mean_intensity = float(self.observed_mean(self.observation.clamp(min=0)))
        return PoissonGaussianNoise(known, estimate, self.noise_floor, mean_intensity)

    def build_chains(self, rank: int, device: torch.device) -> None:
        """This process's K chains (`strategy.chains`; process `rank` holds chains rank·K ... rank·K + K − 1):
        their networks stacked into one (`nets.chains`), codes z, per-step random streams on `device`, and
        the per-chain trackers."""
        chains = self.strategy.chains
        channels = self.datamodule.image.shape[0]  # the image's channels (an observation may have others)
        seeds = [chain_seed(rank * chains + k) for k in range(chains)]
        nets, streams = [], []
        with torch.random.fork_rng(devices=[]):  # network initialisers draw from the global stream
            for seed in seeds:
                torch.manual_seed(seed)
                nets.append(self.strategy.network(self.net_factory(self.hparams.input_channels, channels)))
                streams.append(torch.Generator().set_state(torch.get_rng_state()))  # the chain's stream goes on
        self.net = stack_chains(nets)
        size = self.output_size(self.observation[0])
        codes = [torch.rand(self.hparams.input_channels, *size, generator=g) for g in streams]
        z = torch.stack(codes) * self.hparams.input_scale  # (K, C_in, *S)
        if self.hparams.channels_last:
            to_channels_last(self.net)
            z = chains_channels_last(z)
        self.register_buffer("z", z)
        self.compiled_net = CompiledForward(self.net) if self.hparams.compile else None
        # each chain's per-step randomness (input jitter, Langevin noise) on the device, seeded by its stream
        self.generators = [torch.Generator(device).manual_seed(int(torch.randint(2**62, (), generator=g)))
                           for g in streams]
        interior = self.interior_mask()  # fixed once the problem is built
        self.register_buffer("interior", interior, persistent=False)
        self.interior_count = max(1, int(interior.sum()))
        observed = torch.ones_like(interior) if self.observed_mask is None else self.observed_mask.expand_as(interior)
        self.register_buffer("censored", observed * (1 - interior), persistent=False)  # observed, clipped entries
        self.censored_count = int(self.censored.sum())
        self.noise_model.allocate(self, chains, device)
        out_shape = (chains, channels, *size)
        self.register_buffer("output", torch.zeros(out_shape))
        self.register_buffer("ema", torch.zeros(out_shape))
        self.register_buffer("step", torch.tensor(0))
        self.register_buffer("nonfinite", torch.zeros(chains, dtype=torch.bool))
        self.best = ArgBest(out_shape)  # each chain's output of best ground-truth PSNR (psnr_best / step_best)
        self.best_ema = ArgBest(out_shape)  # each chain's EMA of best ground-truth PSNR
        # each chain's latest output of finite loss: the fallback when it diverges and there is no ground truth
        self.register_buffer("last_finite", torch.zeros(out_shape))
        self.register_buffer("last_finite_step", torch.zeros(chains, dtype=torch.long))
        self.strategy.prepare_chains(self)  # what the strategy brings to the network (before a checkpoint's state)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self.strategy.check_precision(self.trainer)
        return self.strategy.configure_optimizer(self)

    def configure_callbacks(self) -> list[Callback]:
        from ..callbacks import NonFiniteGuard, RunArtifacts

        return [*self.strategy.callbacks(self), NonFiniteGuard(), RunArtifacts()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the chains' random streams (input jitter, Langevin noise) continue exactly after a resume
        checkpoint["chain_rng_states"] = [g.get_state() for g in self.generators]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for generator, state in zip(self.generators, checkpoint["chain_rng_states"], strict=True):
            generator.set_state(state)

    # ----- the step ------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """The chains' outputs for codes `z` (K, C_in, *S) (the fixed codes by default), shape (K, C, *S)."""
        net = self.net if self.compiled_net is None else self.compiled_net
        return net(self.z if z is None else z)

    def training_step(self, batch: int, batch_idx: int) -> dict[str, torch.Tensor]:
        """One step of every chain: the loss is the sum of the chains' losses, so chain k's weights get the
        gradient of its own loss alone; `chain_loss` (K,) is each chain's loss. The network runs in the
        trainer's precision (autocast under `*-mixed`); its output, the loss and the tracking are in the buffers'
        dtype (float32, or float64 under `64-true`)."""
        z = self.z
        if self.hparams.reg_noise_std > 0:
            z = z + self.hparams.reg_noise_std * gaussian_like([z], self.generators)[0]  # row k: chain k's stream
        output = self(z).to(self.output.dtype)  # float32 (float64 under 64-true), whatever autocast made
        with torch.autocast(output.device.type, enabled=False):  # the data term and metrics in full precision
            image, prediction, chain_loss = self.strategy.training_loss(self, output)  # A(image); data term (+ ...)
            self.last_prediction = prediction.detach()  # a noise model inferred with the image reads it
            # (K,) float64: a Metropolis-adjusted sampler's energy reads it (at the current noise parameters)
            self.chain_loss = (self.prediction_loss(self.last_prediction, gradient=False)
                               if self.noise_model.separate_energy else chain_loss.detach())
            self._track(image.detach(), prediction.detach(), self.chain_loss)
        return {"loss": chain_loss.sum(), "chain_loss": self.chain_loss}

    @torch.no_grad()
    def _track(self, output: torch.Tensor, prediction: torch.Tensor, chain_loss: torch.Tensor) -> None:
        """Update the step's outputs, EMA and best trackers, and log curves (means over chains); tensor ops only.

        Sets `psnr_observation` (K,) (PSNR of A(output) against the observation, every entry),
        `mse_interior` (K,): the MSE over the observed entries the likelihood treats as uncensored (all
        observed entries under `gaussian`), and `noise_ratio` (K,) float64: the mean over those entries of the
        squared residual over the noise variance (each chain's current one), which settles near 1 for a
        posterior sample. Logged curves: `mse/observation` (the MSE over every observed entry, whichever the
        likelihood), `mse/interior`, and the inferred noise (`noise/sigma` in 0-255 units, or `noise/a`, `noise/b`).
        """
        self.step.add_(1)
        self.output.copy_(output)
        self.ema.lerp_(output, torch.where(self.step == 1, 1.0, 1 - self.hparams.ema_decay))  # starts at output 1
        finite = torch.isfinite(chain_loss)
        self.nonfinite.logical_or_(~finite)
        self.last_finite.copy_(torch.where(per_chain(finite, output), output, self.last_finite))
        self.last_finite_step.copy_(torch.where(finite, self.step, self.last_finite_step))
        squared = (prediction - self.observation).square()
        self.mse_interior = (squared * self.interior).flatten(1).sum(1) / self.interior_count
        self.noise_ratio = self.noise_model.standardized(prediction, squared, self)
        self.psnr_observation = chain_psnr(prediction, self.observation, self.data_range)  # (K,)
        if self.has_ground_truth:
            chain_truth = chain_psnr(output, self.ground_truth, self.data_range)
            chain_ema = chain_psnr(self.ema, self.ground_truth, self.data_range)
            self.best.update(chain_truth, output, self.step)
            self.best_ema.update(chain_ema, self.ema, self.step)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps Lightning writes logs at
            metrics = {"mse/observation": self.observed_mean(squared).mean(), "mse/interior": self.mse_interior.mean(),
                       "psnr/observation": self.psnr_observation.mean()}
            if self.has_ground_truth:
                metrics["psnr/ground_truth"], metrics["psnr/ema"] = chain_truth.mean(), chain_ema.mean()
            if self.noise_model.infer:
                metrics.update(self.noise_model.curves(self.sigma_scale))
            self.log_dict(metrics, prog_bar=False)
            # for the progress bar, which reads it at its refreshes (prog_bar=True would make Lightning read it
            # on the host after every step: a GPU sync per step)
            self.log("psnr", metrics.get("psnr/ground_truth", metrics["psnr/observation"]), logger=False)

    # ----- results -------------------------------------------------------------------------------------
    def gather_chains(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's (K, ...) `tensor` stacked over the run's chains (K x processes, ...), on every
        process (a collective: all processes call it together). The tensor itself with one process."""
        if self.trainer.world_size == 1:
            return tensor
        return self.trainer.strategy.all_gather(tensor).flatten(0, 1)

    def finite_outputs(self, outputs: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-chain outputs (K, C, *S) and their steps (K,), with each chain that diverged to a non-finite
        output replaced by its best finite output (the ground-truth best, else its last of finite loss)."""
        fallback = self.best if self.has_ground_truth else None
        images = fallback.image if fallback is not None else self.last_finite
        fallback_steps = fallback.step if fallback is not None else self.last_finite_step
        broken = ~torch.isfinite(outputs).flatten(1).all(1)
        return (torch.where(per_chain(broken, outputs), images, outputs),
                torch.where(broken, fallback_steps, steps))

    def select(self, gather: bool = True) -> Selection:
        """The strategy's result over all chains (`gather`: of every process; a collective), or over this
        process's chains alone (`gather=False`, e.g. after an interruption that may have hit one process), with
        the noise figures (`tasks.noise`: the classical estimate; inferred, the posterior mean and std)."""
        collect = self.gather_chains if gather else (lambda tensor: tensor)
        selection = self.strategy.select(self, collect)
        selection.metrics.update(self.noise_model.metrics(collect, self.sigma_scale))
        return selection

    def summary(self, selection: Selection) -> dict[str, float | int]:
        """metrics.json figures: the selected output's quality, the run's curve landmarks (this process's
        chains: `psnr_final` their mean, `psnr_best` the best of them), run length."""
        steps = int(self.step)
        metrics: dict[str, float | int] = {"steps": steps, **selection.metrics}
        if selection.step is not None:
            metrics["step_selected"] = selection.step
        metrics["psnr_observation_output"] = float(psnr(self.forward_operator(selection.image[None]),
                                                        self.observation, self.data_range))
        if self.has_ground_truth:
            if self.observation.shape == self.ground_truth.shape:
                metrics["psnr_observation_input"] = float(psnr(self.observation, self.ground_truth, self.data_range))
            for key, value in self.image_metrics(selection.image[None]).items():
                metrics["psnr_selected" if key == "psnr" else key] = float(value)
            metrics["psnr_final"] = float(chain_psnr(self.output, self.ground_truth, self.data_range).mean())
            metrics["psnr_ema_final"] = float(chain_psnr(self.ema, self.ground_truth, self.data_range).mean())
            if self.best.found():
                best = int(self.best.score.argmax())
                metrics["psnr_best"] = float(self.best.score[best])
                metrics["step_best"] = int(self.best.step[best])
        if bool(self.nonfinite.any()):
            metrics["nonfinite_loss"] = True
        return metrics


def per_chain(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-chain `values` (K,) shaped to broadcast against `like` (K, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))
