"""MC dropout, mean-field VI and SGD ensembles through the real CLI: every task, chains, resume, bf16, processes."""

import csv
import json

import numpy as np
import pytest
import torch

from conftest import TINY, fit_tiny, run_cli
from dip_lightning.images import load_image
from test_distributed import _fit_two_processes
from test_precision import float_dtypes

STRATEGIES = {  # a config's SGD options carry over to the new strategy class: optimizer (and stopping) set here
    "mcdropout": ["--model.strategy=dip_lightning.strategies.MCDropout", "--model.net.dropout=0.3",
                  "--model.strategy.optimizer=adamw"],
    "mfvi": ["--model.strategy=dip_lightning.strategies.MeanFieldVI", "--model.reg_noise_std=0"],
}
FIXED = ["--model.strategy.stopping=fixed"]
TASKS = {  # config, and a noise level where the task has none (MFVI's temperature needs one)
    "denoise": ("denoise.yaml", []),
    "inpaint": ("inpaint.yaml", ["--model.sigma=5"]),
    "superres": ("superres.yaml", ["--model.factor=2", "--model.sigma=5"]),
    "deblur": ("deblur.yaml", []),
    "signal1d": ("signal1d.yaml", ["--model.sigma=0.02"]),
}
CALIBRATION = ("coverage_95", "uce", "nll", "spearman_std_abs_err")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_task_returns_the_mean_of_the_passes_with_its_std_and_calibration(capsys, tmp_path, strategy, task):
    config, args = TASKS[task]
    run_dir, metrics = fit_tiny(capsys, tmp_path, *STRATEGIES[strategy], *FIXED, *args, config=config)
    assert metrics["samples"] == 25 and metrics["chains"] == 1 and metrics["steps"] == 30
    assert metrics["psnr_posterior_mean"] == metrics["psnr_selected"]
    assert metrics["psnr_per_chain"][0] == pytest.approx(metrics["psnr_selected"], abs=1e-4)  # pooled: rounding
    assert all(np.isfinite(metrics[key]) for key in CALIBRATION) and 0 <= metrics["coverage_95"] <= 1
    std = np.load(run_dir / "posterior_std.npy")
    assert np.isfinite(std).all() and (std > 0).mean() > 0.9
    if task == "signal1d":
        assert std.shape == (1, 64) and 0 <= metrics["coverage_2std_unobserved"] <= 1
        assert "std" in np.load(run_dir / "signal.npz")
    else:
        restored = load_image(run_dir / "restored.png")
        assert std.shape == tuple(restored.shape) and (run_dir / "uncertainty.png").is_file()
        assert torch.equal(restored, load_image(run_dir / "posterior_mean.png"))


