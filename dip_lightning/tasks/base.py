"""The restoration task: a LightningModule that fits a DIP network f_θ(z) to one observation."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import Callback
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from ..errors import InputError
from ..images import crop_to_multiple
from ..nets import SkipNet
from ..strategies.base import Selection, Strategy
from ..tracking import ArgBest

NetFactory = Callable[[int, int], nn.Module]
"""A network class configured from YAML; called with (input channels, output channels)."""


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of [0, 1] images (torchmetrics), as a 0-d tensor: no host sync."""
    return peak_signal_noise_ratio(prediction, target, data_range=1.0)


class RestorationTask(L.LightningModule):
    """Fits f_θ(z) so that A(f_θ(z)) matches the observation y; a subclass supplies the operator A.

    A subclass implements `observe` (clean image -> simulated observation) and, when A is not the
    identity, `forward_operator` (and `data_loss` for a partial observation). The datamodule gives the
    image (ground truth, or the observation itself when `data.is_observation` is set); the task builds
    the observation (seeded by `observation_seed`), the network and the fixed input code in `build_problem`.

    Args:
        net: network class; called with (input_channels, image channels).
        strategy: how θ is fitted and what is returned (SGD + stopping, SGLD + posterior average).
        sigma: std of the additive Gaussian observation noise, in 0-255 units.
        input_channels: channels of the fixed code z ~ U(0, input_scale).
        input_scale: upper bound of the uniform code.
        reg_noise_std: std of the N(0, ·) jitter added to z each step (DIP's regulariser); 0 disables it.
        ema_decay: weight of the exponential moving average of outputs ("SGD+Avg").
        observation_seed: seed of the simulated observation (noise, masks): the same problem for every run.
        image_every_n_steps: how often the current output is sent to the loggers as an image.
    """

    def __init__(self, net: NetFactory = SkipNet, strategy: Strategy | None = None, sigma: float = 25.0,
                 input_channels: int = 32, input_scale: float = 0.1, reg_noise_std: float = 1 / 30,
                 ema_decay: float = 0.99, observation_seed: int = 0, image_every_n_steps: int = 250) -> None:
        super().__init__()
        from ..strategies import SGD  # the default strategy; imported late to avoid an import cycle

        self.save_hyperparameters(ignore=["net", "strategy"])
        self.net_factory = net
        self.strategy = strategy if strategy is not None else SGD()
        self.net: nn.Module | None = None
        self.register_buffer("ground_truth", None)  # (1, C, *S) once set up, unless only an observation is given

    # ----- the forward model: what a subclass supplies -------------------------------------------------
    @abstractmethod
    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Simulate the observation y of a clean image (C, *S), drawing randomness from `generator`."""

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        """A: network output (1, C, *S) -> the observation's space. Identity by default."""
        return output

    def data_loss(self, output: torch.Tensor) -> torch.Tensor:
        """Mean squared error between A(output) and the observation over its observed entries."""
        return torch.mean((self.forward_operator(output) - self.observation) ** 2)

    def output_size(self, observation: torch.Tensor) -> tuple[int, ...]:
        """Spatial size of the network output for an observation (C, *S); the same size by default."""
        return tuple(observation.shape[1:])

    def fit_to_network(self, image: torch.Tensor, multiple: int) -> torch.Tensor:
        """Crop an image so the network can produce it (each side a multiple of `multiple`)."""
        return crop_to_multiple(image, multiple)

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quality figures of an output (1, C, *S) against the ground truth; `psnr` at least."""
        return {"psnr": psnr(image, self.ground_truth)}

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """Write files of the task's own into `run_dir` at the end of a run (a mask, a baseline, a plot of
        1D data), beside RunArtifacts' standard images and metrics.json. Nothing by default."""

    @property
    def noise_std(self) -> float:
        """Observation noise std on the [0, 1] intensity scale."""
        return self.hparams.sigma / 255.0

    @property
    def num_observed(self) -> int:
        """P: the number of observed entries the loss averages over."""
        return self.observation.numel()

    @property
    def has_ground_truth(self) -> bool:
        return self.ground_truth is not None

    # ----- set-up --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.net is None:  # the CLI has built it already
            self.build_problem(self.trainer.datamodule)

    def build_problem(self, data: L.LightningDataModule | None) -> None:
        """Build the problem from the datamodule's image, once: the network, the observation, the code z and
        the trackers. The CLI calls it before a run starts (`setup` otherwise), so that bad input (an image
        too small for the network, a mask of the wrong size) fails before anything is written.
        """
        if data is None or not hasattr(data, "image"):
            raise InputError("the task needs a datamodule that provides the image (e.g. dip_lightning.data.ImageData)")
        self.datamodule = data  # the datamodule the problem is built from (tasks read e.g. its crop)
        channels = data.image.shape[0]
        self.net = self.net_factory(self.hparams.input_channels, channels)
        multiple = getattr(self.net, "size_multiple", 1)
        check_size = getattr(self.net, "check_size", None)  # a network may refuse sizes it cannot process
        if check_size is not None:  # before cropping: a side below the network's minimum is refused here
            check_size(tuple(self.output_size(data.image) if data.is_observation else data.image.shape[1:]))
        if data.is_observation:
            observation = self.fit_to_network(data.image, multiple)
        else:
            clean = self.fit_to_network(data.image, multiple)
            generator = torch.Generator().manual_seed(self.hparams.observation_seed)
            observation = self.observe(clean, generator)
            self.register_buffer("ground_truth", clean[None])
        self.register_buffer("observation", observation[None])
        size = self.output_size(observation)
        if check_size is not None:  # a task may crop further (super-resolution: to its factor too)
            check_size(size)
        self.register_buffer("z", torch.rand(1, self.hparams.input_channels, *size) * self.hparams.input_scale)
        out_shape = (1, channels, *size)
        self.register_buffer("output", torch.zeros(out_shape))
        self.register_buffer("ema", torch.zeros(out_shape))
        self.register_buffer("step", torch.tensor(0))
        self.register_buffer("nonfinite", torch.tensor(False))
        self.best = ArgBest(out_shape)  # the output of best ground-truth PSNR (psnr_best / step_best)
        self.best_ema = ArgBest(out_shape)  # the EMA of best ground-truth PSNR
        # the latest output of finite loss: the fallback when the loss diverges and there is no ground truth
        self.register_buffer("last_finite", torch.zeros(out_shape))
        self.register_buffer("last_finite_step", torch.tensor(0))
        self.strategy.check(self)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.strategy.configure_optimizer(self)

    def configure_callbacks(self) -> list[Callback]:
        from ..callbacks import NonFiniteGuard, RunArtifacts

        return [*self.strategy.callbacks(self), NonFiniteGuard(), RunArtifacts()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the random streams (input jitter, Langevin noise) continue exactly after a resume
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states", {})
        if "torch" in states:
            torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])

    # ----- the step ------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Network output for code `z` (the fixed code by default), shape (1, C, *S)."""
        return self.net(self.z if z is None else z)

    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        z = self.z
        if self.hparams.reg_noise_std > 0:
            z = z + self.hparams.reg_noise_std * torch.randn_like(z)
        output = self(z)
        loss = self.data_loss(output)
        self._track(output.detach(), loss.detach())
        return loss

    @torch.no_grad()
    def _track(self, output: torch.Tensor, loss: torch.Tensor) -> None:
        """Update the step's outputs, EMA and best trackers, and log curves; tensor ops only."""
        self.step.add_(1)
        self.output.copy_(output)
        self.ema.lerp_(output, torch.where(self.step == 1, 1.0, 1 - self.hparams.ema_decay))  # starts at output 1
        finite = torch.isfinite(loss)
        self.nonfinite.logical_or_(~finite)
        self.last_finite.copy_(torch.where(finite, output, self.last_finite))
        self.last_finite_step.copy_(torch.where(finite, self.step, self.last_finite_step))
        self.psnr_observation = psnr(self.forward_operator(output), self.observation)
        metrics = {"mse/observation": loss, "psnr/observation": self.psnr_observation}
        if self.has_ground_truth:
            metrics["psnr/ground_truth"] = psnr(output, self.ground_truth)
            metrics["psnr/ema"] = psnr(self.ema, self.ground_truth)
            self.best.update(metrics["psnr/ground_truth"], output, self.step)
            self.best_ema.update(metrics["psnr/ema"], self.ema, self.step)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps Lightning writes logs at
            self.log_dict(metrics, prog_bar=False)
            self.log("psnr", metrics.get("psnr/ground_truth", self.psnr_observation), prog_bar=True,
                     logger=False)

    # ----- results -------------------------------------------------------------------------------------
    def select(self) -> Selection:
        """The strategy's result; if the loss diverged, the best finite output instead (with a warning)."""
        selection = self.strategy.select(self)
        if bool(self.nonfinite) and not bool(torch.isfinite(selection.image).all()):
            if self.has_ground_truth and self.best.found():
                selection = Selection(self.best.image[0], int(self.best.step), metrics=selection.metrics)
            else:
                selection = Selection(self.last_finite[0], int(self.last_finite_step), metrics=selection.metrics)
        return selection

    def summary(self, selection: Selection) -> dict[str, float | int]:
        """metrics.json figures: the selected output's quality, the run's curve landmarks, run length."""
        steps = int(self.step)
        metrics: dict[str, float | int] = {"steps": steps, **selection.metrics}
        if selection.step is not None:
            metrics["step_selected"] = selection.step
        metrics["psnr_observation_output"] = float(psnr(self.forward_operator(selection.image[None]),
                                                        self.observation))
        if self.has_ground_truth:
            if self.observation.shape == self.ground_truth.shape:
                metrics["psnr_observation_input"] = float(psnr(self.observation, self.ground_truth))
            for key, value in self.image_metrics(selection.image[None]).items():
                metrics["psnr_selected" if key == "psnr" else key] = float(value)
            metrics["psnr_final"] = float(psnr(self.output, self.ground_truth))
            metrics["psnr_ema_final"] = float(psnr(self.ema, self.ground_truth))
            if self.best.found():
                metrics["psnr_best"] = float(self.best.score)
                metrics["step_best"] = int(self.best.step)
        if bool(self.nonfinite):
            metrics["nonfinite_loss"] = True
        return metrics
