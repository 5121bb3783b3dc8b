"""The real entry point on tiny problems: artifacts, metrics, config handling, reproducibility."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from torchmetrics.functional.image import peak_signal_noise_ratio

from conftest import TINY, fit_tiny, run_cli, tiny_args
from dip_lightning.images import load_image

GROUND_TRUTH_KEYS = {"psnr_observation_input", "psnr_final", "psnr_best", "step_best", "psnr_selected"}


def test_module_entry_point_writes_artifacts_and_ends_with_outputs_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dip_lightning", "fit", "--config", "denoise", *TINY,
                             f"--trainer.default_root_dir={tmp_path}"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    for noise in ("litlogger", "LeafSpec", "Warning"):  # library chatter is silenced: a plain run warns of nothing
        assert noise not in result.stdout + result.stderr, noise
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("outputs: ")
    run_dir = tmp_path / last.split("outputs: ")[1].split("/")[-1]
    for name in ("restored.png", "observation.png", "ground_truth.png", "summary.png", "config.yaml",
                 "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert GROUND_TRUTH_KEYS | {"step_selected", "steps", "seconds"} <= metrics.keys()
    assert metrics["steps"] == 30


def test_metrics_describe_the_saved_images(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.stopping=fixed")
    restored, truth, observed = (load_image(run_dir / f"{n}.png")[None]
                                 for n in ("restored", "ground_truth", "observation"))
    assert restored.shape == truth.shape == (1, 3, 32, 32)
    # the PNGs are 8-bit: the PSNRs of the saved images match the metrics to quantisation accuracy
    assert abs(float(peak_signal_noise_ratio(restored, truth, data_range=1.0)) - metrics["psnr_selected"]) < 0.1
    assert abs(float(peak_signal_noise_ratio(observed, truth, data_range=1.0))
               - metrics["psnr_observation_input"]) < 0.1
    assert metrics["psnr_selected"] == metrics["psnr_final"] and metrics["step_selected"] == 30
    assert metrics["psnr_best"] >= metrics["psnr_final"] and 1 <= metrics["step_best"] <= 30
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["init_args"]["net"]["init_args"]["width"] == 8


def test_same_seed_same_metrics_and_a_second_run_gets_its_own_directory(capsys, tmp_path):
    first_dir, first = fit_tiny(capsys, tmp_path)
    second_dir, second = fit_tiny(capsys, tmp_path)
    assert first_dir != second_dir and first_dir.parent == second_dir.parent == tmp_path
    for key in ("psnr_selected", "psnr_best", "psnr_final", "step_best"):
        assert first[key] == second[key], key
    _, other_seed = fit_tiny(capsys, tmp_path, "--seed_everything=1")
    assert other_seed["psnr_final"] != first["psnr_final"]


def test_observation_only_has_no_ground_truth_metrics(capsys, tmp_path):
    from dip_lightning.artifacts import save_image

    noisy = (load_image("astronaut", 64) + 0.1 * torch.randn(3, 64, 64)).clamp(0, 1)
    save_image(tmp_path / "noisy.png", noisy)
    run_dir, metrics = fit_tiny(capsys, tmp_path, f"--data.image={tmp_path / 'noisy.png'}",
                                "--data.is_observation=true", "--model.strategy.stopping=wmv",
                                "--model.strategy.window=5", "--model.strategy.patience=1000")
    assert not GROUND_TRUTH_KEYS & metrics.keys()
    assert not (run_dir / "ground_truth.png").exists()
    assert (run_dir / "restored.png").is_file() and "psnr_observation_output" in metrics
    _, _, err, code = run_cli(capsys, "fit", "--config", "denoise", *TINY, f"--trainer.default_root_dir={tmp_path}",
                              f"--data.image={tmp_path / 'noisy.png'}", "--data.is_observation=true",
                              "--model.strategy.stopping=oracle")
    assert code == 2 and "stopping=oracle needs the ground truth" in err


def test_print_config_resolves_bare_names_and_interpolation_follows_overrides(capsys, tmp_path):
    config = tmp_path / "interp.yaml"
    config.write_text("trainer:\n  max_steps: 40\nmodel:\n  class_path: dip_lightning.tasks.Denoise\n"
                      "  init_args:\n    image_every_n_steps: ${trainer.max_steps}\n")
    _, out, _, code = run_cli(capsys, "fit", "--config", str(config), "--trainer.max_steps=7", "--print_config")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["model"]["init_args"]["image_every_n_steps"] == 7
    _, out, err, code = run_cli(capsys, "fit", "--config", "no_such_config", "--print_config")
    assert code == 2 and "config 'no_such_config' not found" in err and "denoise.yaml" in err


def test_bad_inputs_fail_with_one_line_and_leave_no_run_directory(capsys, tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    cases = {
        f"--data.image={tmp_path / 'missing.png'}": "image file not found",
        "--data.image=astronot": "unknown built-in image",
        f"--data.image={tmp_path / 'text.png'}": "cannot read",
        "--data.crop=2": "too small for this network",
    }
    runs = tmp_path / "runs"
    for arg, message in cases.items():
        run_dir, _, err, code = run_cli(capsys, "fit", "--config", "denoise", *TINY,
                                        f"--trainer.default_root_dir={runs}", arg)
        assert code == 2 and run_dir is None, arg
        error_lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and message in error_lines[0], err
    assert not runs.exists() or not any(runs.iterdir())


def test_diverging_loss_stops_and_keeps_the_best_finite_output(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.optimizer=sgd", "--model.strategy.lr=1e12",
                                "--model.strategy.backtracking=false", "--trainer.max_steps=200")
    out = capsys.readouterr().out
    assert metrics["nonfinite_loss"] is True
    assert metrics["steps"] < 200  # stopped early
    restored = load_image(run_dir / "restored.png")
    assert torch.isfinite(restored).all() and restored.std() > 0
    assert metrics["psnr_selected"] is not None and metrics["psnr_selected"] > 5


def test_top_level_help_lists_every_command_and_usage_names_the_program(capsys):
    from dip_lightning.cli import COMMANDS

    _, out, _, code = run_cli(capsys, "--help")
    assert code == 0
    for name, command in COMMANDS.items():
        assert f"  {name}" in out and command.summary in out
    _, out, _, code = run_cli(capsys, "fit", "--help")
    assert code == 0 and out.startswith("usage: python -m dip_lightning") and "__main__" not in out
    assert "python -m dip_lightning options --config FILE" in " ".join(out.split())  # the task's own options
    _, _, err, code = run_cli(capsys, "fitt")
    assert code == 2 and "did you mean fit?" in err


CONFIG_ERRORS = {
    "--model.sigmaa=25": ["Denoise has no option 'sigmaa'", "--model.sigmaa=25", "did you mean --model.sigma?",
                          "options Denoise"],
    "--model.sigma=abc": ["--model.sigma expects a float or null, got 'abc'"],
    "--model.strategy.stoping=wmv": ["SGD has no option 'stoping'", "did you mean --model.strategy.stopping?"],
    "--model.strategy.stopping=wmw": ["--model.strategy.stopping expects one of fixed, oracle, wmv, got 'wmw'",
                                      "did you mean wmv?"],
    "--model.net.widht=16": ["SkipNet has no option 'widht'", "did you mean --model.net.width?"],
    "--data.crop=abc": ["--data.crop expects an int or null, got 'abc'"],
    "--trainer.max_stepz=5": ["unknown option --trainer.max_stepz=5", "did you mean --trainer.max_steps?"],
    "--model=Denoize": ["--model=Denoize: no such class", "did you mean Denoise?"],
    "--model.strategy=SGLDD": ["no such class", "did you mean SGLD?"],
    "--trainer.accelerator=gpux": ["invalid accelerator name"],
}


@pytest.mark.parametrize("arg", CONFIG_ERRORS)
def test_config_typos_and_wrong_types_get_a_short_error_with_a_near_miss(capsys, tmp_path, arg):
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", "denoise", *TINY,
                                    f"--trainer.default_root_dir={tmp_path}", arg)
    assert code == 2 and run_dir is None and not any(tmp_path.iterdir())
    report = [line for line in err.splitlines() if not line.startswith("Seed set")]
    assert report[0].startswith("error: ") and len(report) <= 2, err
    for expected in CONFIG_ERRORS[arg]:
        assert expected in err, (expected, err)
    assert "NestedArg" not in err and "Union" not in err and "usage:" not in err


def test_verbose_keeps_the_parsers_full_report(capsys):
    _, _, err, code = run_cli(capsys, "fit", "--config", "denoise", "--model.sigmaa=25", "--verbose")
    assert code == 2 and "NestedArg(key='sigmaa'" in err and "did you mean --model.sigma?" in err


def test_options_shows_a_task_and_strategy_with_the_flags_that_set_them(capsys):
    _, out, _, code = run_cli(capsys, "options", "Inpaint", "SGLD")
    assert code == 0
    assert "  --model.missing=0.5" in out and "  --model.strategy.burn_in=1000" in out
    assert "  --model.sigma=0.0" in out  # inherited from RestorationTask through **kwargs
    flags = [line.split("=")[0].strip() for line in out.splitlines() if line.startswith("  --")]
    assert flags and all(flag.startswith(("--model.", "--data.")) for flag in flags)
    assert "torch.nn" not in out and "--model.net.in_channels" not in out
    _, out, _, code = run_cli(capsys, "options", "--config", "inpaint.yaml")
    assert code == 0
    for line in ("  --model.missing=0.5", "  --model.net.width=64", "  --model.strategy.stopping=fixed",
                 "  --data.crop=64", "  --data.image=camera"):  # the config's values
        assert line in out, line
    _, _, err, code = run_cli(capsys, "options", "Inpaint2")
    assert code == 2 and "did you mean Inpaint?" in err


def test_an_image_too_small_for_the_network_is_refused_up_front_with_a_choice_that_runs(capsys, tmp_path):
    from dip_lightning.artifacts import save_image

    save_image(tmp_path / "tiny.png", torch.rand(3, 7, 7))
    args = ["fit", "--config", "denoise", *TINY, f"--trainer.default_root_dir={tmp_path / 'runs'}",
            f"--data.image={tmp_path / 'tiny.png'}", "--data.crop=7", "--trainer.max_steps=5"]
    run_dir, out, err, code = run_cli(capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and run_dir is None and len(errors) == 1 and "model.net.depth=1" in errors[0], err
    assert not (tmp_path / "runs").exists()
    run_dir, _, err, code = run_cli(capsys, *args, "--model.net.depth=1")  # the advice
    assert code == 0 and (run_dir / "restored.png").is_file(), err


def test_bad_input_with_wandb_on_leaves_no_directory_and_no_wandb_record(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no account: W&B offline, as for a new user
    for variable in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    from dip_lightning.artifacts import save_image

    save_image(tmp_path / "noisy.png", torch.rand(3, 32, 32))
    args = [a for a in TINY if not a.startswith("--trainer.logger")]
    runs = tmp_path / "runs"
    for bad in (["--data.crop=4"], ["--model.sigmaa=1"], ["--trainer.accelerator=gpux"],
                [f"--data.image={tmp_path / 'noisy.png'}", "--data.is_observation=true",
                 "--model.strategy.stopping=oracle"]):
        run_dir, out, err, code = run_cli(capsys, "fit", "--config", "denoise", *args,
                                          f"--trainer.default_root_dir={runs}", *bad)
        assert code == 2 and run_dir is None, (bad, err)
        assert "wandb" not in out + err, bad
    assert not runs.exists() or not any(runs.iterdir())


def test_a_whole_photo_resized_by_data_size_keeps_its_aspect_ratio(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--data.crop=null", "--data.image=chelsea", "--data.size=40",
                                "--trainer.max_steps=3")
    assert load_image(run_dir / "restored.png").shape == (3, 24, 40)  # chelsea is 300x451: 27x40, cropped to 24x40


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("args, message", [
    (["--model.sigma=-5"], "model.sigma=-5.0: the noise std must be a finite number >= 0"),
    (["--model.sigma=.inf"], "model.sigma=inf: the noise std must be a finite number >= 0"),
    (["--model.sigma=nan"], "--model.sigma expects a float or null, got 'nan'"),
    (["--config", "sgld_denoise.yaml", "--trainer.max_steps=1000"],  # burn_in 1000: no sample
     "trainer.max_steps=1000 with model.strategy.burn_in=1000 and thin=10 plans 0 posterior samples"),
    (["--config", "sgld_denoise.yaml", "--trainer.max_steps=1015"], "plans 1 posterior samples (2 are needed): "
                                                                    "give trainer.max_steps >= 1020"),
])
def test_bad_values_are_refused_in_one_line_and_leave_nothing(capsys, tmp_path, args, message):
    config, args = (args[:2], args[2:]) if args[0] == "--config" else (["--config", "denoise"], args)
    run_dir, out, err, code = run_cli(capsys, "fit", *config, *TINY, f"--trainer.default_root_dir={tmp_path}", *args)
    errors = _error_lines(err)
    assert code == 2 and run_dir is None and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


def test_an_image_upscaled_more_than_twice_warns_and_one_below_the_networks_minimum_is_refused(capsys, tmp_path):
    from dip_lightning.artifacts import save_image

    save_image(tmp_path / "tiny.png", torch.rand(3, 5, 5))
    args = ["fit", "--config", "denoise", *TINY, f"--trainer.default_root_dir={tmp_path / 'runs'}",
            f"--data.image={tmp_path / 'tiny.png'}", "--data.crop=null", "--trainer.max_steps=3"]
    run_dir, out, err, code = run_cli(capsys, *args, "--data.size=128")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and "data.size=128 upscales the 5x5 image 25.6x" in warnings[0], err
    assert load_image(run_dir / "restored.png").shape == (3, 128, 128)
    _, _, err, code = run_cli(capsys, *args, "--data.size=10")  # 2x: no warning
    assert code == 0 and "warning:" not in err, err
    shutil.rmtree(tmp_path / "runs")
    run_dir, _, err, code = run_cli(capsys, *args, "--data.size=null")  # its own 5 px: below the net's 8
    errors = _error_lines(err)
    assert code == 2 and run_dir is None and len(errors) == 1 and "5x5 image is too small" in errors[0], err
    assert "model.net.depth=1" in errors[0] and "data.crop" not in errors[0]  # a crop cannot enlarge an image
    assert not (tmp_path / "runs").exists()


def test_a_sampler_run_without_a_posterior_sample_exits_1_in_one_line_and_keeps_its_files(capsys, tmp_path):
    """sigma 1 given for an observation with noise 25 (model.infer_sigma=false: a real observation's sigma is
    otherwise inferred): no weights fit it to within 3 sigma², every chain leaves the band after burn-in and no
    sample is taken."""
    from dip_lightning.artifacts import save_image

    noisy = (load_image("astronaut", 32) + 25 / 255 * torch.randn(3, 32, 32)).clamp(0, 1)
    save_image(tmp_path / "noisy.png", noisy)
    run_dir, out, err, code = run_cli(capsys, "fit", "--config", "sgld_denoise", *tiny_args("sgld_denoise"),
                                      f"--trainer.default_root_dir={tmp_path}",
                                      f"--data.image={tmp_path / 'noisy.png'}", "--data.is_observation=true",
                                      "--model.sigma=1", "--model.infer_sigma=false", "--model.strategy.burn_in=10",
                                      "--model.strategy.thin=2",
                                      "--trainer.max_steps=60")
    errors = _error_lines(err)
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "no posterior: 0 of 25 planned posterior samples" in errors[0] and "every chain left the band" in errors[0]
    assert "model.sigma is likely below the observation's real noise" in errors[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())  # the results it has are written
    assert metrics["samples"] == 0 and (run_dir / "restored.png").is_file() and (run_dir / "summary.png").is_file()


def test_chains_that_did_not_mix_get_one_warning_line_and_rhat_in_the_std_panel(capsys, tmp_path):
    from dip_lightning.callbacks.artifacts import _std_title

    run_dir, out, err, code = run_cli(capsys, "fit", "--config", "sgld_denoise", *tiny_args("sgld_denoise"),
                                      f"--trainer.default_root_dir={tmp_path}", "--model.strategy.chains=2",
                                      "--model.strategy.burn_in=10", "--model.strategy.thin=2",
                                      "--model.strategy.max_mse_ratio=1e9", "--trainer.max_steps=50")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and metrics["rhat_p99"] > 1.1, err  # two chains of 20 samples each, from different starts
    assert warnings == [f"warning: the chains did not mix: split-R̂ p99 {metrics['rhat_p99']:.2f} > 1.1 (median "
                        f"{metrics['rhat_median']:.2f}; rhat.png maps it), so the posterior std is too small where "
                        f"R̂ is high: run longer (trainer.max_steps) or more chains (model.strategy.chains)"], err
    title = _std_title(torch.full((3, 4, 4), 0.1), metrics)
    assert f"split-R̂ median {metrics['rhat_median']:.2f}, p99 {metrics['rhat_p99']:.2f}" in title


def test_a_yaml_syntax_error_names_the_file_the_line_and_the_fault(capsys, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  class_path: dip_lightning.tasks.Denoise\n  init_args:\n    sigma 25\n    "
                      "likelihood: gaussian\n")
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}")
    report = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and run_dir is None and len(report) == 2, err
    assert report[0].startswith(f"error: {config}, line 5, column 15: mapping values are not allowed here"), err
    assert report[1] == "  line 5: likelihood: gaussian"
    _, _, err, code = run_cli(capsys, "options", "--config", str(config))
    assert code == 2 and f"error: {config}, line 5" in err
