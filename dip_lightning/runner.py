"""The engine of `sweep` and `bench`: runs many `python -m dip_lightning fit` command lines, N at once,
resumably, with a progress bar over runs.

Each run has its own folder `<out>/runs/<key>/`, `key` a hash of its command line: the run's directory
(passed as `--trainer.default_root_dir`), log.txt (its output) and record.json (status, seconds, error
line). Running the same runs again keeps those whose record says done and whose metrics.json is
complete, and reruns the others (failed, interrupted, never started) from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .errors import InputError


def split_extra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(own options, EXTRA ARGS): what follows the first `--` is appended to every run's command line."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1:])


@dataclass(frozen=True)
class Run:
    """One command line, and the parameter values it stands for (the summary's columns)."""

    params: dict[str, Any]
    command: tuple[str, ...]

    @property
    def key(self) -> str:
        """12 hex digits of a hash of the command line, with this interpreter's path written `python` (a
        moved environment still finds its runs): the name of the run's folder."""
        parts = ["python" if part == sys.executable else part for part in self.command]
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:12]

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.key

    def full_command(self, out: Path) -> list[str]:
        """The command line as run: the run's folder appended as its `trainer.default_root_dir`."""
        return [*self.command, f"--trainer.default_root_dir={self.folder(out)}"]


@dataclass
class Outcome:
    """What became of a run: status `done`, `failed`, `interrupted` or `not run`."""

    run: Run
    status: str
    seconds: float = 0.0  # wall clock of the run's process, imports included
    metrics: dict[str, Any] = field(default_factory=dict)  # its metrics.json
    error: str = ""  # a failed run's error line
    run_dir: Path | None = None
    earlier: bool = False  # finished by an earlier invocation and kept


def run_all(runs: list[Run], out: Path, jobs: int = 1, group: str | None = None, label: str = "runs") -> list[Outcome]:
    """Run every run that has not finished before, `jobs` at once; returns the outcome of each run, in order.

    Each job has its own environment: `WANDB_RUN_GROUP=group`; with GPUs, `CUDA_VISIBLE_DEVICES` one
    GPU per job (round robin); `OMP_NUM_THREADS` = cores // jobs unless you set it, so CPU jobs share
    the cores instead of oversubscribing them. Ctrl+C (or SIGTERM) stops the running processes, which
    save what they have; their outcome is `interrupted`, those never started `not run`.
    """
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, not {jobs}")
    start = time.perf_counter()
    unique: dict[str, Run] = {}
    for run in runs:
        unique.setdefault(run.key, run)  # a value drawn twice runs once
    results = {key: finished_before(run, run.folder(out)) for key, run in unique.items()}
    todo = [run for key, run in unique.items() if results[key] is None]
    if len(todo) < len(unique):
        print(f"{len(unique) - len(todo)} of {len(unique)} runs finished before: kept, not rerun")
    devices = visible_gpus()
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(jobs):
        slots.put(slot)
    launch = _Launcher()

    def work(run: Run) -> Outcome:
        slot = slots.get()
        try:
            return launch(run, out, job_env(slot, jobs, devices, group))
        finally:
            slots.put(slot)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    bar = tqdm(total=len(todo), desc=label, unit="run", dynamic_ncols=True, disable=not todo)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(work, run) for run in todo]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    results[outcome.run.key] = outcome
                    bar.update()
                    bar.set_postfix(failed=sum(o is not None and o.status == "failed" for o in results.values()))
            except KeyboardInterrupt:
                launch.stop()
                for future in futures:
                    outcome = future.result()
                    results[outcome.run.key] = outcome
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    outcomes = [results[run.key] for run in runs]
    _print_tally(outcomes, out, group, time.perf_counter() - start)
    return outcomes


def print_dry_run(runs: list[Run], out: Path) -> None:
    """Print each command line as it would run (those finished before marked) and the count."""
    finished = 0
    for run in runs:
        done = finished_before(run, run.folder(out)) is not None
        finished += done
        print(shlex.join(run.full_command(out)) + ("  # finished before" if done else ""))
    print(f"{len(runs)} runs, {finished} finished before -> {out}")


def exit_if_incomplete(outcomes: list[Outcome], out: Path) -> None:
    """Exit with status 130 if the runs were interrupted, 1 if some failed (saying how many); else return."""
    counts = Counter(outcome.status for outcome in outcomes)
    if counts["interrupted"] or counts["not run"]:
        print(f"interrupted: {counts['done']} of {len(outcomes)} runs finished and are kept; "
              f"rerun the same command to run the rest", file=sys.stderr)
        sys.exit(130)
    if counts["failed"]:
        print(f"error: {counts['failed']} of {len(outcomes)} runs failed: their error lines are in "
              f"{out / 'summary.md'}; rerun the same command to retry them", file=sys.stderr)
        sys.exit(1)


