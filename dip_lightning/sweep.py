"""`python -m dip_lightning sweep SWEEP.yaml` (e.g. sweeps/width_depth.yaml): a W&B sweep file run on this machine, no W&B server needed.

Expands the file's `grid` or `random` search (seeded) into the command lines a `wandb agent` builds from
it (`${env} ${interpreter} ${program} ${args}` with `--key=value` arguments, by W&B's own code) and runs
them through the resumable runner (runner.py). Each run is a W&B offline run (online when you are
logged in) in one W&B group named after the sweep; `wandb sync` uploads offline runs later. The sweep
directory gets summary.csv, summary.md and, when two parameters vary, heatmap.png.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .runner import Run, exit_if_incomplete, print_dry_run, run_all, split_extra_args
from .summary import write_heatmap, write_summary

METHODS = ("grid", "random")

# W&B's distributions (https://docs.wandb.ai/models/sweeps/sweep-config-keys), drawn with a seeded RNG
DISTRIBUTIONS = {
    "constant": lambda spec, rng: spec["value"],
    "categorical": lambda spec, rng: rng.choices(spec["values"], weights=spec.get("probabilities"))[0],
    "int_uniform": lambda spec, rng: rng.randint(spec["min"], spec["max"]),
    "uniform": lambda spec, rng: rng.uniform(spec["min"], spec["max"]),
    "q_uniform": lambda spec, rng: round(rng.uniform(spec["min"], spec["max"]) / spec.get("q", 1)) * spec.get("q", 1),
    "log_uniform": lambda spec, rng: math.exp(rng.uniform(spec["min"], spec["max"])),
    "log_uniform_values": lambda spec, rng: math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))),
    "normal": lambda spec, rng: rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)),
    "log_normal": lambda spec, rng: math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))),
}


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and check a W&B sweep file: a mapping with `method`, `parameters` and a `command` that runs
    `-m dip_lightning` (the runner reads the runs' `outputs:` line and metrics.json)."""
    try:
        sweep = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"sweep file not found: {path} (give a W&B sweep YAML such as sweeps/width_depth.yaml)") from None
    except yaml.YAMLError as err:
        raise InputError(f"cannot read {path} as YAML: {' '.join(str(err).split())}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict) or not sweep["parameters"]:
        raise InputError(f"{path} is not a W&B sweep file: it needs a `parameters:` mapping (see sweeps/)")
    if sweep.get("method") == "bayes":
        raise InputError("method: bayes needs W&B's server to choose each run: run `wandb sweep FILE` and "
                         "`wandb agent ID`, or use method grid or random offline")
    if sweep.get("method") not in METHODS:
        raise InputError(f"{path}: method must be one of {', '.join(METHODS)} offline, not {sweep.get('method')!r}")
    for name, spec in sweep["parameters"].items():
        if not isinstance(spec, dict) or "parameters" in spec:
            raise InputError(f"parameter {name!r}: give `value`, `values` or a `distribution` "
                             f"(nested parameters are not supported offline)")
    command = agent_command(sweep, {}) if sweep.get("program") else []
    if not any(command[i:i + 2] == ["-m", "dip_lightning"] for i in range(len(command))):
        raise InputError(f"{path}: the sweep must run `python -m dip_lightning fit ...`: set `program: dip_lightning` "
                         f"and `command: [${{env}}, ${{interpreter}}, -m, ${{program}}, fit, --config, X.yaml, "
                         f"${{args}}]`")
    return sweep


def sweep_name(sweep: dict[str, Any], path: str | Path) -> str:
    """The sweep's `name`, or the file's stem: the W&B group and the default output folder."""
    return str(sweep.get("name") or Path(path).stem)


def expand(sweep: dict[str, Any], max_runs: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The parameter values of each run: the whole grid (in file order, the last parameter varying
    fastest) or `max_runs` random draws (seeded: the same draws on every call, so a rerun resumes).

    `max_runs` defaults to the file's `run_cap`; a random search needs one of the two.
    """
    parameters: dict[str, dict] = sweep["parameters"]
    max_runs = max_runs if max_runs is not None else sweep.get("run_cap")
    if max_runs is not None and max_runs < 1:
        raise InputError(f"--max-runs (or run_cap) must be at least 1, not {max_runs}")
    if sweep["method"] == "grid":
        axes = {}
        for name, spec in parameters.items():
            if "values" not in spec and "value" not in spec:
                raise InputError(f"parameter {name!r}: a grid needs `values` (or `value`); for a distribution "
                                 f"use method: random")
            axes[name] = spec["values"] if "values" in spec else [spec["value"]]
        grid = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        return grid[:max_runs]
    if max_runs is None:
        raise InputError("a random search has no end: give --max-runs N (or `run_cap: N` in the sweep file)")
    rng = random.Random(seed)
    return [{name: _draw(name, spec, rng) for name, spec in parameters.items()} for _ in range(max_runs)]


def _draw(name: str, spec: dict[str, Any], rng: random.Random) -> Any:
    """One value of a parameter, by W&B's rules: `values` -> categorical, `value` -> constant,
    `min`/`max` -> int_uniform for integers, uniform otherwise, unless `distribution` says."""
    if "distribution" in spec:
        kind = spec["distribution"]
    elif "values" in spec:
        kind = "categorical"
    elif "value" in spec:
        kind = "constant"
    else:
        kind = "int_uniform" if all(isinstance(spec.get(k), int) for k in ("min", "max")) else "uniform"
    if kind not in DISTRIBUTIONS:
        raise InputError(f"parameter {name!r}: distribution {kind!r} is not supported offline; "
                         f"use one of {', '.join(DISTRIBUTIONS)}")
    try:
        return DISTRIBUTIONS[kind](spec, rng)
    except KeyError as missing:
        raise InputError(f"parameter {name!r}: distribution {kind} needs {missing}") from None


def agent_command(sweep: dict[str, Any], params: dict[str, Any], interpreter: str = sys.executable) -> list[str]:
    """The command line `wandb agent` runs for `params`, built by W&B's own functions as its agent does
    (its `${interpreter}` is `python`; here it is this interpreter, so runs use this environment)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    macros = create_sweep_command_args({"args": {name: {"value": value} for name, value in params.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=[interpreter], program=[sweep["program"]])
    command = []
    for part in create_sweep_command(list(sweep.get("command") or [])):  # W&B's default when none
        part = str(part)
        command += (macros.get(part[2:-1]) or []) if part.startswith("${") and part.endswith("}") else [part]
    return command


def sweep_metric(sweep: dict[str, Any]) -> tuple[str, str, str] | None:
    """(name, metrics.json key, goal) of the sweep's metric, None without one. Runs log metrics.json's
    figures as `final/<key>`; the goal defaults to W&B's, minimize."""
    metric = sweep.get("metric") or {}
    name = str(metric.get("name", ""))
    if not name:
        return None
    if not name.startswith("final/"):
        raise InputError(f"metric {name!r}: offline sweeps read the metric from each run's metrics.json, "
                         f"logged to W&B as final/<key>: name it e.g. final/psnr_selected")
    return name, name.removeprefix("final/"), str(metric.get("goal", "minimize"))


def main(argv: list[str]) -> Path | None:
    """`sweep FILE [--dry-run] [--jobs N] [--max-runs N] [--seed S] [--out DIR] [-- EXTRA ARGS]`."""
    own, extra = split_extra_args(argv)
    parser = argparse.ArgumentParser(prog="python -m dip_lightning sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="a W&B sweep YAML (sweeps/*.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the command lines and their count, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one GPU each when there are that many)")
    parser.add_argument("--max-runs", type=int, help="at most this many runs (a random search needs it or run_cap)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random search's draws")
    parser.add_argument("--out", type=Path, help="sweep directory (default outputs/sweeps/<sweep name>)")
    args = parser.parse_args(own)
    sweep = load_sweep(args.file)
    if "early_terminate" in sweep:
        print("notice: early_terminate needs W&B's server to stop runs; offline, every run runs to its end")
    name = sweep_name(sweep, args.file)
    metric = sweep_metric(sweep)
    out = args.out or Path("outputs") / "sweeps" / name
    runs = [Run(params, tuple(agent_command(sweep, params) + extra)) for params in expand(sweep, args.max_runs, args.seed)]
    if args.dry_run:
        print_dry_run(runs, out)
        return None
    outcomes = run_all(runs, out, jobs=args.jobs, group=name, label=f"sweep {name}")
    write_summary(out, outcomes, {metric[0]: metric[1]} if metric else {}, f"sweep {name}",
                  best=(metric[0], metric[2]) if metric else None)
    (out / "heatmap.png").unlink(missing_ok=True)  # an earlier invocation's may no longer fit
    if metric:
        write_heatmap(out / "heatmap.png", outcomes, *metric, title=f"sweep {name}")
    exit_if_incomplete(outcomes, out)
    return out
