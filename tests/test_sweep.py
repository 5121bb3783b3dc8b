"""Sweeps: the shipped files' agent command lines, offline expansion, and an offline sweep end to end."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import wandb.wandb_agent
import yaml

from conftest import TINY, run_cli
from dip_lightning.images import load_image
from dip_lightning.runner import Outcome, Run, error_line, exit_if_incomplete, job_env
from dip_lightning.summary import write_heatmap, write_summary
from dip_lightning.sweep import agent_command, expand, load_sweep
from wandb_records import run_group_and_summary

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


def agent_command_lines(sweep: dict, params: dict, monkeypatch, tmp_path) -> list[str]:
    """The command line W&B's own agent (wandb.wandb_agent.Agent) starts for a run with `params`."""
    started = []

    class Recorder:  # stands in for the agent's subprocess
        def __init__(self, command=None, **kwargs):
            started.append(command)

    monkeypatch.setattr(wandb.wandb_agent, "AgentProcess", Recorder)
    for variable in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):
        monkeypatch.setenv(variable, "offline-test")  # the agent sets them; restored after the test
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    agent = wandb.wandb_agent.Agent.__new__(wandb.wandb_agent.Agent)  # no server: drive the run step alone
    agent._sweep_command, agent._in_jupyter, agent._function = sweep.get("command"), False, None
    agent._forward_signals, agent._run_processes = False, {}
    agent._command_run({"args": {k: {"value": v} for k, v in params.items()}, "program": sweep["program"],
                        "run_id": "run0"})
    (command,) = started
    return command


def values_to_check(spec: dict, draws: list) -> list:
    """Every grid value; for a distribution its bounds and some seeded draws."""
    if "values" in spec:
        return list(spec["values"])
    return [spec["min"], spec["max"], *draws] if "min" in spec else [spec["value"]]


def resolved(config: dict, dotted: str):
    """The value of `model.net.width` in a printed config, where subclasses nest under init_args."""
    node = config
    for part in dotted.split("."):
        node = node[part] if part in node else node["init_args"][part]
    return node


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_agent_command_line_of_a_shipped_sweep_parses_and_reaches_the_config(path, capsys, monkeypatch,
                                                                                   tmp_path):
    sweep = load_sweep(path)
    draws = expand(sweep, max_runs=3) if sweep["method"] == "random" else []
    assert sweep["metric"]["name"].startswith("final/") and sweep["metric"]["goal"] in ("minimize", "maximize")
    for name, spec in sweep["parameters"].items():
        for value in values_to_check(spec, [draw[name] for draw in draws]):
            command = agent_command_lines(sweep, {name: value}, monkeypatch, tmp_path)
            assert command[:4] == ["/usr/bin/env", "python", "-m", "dip_lightning"], command
            assert command[-1] == f"--{name}={value}"  # W&B's --key=value, a None as "None"
            # the offline runner builds the same line, with this interpreter for the agent's `python`
            assert agent_command(sweep, {name: value}, interpreter="python") == command
            _, out, err, code = run_cli(capsys, *command[4:], "--print_config")
            assert code == 0, err
            assert resolved(yaml.safe_load(out), name) == pytest.approx(value), (name, value)