def finished_before(run: Run, folder: Path) -> Outcome | None:
    """The outcome of a run that an earlier invocation finished (record done, metrics.json complete), else None."""
    try:
        record = json.loads((folder / "record.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    run_dir = folder / record["run_dir"] if record.get("run_dir") else None
    metrics = _read_metrics(run_dir)
    if record.get("status") != "done" or not _complete(metrics):
        return None
    return Outcome(run, "done", record["seconds"], metrics, run_dir=run_dir, earlier=True)


def visible_gpus() -> list[str]:
    """The GPUs runs may use: the CUDA_VISIBLE_DEVICES list when it is set, else every GPU torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def job_env(slot: int, jobs: int, devices: list[str], group: str | None) -> dict[str, str]:
    """The environment of the runs of job `slot` (0 .. jobs-1); see `run_all`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # log.txt fills as the run goes
    if group:
        env["WANDB_RUN_GROUP"] = group
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // jobs)))
    return env


def error_line(log: str, returncode: int) -> str:
    """The line that says why a run failed: its last `error: ...` message (with the indented lines that
    follow it, as jsonargparse writes them), else the last exception line of a traceback."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip() and not line.startswith("wandb:")]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error:"):
            block = [lines[i]] + list(_indented(lines[i + 1:]))
            return " ".join(" ".join(block).split())[:300]
    for line in reversed(lines):
        if re.match(r"[\w.]*(Error|Exception|Interrupt)\b", line):
            return line[:300]
    if returncode < 0:
        return f"killed by signal {-returncode} (out of memory? see log.txt)"
    return f"exit status {returncode} (see log.txt)"


def _indented(lines: list[str]):
    for line in lines:
        if not line.startswith((" ", "\t")):
            return
        yield line


class _Launcher:
    """Starts runs until stopped; `stop` sends Ctrl+C (SIGINT) once to each running process.

    Each process is its own session, so a Ctrl+C at the terminal reaches only the runner, which then
    forwards exactly one SIGINT (a second one could cut short the saving of results).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopped = False
        self.running: set[subprocess.Popen] = set()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for process in self.running:
                process.send_signal(signal.SIGINT)

    def __call__(self, run: Run, out: Path, env: dict[str, str]) -> Outcome:
        if self.stopped:
            return Outcome(run, "not run")
        folder = run.folder(out)
        shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
        folder.mkdir(parents=True)
        start = time.perf_counter()
        with (folder / "log.txt").open("w") as log:
            with self.lock:
                if self.stopped:
                    return Outcome(run, "not run")
                process = subprocess.Popen(run.full_command(out), stdout=log,
                                           stderr=subprocess.STDOUT, env=env, start_new_session=True)
                self.running.add(process)
            returncode = process.wait()
            with self.lock:
                self.running.discard(process)
        seconds = time.perf_counter() - start
        text = (folder / "log.txt").read_text(errors="replace")
        run_dir = _outputs_dir(text)
        metrics = _read_metrics(run_dir)
        if returncode == 0 and _complete(metrics):
            outcome = Outcome(run, "done", seconds, metrics, run_dir=run_dir)
        else:
            if self.stopped:
                outcome = Outcome(run, "interrupted", seconds, metrics, run_dir=run_dir)
            else:
                error = error_line(text, returncode) if returncode else "finished without a complete metrics.json"
                outcome = Outcome(run, "failed", seconds, metrics, error, run_dir)
        record = {"status": outcome.status, "seconds": seconds, "error": outcome.error, "params": run.params,
                  "command": list(run.command), "run_dir": run_dir.name if run_dir else None}
        (folder / "record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        return outcome


def _outputs_dir(log: str) -> Path | None:
    """The run directory named by the run's last `outputs: <dir>` line."""
    found = re.findall(r"^outputs: (.+)$", log, flags=re.MULTILINE)
    return Path(found[-1]) if found else None


def _read_metrics(run_dir: Path | None) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metrics.json").read_text()) if run_dir else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _complete(metrics: dict[str, Any]) -> bool:
    return bool(metrics) and not metrics.get("interrupted")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a cluster's time limit) stops the runs as Ctrl+C does


def _print_tally(outcomes: list[Outcome], out: Path, group: str | None, seconds: float) -> None:
    counts = Counter(outcome.status for outcome in outcomes)
    earlier = sum(outcome.earlier for outcome in outcomes)
    parts = [f"{counts['done']} done" + (f" ({earlier} from before)" if earlier else "")]
    parts += [f"{counts[status]} {status}" for status in ("failed", "interrupted", "not run") if counts[status]]
    print(f"{len(outcomes)} runs: {', '.join(parts)}; {seconds:.1f} s")
    if any(outcome.run_dir and any((outcome.run_dir / "wandb").glob("offline-run-*")) for outcome in outcomes):
        print(f"W&B offline runs (group {group}): upload them with `wandb sync {out}/runs/*/*/wandb/offline-run-*`")
