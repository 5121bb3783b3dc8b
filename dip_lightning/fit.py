"""The `fit` command: a LightningCLI (a task with its network and strategy, a datamodule, a Trainer) that writes
each run into its own directory, resumes a run from its checkpoint with the run's own config, and stops on
Ctrl+C after the current step.

A run writes into a new directory under `trainer.default_root_dir`; a resumed run (`--ckpt_path=<run
dir>/checkpoints/last.ckpt`) continues in its own directory, through `resume.Staging`: its files change only
once the resumed part has ended well. Bad input fails before anything is written and leaves nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

import jsonargparse
import yaml
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from .callbacks import RunArtifacts, RunCheckpoint, StepProgressBar, StopOnInterrupt
from .cli import PROG, Interrupted, RunFailed, finish_wandb, input_error
from .config_errors import explain
from .console import is_rank_zero
from .distributed import RUN_DIR_ENV, chain_strategy, process_count, shared_run_dir
from .errors import InputError
from .logging import wandb_logger
from .resume import CONFIG_KEY, Checkpoint, Staging, checkpoint_argument, read_checkpoint, refuse_changes, \
    run_dir_of_checkpoint
from .tasks import RestorationTask


class LogConfigCallback(SaveConfigCallback):
    """Saves config.yaml in the run directory (`trainer.default_root_dir`: a resumed part's staging folder),
    stores the same config in every checkpoint (`resume.CONFIG_KEY`: a resume needs no other option), and sends
    the whole resolved config to the loggers (W&B otherwise sees only the task's own hyperparameters, not net
    width/depth or the strategy).

    The saved config has no `ckpt_path`: rerunning it (`--config <run dir>/config.yaml`) is a fresh run.
    """

    def __init__(self, parser, config, **kwargs) -> None:
        super().__init__(parser, config.clone(), save_to_log_dir=False, **kwargs)
        self.config.ckpt_path = None

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = Path(trainer.default_root_dir) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, path, skip_none=False, overwrite=True)
        config = self.config.as_dict()
        config.pop("config", None)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.parser.dump(self.config, skip_none=False)


class DIPCLI(LightningCLI):
    """The `fit` command: LightningCLI with a run directory per run (a resumed run continues its own), W&B
    (offline without an account), checkpoints for resuming, and a Ctrl+C that stops after the current step.

    `resuming`: the checkpoint given with `--ckpt_path`, read before parsing (its config comes first on the
    command line), or None. `problem_only`: stop once the task has built its problem (see `build_problem`).
    """

    run_dir: Path | None = None
    staging: Staging | None = None  # where a part resumed in its run directory writes

    def __init__(self, resuming: Checkpoint | None = None, problem_only: bool = False) -> None:
        self.resuming = resuming
        self.problem_only = problem_only  # parse and build the problem only: no Trainer, no run, nothing written
        self.stop_on_interrupt = StopOnInterrupt()
        jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        parser_kwargs = {"parser_mode": "omegaconf+", "exit_on_error": False, "prog": PROG}
        description = (f"Fit a task's network to one image or signal. The options of the task, strategy, network and "
                       f"data in a config, with their flags: {PROG} options --config FILE")
        super().__init__(
            RestorationTask,
            LightningDataModule,  # any datamodule with `image` and `is_observation` (ImageData, SignalData)
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},  # a resumed run writes its config again
            parser_kwargs={**parser_kwargs, "fit": {**parser_kwargs, "prog": f"{PROG} fit",
                                                    "description": description}},
            trainer_defaults={
                "max_steps": 3000,
                "max_epochs": -1,
                "log_every_n_steps": 10,
                "use_distributed_sampler": False,
                "num_sanity_val_steps": 0,
                "enable_model_summary": False,
                "default_root_dir": "outputs",
            },
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only `fit`: a task fits one problem, it has no validation, test or prediction loop."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def parse_arguments(self, parser, args) -> None:
        """Parse; a config error becomes a short InputError (the parser's report stays its cause); a resume that
        would change its run's problem is refused."""
        try:
            super().parse_arguments(parser, args)
        except jsonargparse.ArgumentError as err:
            parsers = (parser, *getattr(self, "_subcommand_parsers", {}).values())
            flags = [flag for p in parsers for action in p._actions for flag in action.option_strings]
            raise InputError(explain(str(err), flags)) from err
        if self.resuming is not None and self.resuming.config is not None and self.config.get("fit"):
            given = self._subcommand_parsers["fit"].dump(self.config.fit, skip_none=False)
            refuse_changes(self.resuming.config, given, str(run_dir_of_checkpoint(self.resuming.path)
                                                            or self.resuming.path))

    def _set_seed(self) -> None:
        if not self.problem_only:  # the problem's randomness has its own seed (model.observation_seed)
            super()._set_seed()

    def instantiate_classes(self) -> None:
        if not self.problem_only:
            return super().instantiate_classes()
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule, self.model = self._get(self.config_init, "data"), self._get(self.config_init, "model")
        self.model.build_problem(self.datamodule)

    def _parse_ckpt_path(self) -> None:
        """Nothing: the checkpoint's config is already the first on the command line (`fit`), and options given
        beside it were checked; Lightning's own merge would silently replace the task's options by the saved ones."""

    def instantiate_trainer(self, **kwargs):
        """Build the problem (bad input fails here, before anything is written), choose the run directory (one
        for all processes) and put the logger, checkpoints and artifacts in it; several processes get the
        independent-chains strategy (no gradient averaging)."""
        self.model.build_problem(self.datamodule)
        config = self._get(self.config_init, "trainer", default={})
        name = f"{type(self.model).__name__.lower()}-{self.model.strategy.name}"
        processes = process_count(config.get("accelerator"), config.get("devices"), config.get("num_nodes") or 1)
        if processes > 1:
            kwargs["strategy"] = chain_strategy(config.get("strategy", "auto"))
        self.run_dir = self._choose_run_dir(config.get("default_root_dir") or "outputs", name, processes)
        files = self.staging.folder if self.staging is not None else self.run_dir
        kwargs["default_root_dir"] = str(files)
        if config.get("logger") in (None, True):
            kwargs["logger"] = wandb_logger(self.run_dir, name)
        callbacks = [*(config.get("callbacks") or []), self.stop_on_interrupt]
        if config.get("enable_progress_bar") is not False and not any(
                isinstance(c, TQDMProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar(refresh_rate=10))
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(RunCheckpoint(files / "checkpoints"))
        kwargs["callbacks"] = callbacks
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as err:  # trainer options: e.g. an accelerator not here
            self._discard_run()
            raise InputError(str(err).strip().splitlines()[0]) from err

    def _choose_run_dir(self, root: str, name: str, processes: int) -> Path:
        """The checkpoint's run directory when resuming one (`--ckpt_path <run dir>/checkpoints/...`, its files
        written through `self.staging`), else a new one, shared by the run's `processes`."""
        if self.resuming is None:
            return shared_run_dir(root, name, processes)
        run_dir = run_dir_of_checkpoint(self.resuming.path)
        if run_dir is None:
            print(f"notice: {self.resuming.path} is not in a run directory (<run dir>/checkpoints/): the resumed run "
                  f"writes a new one")
            return shared_run_dir(root, name, processes)
        self.staging = Staging(run_dir)
        if is_rank_zero():  # before the Trainer exists
            self.staging.start()
        return run_dir

    def _discard_run(self) -> None:
        """Leave nothing of a run that failed: its W&B record, its new directory (unless it wrote its results),
        and of a resumed part everything it wrote (the run's files stay as they were)."""
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finish_wandb()  # W&B would write its record (and suggest syncing it) after the directory is gone
        if self.staging is not None:
            self.staging.discard()
        elif self.run_dir is not None and not (self.run_dir / "metrics.json").exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a failure leaves no change to a resumed run, and no new directory unless it fitted steps (whose
        results and checkpoint it keeps); a Ctrl+C ends it with what it saved; a run that finished without a
        result (a sampler with no sample) ends in RunFailed."""
        if self.problem_only:
            return
        rank = self.trainer.global_rank
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:
            failure = self._failure(err)
            if self.trainer.is_global_zero:  # a new run that fitted steps keeps them (its results say interrupted)
                self._discard_run()
            if failure is err:
                raise
            raise failure from err
        except SystemExit:  # Lightning exits after a second Ctrl+C, once the callbacks have saved the results
            if self.staging is not None:
                self.staging.commit(rank) if self.staging.wrote("metrics.json") else self.staging.discard()
            if not self.trainer.is_global_zero:
                raise
            if not (self.run_dir / "metrics.json").exists():  # stopped before the first step
                self._discard_run()
                raise Interrupted(None) from None
            raise Interrupted(self.run_dir) from None
        finally:
            os.environ.pop(RUN_DIR_ENV, None)  # the next run in this process gets its own directory
        if self.staging is not None:
            self.staging.commit(rank)
        if not self.trainer.is_global_zero:
            return
        if self.stop_on_interrupt.interrupted:
            raise Interrupted(self.run_dir)
        artifacts = next((c for c in self.trainer.callbacks if isinstance(c, RunArtifacts)), None)
        if artifacts is not None and artifacts.error:
            raise RunFailed(artifacts.error, self.run_dir)

    def _failure(self, err: Exception) -> Exception:
        """The error to report: a resume that failed before its first step (a checkpoint that does not load) as
        one line naming the checkpoint; any other error as it is."""
        start = self.resuming.step if self.resuming is not None else 0
        if self.resuming is None or input_error(err) or self.trainer.global_step > start:
            return err
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = " ".join(lines[:2])[:300] if lines else type(err).__name__  # e.g. "Error(s) in ...: size mismatch ..."
        return InputError(f"cannot resume from {self.resuming.path}: {reason} (add --verbose for the full report)")


def fit(argv: list[str]) -> Path | None:
    """The `fit` command: returns the run directory; raises Interrupted after a Ctrl+C, RunFailed after a run
    that finished without a result.

    With `--ckpt_path`, the checkpoint's config goes first (`--config <its YAML>`), so that the options given
    after it apply over the run's own."""
    checkpoint = checkpoint_argument(argv)
    resuming = read_checkpoint(checkpoint) if checkpoint is not None else None
    if resuming is not None and resuming.config is not None:
        base = base_config(resuming.config, argv)
        argv = argv if argv[:2] == ["--config", base] else ["--config", base, *argv]  # DDP's ranks have it already
    sys.argv[1:] = ["fit", *argv]  # LightningCLI parses sys.argv, and DDP's launcher runs it again for each rank
    cli = DIPCLI(resuming)
    return cli.run_dir if cli.trainer.is_global_zero else None  # rank 0 alone reports


def build_problem(argv: list[str]) -> tuple[RestorationTask, dict]:
    """The task of the `fit` command line `argv` with its problem built (observation, ground truth), and the resolved
    config as a nested dict: what a run would fit, without running it or writing anything (bad input raises)."""
    argv_before = sys.argv[1:]
    sys.argv[1:] = ["fit", *argv]
    try:
        cli = DIPCLI(problem_only=True)
    finally:
        sys.argv[1:] = argv_before
    return cli.model, yaml.safe_load(cli._subcommand_parsers["fit"].dump(cli.config.fit, skip_none=False))


def base_config(saved: str, argv: list[str]) -> str:
    """The config a resume starts from: the run's `saved` config, without its callbacks when `argv` gives
    `--trainer.callbacks` (given callbacks replace the run's rather than add a second copy of each)."""
    if not any(arg.startswith("--trainer.callbacks") for arg in argv):
        return saved
    config = yaml.safe_load(saved)
    config.get("trainer", {}).pop("callbacks", None)
    return yaml.safe_dump(config, sort_keys=False)