def test_the_metric_of_every_shipped_sweep_is_in_its_runs_wandb_summary(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    metrics_by_config: dict[str, set[str]] = {}
    for path in SWEEPS:
        sweep = load_sweep(path)
        config = sweep["command"][sweep["command"].index("--config") + 1]
        metrics_by_config.setdefault(config, set()).add(sweep["metric"]["name"])
    assert set(metrics_by_config) == {"denoise.yaml", "sgld_denoise.yaml"}
    for config, names in metrics_by_config.items():
        sampling = ["--model.strategy.burn_in=10", "--model.strategy.thin=2", "--model.strategy.max_mse_ratio=1e9"] \
            if "sgld" in config else []  # a tiny net never fits to 3 sigma²: no divergence guard
        run_dir, _, err, code = run_cli(capsys, "fit", "--config", config, *TINY[:-2], "--trainer.max_steps=40",
                                        *sampling, "--trainer.enable_progress_bar=false",
                                        f"--trainer.default_root_dir={tmp_path}")  # TINY less logger=false
        assert code == 0, err
        (record,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        _, summary = run_group_and_summary(record)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for name in names:
            assert summary[name] == pytest.approx(metrics[name.removeprefix("final/")]), (config, name)


def test_a_none_value_from_an_agent_reaches_the_config_as_null(capsys):
    _, out, err, code = run_cli(capsys, "fit", "--config", "denoise.yaml", "--data.crop=None", "--print_config")
    assert code == 0, err
    assert yaml.safe_load(out)["data"]["init_args"]["crop"] is None


def sweep_file(tmp_path: Path, method: str = "grid", **parameters) -> dict:
    text = yaml.safe_dump({"name": "mine", "program": "dip_lightning", "method": method,
                           "command": ["${env}", "${interpreter}", "-m", "${program}", "fit", "--config",
                                       "denoise.yaml", "${args}"],
                           "metric": {"name": "final/psnr_selected", "goal": "maximize"},
                           "parameters": parameters}, sort_keys=False)
    (tmp_path / "mine.yaml").write_text(text)
    return load_sweep(tmp_path / "mine.yaml")


def test_grid_and_seeded_random_expansion(tmp_path):
    grid = sweep_file(tmp_path, **{"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}, "c": {"value": 0.5}})
    runs = expand(grid)
    assert len(runs) == 6 and runs[0] == {"a": 1, "b": "x", "c": 0.5} and runs[1] == {"a": 1, "b": "y", "c": 0.5}
    assert expand(grid, max_runs=4) == runs[:4]
    rand = sweep_file(tmp_path, "random", lr={"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-1},
                      steps={"min": 10, "max": 20}, opt={"values": ["adam", "sgd"]})
    draws = expand(rand, max_runs=50, seed=3)
    assert draws == expand(rand, max_runs=50, seed=3) != expand(rand, max_runs=50, seed=4)
    assert all(1e-3 <= d["lr"] <= 1e-1 and isinstance(d["steps"], int) and 10 <= d["steps"] <= 20 for d in draws)
    assert {d["opt"] for d in draws} == {"adam", "sgd"}
    assert min(d["lr"] for d in draws) < 1e-2 < max(d["lr"] for d in draws)  # log-uniform: both decades


@pytest.mark.parametrize("change, message", [
    ({"method": "bayes"}, "needs W&B's server"),
    ({"method": "random"}, "give --max-runs N"),
    ({"parameters": {"lr": {"distribution": "beta", "min": 0, "max": 1}}, "method": "random", "run_cap": 2},
     "distribution 'beta' is not supported offline"),
    ({"parameters": {"lr": {"min": 0.1, "max": 1.0}}}, "a grid needs `values`"),
    ({"command": ["${env}", "${interpreter}", "train.py", "${args}"]}, "must run `python -m dip_lightning fit"),
    ({"metric": {"name": "psnr/ground_truth"}}, "name it e.g. final/psnr_selected"),
])
def test_sweep_files_the_offline_runner_cannot_run_are_refused_with_one_line(change, message, capsys, tmp_path):
    sweep = {"program": "dip_lightning", "method": "grid", "metric": {"name": "final/psnr_selected"},
             "command": ["${env}", "${interpreter}", "-m", "${program}", "fit", "${args}"],
             "parameters": {"model.net.width": {"values": [4]}}} | change
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    _, _, err, code = run_cli(capsys, "sweep", str(tmp_path / "s.yaml"), "--dry-run")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_offline_sweep_records_a_failing_value_resumes_and_groups_its_wandb_runs(capsys, monkeypatch, tmp_path):
    """Six real runs, each its own process (about a minute on 2 cores beside another job): the default suite has
    the summary, the heat map and the exit status of a failed run without runs (the test below)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep_file(tmp_path, **{"model.net.width": {"values": [4, 8]}, "data.crop": {"values": [16, 1000]}})
    out = tmp_path / "sweep"
    args = ["sweep", str(tmp_path / "mine.yaml"), "--jobs", "2", "--out", str(out), "--",
            "--model.net.depth=2", "--trainer.max_steps=20", "--trainer.enable_progress_bar=false"]
    _, stdout, err, code = run_cli(capsys, *args)
    assert code == 1 and "2 of 4 runs failed" in err, err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["model.net.width"], r["data.crop"], r["status"]) for r in rows] == [
        ("4", "16", "done"), ("4", "1000", "failed"), ("8", "16", "done"), ("8", "1000", "failed")]
    for row in rows:
        if row["status"] == "failed":
            assert row["error"].startswith("error: crop 1000 does not fit the "), row
            assert not row["final/psnr_selected"]
            continue
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert float(row["final/psnr_selected"]) == pytest.approx(metrics["psnr_selected"])
        assert metrics["steps"] == 20
        (record,) = Path(row["run_dir"]).glob("wandb/offline-run-*/run-*.wandb")
        group, summary = run_group_and_summary(record)
        assert group == "mine"  # all runs of the sweep in one W&B group, named after it
        assert summary["final/psnr_selected"] == pytest.approx(metrics["psnr_selected"])  # the sweep's metric
    assert (out / "heatmap.png").stat().st_size > 0 and "failed" in (out / "summary.md").read_text()
    kept = {r["run_dir"]: Path(r["run_dir"]).stat().st_mtime for r in rows if r["status"] == "done"}

    _, stdout, err, code = run_cli(capsys, *args)  # the same command again: only the failed runs rerun
    assert code == 1 and "2 of 4 runs finished before" in stdout
    again = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["run_dir"]: Path(r["run_dir"]).stat().st_mtime for r in again if r["status"] == "done"} == kept
    assert [r["status"] for r in again] == [r["status"] for r in rows]


def test_summary_and_heat_map_of_a_sweep_with_a_failed_run(capsys, tmp_path):
    def outcome(width: int, crop: int, psnr: float | None) -> Outcome:
        run = Run({"model.net.width": width, "data.crop": crop}, ("fit", str(width), str(crop)))
        if psnr is None:
            return Outcome(run, "failed", 2.0, error="error: crop 1000 does not fit the 512x512 image")
        return Outcome(run, "done", 3.0, {"psnr_selected": psnr}, run_dir=tmp_path / f"run{width}")

    outcomes = [outcome(4, 16, 20.5), outcome(4, 1000, None), outcome(8, 16, 22.25), outcome(8, 1000, None)]
    write_summary(tmp_path, outcomes, {"final/psnr_selected": "psnr_selected"}, "sweep mine",
                  best=("final/psnr_selected", "maximize"))
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["model.net.width"], r["data.crop"], r["status"], r["final/psnr_selected"]) for r in rows] == [
        ("4", "16", "done", "20.5"), ("4", "1000", "failed", ""), ("8", "16", "done", "22.25"),
        ("8", "1000", "failed", "")]
    markdown = (tmp_path / "summary.md").read_text()
    assert "Best final/psnr_selected (maximize): **22.25** at model.net.width=8, data.crop=16." in markdown
    assert "error: crop 1000 does not fit the 512x512 image" in markdown
    assert write_heatmap(tmp_path / "heatmap.png", outcomes, "final/psnr_selected", "psnr_selected", "maximize",
                         title="sweep mine")
    assert load_image(tmp_path / "heatmap.png").shape[0] in (3, 4)
    with pytest.raises(SystemExit) as stop:
        exit_if_incomplete(outcomes, tmp_path)
    assert stop.value.code == 1 and "2 of 4 runs failed" in capsys.readouterr().err


def test_dry_run_prints_each_command_line_and_the_count(capsys, tmp_path):
    _, out, err, code = run_cli(capsys, "sweep", str(SWEEPS[0].parent / "width_depth.yaml"), "--dry-run",
                                "--out", str(tmp_path), "--", "--data.crop=32")
    lines = out.strip().splitlines()
    assert code == 0 and lines[-1].startswith("25 runs, 0 finished before")
    assert lines[0].split()[:4] == ["/usr/bin/env", sys.executable, "-m", "dip_lightning"]
    assert "--model.net.width=16 --model.net.depth=2 --data.crop=32 --trainer.default_root_dir=" in lines[0]


def test_each_job_gets_its_gpu_its_share_of_the_cores_and_the_sweep_group(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    envs = [job_env(slot, 3, ["4", "7"], "mine") for slot in range(3)]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["4", "7", "4"]  # one GPU each, round robin
    cores = len(os.sched_getaffinity(0))
    assert {env["OMP_NUM_THREADS"] for env in envs} == {str(max(1, cores // 3))}
    assert {env["WANDB_RUN_GROUP"] for env in envs} == {"mine"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert job_env(0, 2, [], None)["OMP_NUM_THREADS"] == "3"  # yours wins


def test_the_error_line_of_a_failed_run():
    assert error_line("wandb: Syncing\nerror: crop 9 does not fit\nwandb: done\n", 2) == "error: crop 9 does not fit"
    parser_error = "usage: x\nerror: Parser key \"depth\":\n  Expected a <class 'int'>. Got value: deep\nwandb: x\n"
    assert error_line(parser_error, 2) == "error: Parser key \"depth\": Expected a <class 'int'>. Got value: deep"
    traceback = "Traceback (most recent call last):\n  File \"x.py\"\nRuntimeError: CUDA out of memory\n"
    assert error_line(traceback, 1) == "RuntimeError: CUDA out of memory"
    assert error_line("Killed\n", -9).startswith("killed by signal 9")