def _outputs(run_dir) -> torch.Tensor:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["output"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_chain_k_of_a_batched_run_is_the_one_chain_run_of_seed_plus_k(capsys, tmp_path, strategy):
    """Dropout masks and weight draws come from each chain's own stream: float64, as in tests/test_chains.py."""
    args = [*STRATEGIES[strategy], *FIXED, "--trainer.precision=64-true"]
    batched_dir, batched = fit_tiny(capsys, tmp_path, *args, "--model.strategy.chains=3")
    alone_dir, alone = fit_tiny(capsys, tmp_path, *args, "--seed_everything=2")
    outputs, output = _outputs(batched_dir), _outputs(alone_dir)
    torch.testing.assert_close(outputs[2], output[0], rtol=0, atol=1e-10)
    assert (outputs[0] - outputs[2]).abs().max() > 0.01
    assert batched["chains"] == 3 and batched["samples"] == 3 * 25
    assert batched["psnr_per_chain"][2] == pytest.approx(alone["psnr_posterior_mean"], abs=1e-8)  # its passes too
    # the pooled spread holds the spread between the chains' means
    assert batched["psnr_posterior_mean"] > min(batched["psnr_per_chain"])
    assert np.load(batched_dir / "posterior_std.npy").mean() > np.load(alone_dir / "posterior_std.npy").mean()


RESUME = {
    "mcdropout": ["--model.strategy.stopping=oracle", "--trainer.max_steps=40"],
    "mfvi": ["--model.strategy.stopping=wmv", "--model.strategy.window=5", "--model.strategy.patience=10",
             "--trainer.max_steps=300"],
}
SAME = ("steps", "psnr_selected", "psnr_final", "psnr_best", "step_per_chain", *CALIBRATION)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_resumed_run_ends_where_the_uninterrupted_one_ends(capsys, tmp_path, strategy):
    """With a stopping rule (the parameters at its step are kept in the checkpoint) and evaluations during
    fitting every 10 steps."""
    args = [*STRATEGIES[strategy], *RESUME[strategy], "--trainer.log_every_n_steps=10",
            "--model.strategy.eval_every_n_steps=10"]
    _, straight = fit_tiny(capsys, tmp_path / "straight", *args)
    root = tmp_path / "runs"
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", "denoise.yaml", *TINY, *args,
                                    f"--trainer.default_root_dir={root}", "--trainer.callbacks+=conftest.CtrlCAt",
                                    "--trainer.callbacks.step=23")
    assert code == 130, err
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 23
    _, resumed = fit_tiny(capsys, root, *args, f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert straight["steps"] > 23 and {k: resumed[k] for k in SAME} == {k: straight[k] for k in SAME}


def test_a_stopping_rule_evaluates_the_passes_at_the_parameters_of_its_step(capsys, tmp_path):
    """The oracle's step s: the parameters kept are those before step s's update, i.e. a run of s − 1 steps'."""
    oracle_dir, oracle = fit_tiny(capsys, tmp_path, *STRATEGIES["mcdropout"], "--model.strategy.stopping=oracle")
    step = oracle["step_per_chain"][0]
    assert step == oracle["step_best"] and step > 1
    state = torch.load(oracle_dir / "checkpoints" / "last.ckpt", weights_only=False)
    (kept,) = [v["params"] for k, v in state["callbacks"].items() if k.startswith("SelectedParameters")]
    shorter_dir, _ = fit_tiny(capsys, tmp_path, *STRATEGIES["mcdropout"], *FIXED, f"--trainer.max_steps={step - 1}")
    shorter = torch.load(shorter_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    params = [value for key, value in shorter.items() if key.startswith("net.") and "running" not in key
              and "num_batches" not in key]
    assert len(kept) == len(params) and all(torch.equal(a, b) for a, b in zip(kept, params, strict=True))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bf16_mixed_keeps_weights_and_states_float32(capsys, tmp_path, strategy):
    run_dir, metrics = fit_tiny(capsys, tmp_path, *STRATEGIES[strategy], *FIXED, "--trainer.precision=bf16-mixed")
    assert np.isfinite(metrics["psnr_posterior_mean"]) and np.isfinite(metrics["nll"])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert float_dtypes(checkpoint["state_dict"]) == {torch.float32}  # μ and ρ of MFVI included
    assert float_dtypes(checkpoint["optimizer_states"]) <= {torch.float32}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_pool_their_chains_as_one_process_pools_two(capsys, tmp_path, strategy):
    """Rank r's chain is chain r of the run (seed + r): the pooled result equals a one-process two-chain run's.
    In float64: in float32 the grouped convolution's rounding grows through the dropout fit to 0.3 dB in 30
    steps."""
    args = [*STRATEGIES[strategy], *FIXED, "--trainer.precision=64-true"]
    run_dir, metrics, checkpoints = _fit_two_processes(tmp_path / "two", "denoise", *args)
    _, together = fit_tiny(capsys, tmp_path / "one", *args, "--model.strategy.chains=2")
    assert metrics["chains"] == 2 and metrics["samples"] == 50
    outputs = [c["state_dict"]["output"] for c in checkpoints]
    assert (outputs[0] - outputs[1]).abs().max() > 0.01  # independent chains
    for key in ("psnr_posterior_mean", "coverage_95", "nll"):
        assert metrics[key] == pytest.approx(together[key], abs=1e-6), key
    assert metrics["psnr_per_chain"] == pytest.approx(together["psnr_per_chain"], abs=1e-6)
    assert (run_dir / "uncertainty.png").is_file()


def test_evaluations_during_fitting_log_the_pooled_mean_and_std(capsys, tmp_path):
    logs = tmp_path / "csv"
    fit_tiny(capsys, tmp_path, *STRATEGIES["mfvi"], *FIXED, "--trainer.log_every_n_steps=10",
             "--model.strategy.eval_every_n_steps=20", "--trainer.logger=CSVLogger",
             f"--trainer.logger.init_args.save_dir={logs}")
    (log,) = logs.rglob("metrics.csv")
    rows = [row for row in csv.DictReader(log.open()) if row.get("psnr/posterior_mean")]
    assert [int(row["step"]) for row in rows] == [19]  # step 20 (Lightning counts from 0)
    assert float(rows[0]["std/posterior_mean"]) > 0


def test_sgd_restarts_are_a_deep_ensemble_whose_spread_is_the_uncertainty(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.chains=3", *FIXED)
    outputs = _outputs(run_dir)
    np.testing.assert_allclose(np.load(run_dir / "posterior_std.npy"), outputs.std(0).numpy(), rtol=0, atol=1e-6)
    assert metrics["psnr_posterior_mean"] == metrics["psnr_selected"]
    assert all(np.isfinite(metrics[key]) for key in CALIBRATION) and (run_dir / "uncertainty.png").is_file()
    _, alone = fit_tiny(capsys, tmp_path, *FIXED)
    assert "coverage_95" not in alone and not list(tmp_path.rglob("posterior_std.npy"))[1:]  # one restart: no spread
