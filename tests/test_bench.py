"""bench: the per-image tables over configs x images x seeds, on the resumable sweep runner."""

import csv
import json
from pathlib import Path

import pytest

from conftest import run_cli
from dip_lightning.artifacts import save_image
from dip_lightning.bench import _cell, bench_table, write_bench
from dip_lightning.images import load_image
from dip_lightning.runner import Outcome, Run

SGLD = "sgld_denoise.yaml --model.strategy.burn_in=10 --model.strategy.thin=2 --model.strategy.max_mse_ratio=1e9"
TINY_RUN = ["--data.crop=32", "--model.net.width=8", "--model.net.depth=2", "--trainer.max_steps=30", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false"]


def table_rows(markdown: str, caption: str) -> dict[str, list[str]]:
    """config -> cells of the markdown table under the line starting with `caption`."""
    block = markdown.split(caption, 1)[1].split("\n\n")[1]
    return {line.split(" | ")[0].strip("| `"): [cell.strip() for cell in line.strip("|").split("|")[1:]]
            for line in block.splitlines()[2:]}


@pytest.mark.slow
def test_bench_writes_the_papers_table_and_reruns_only_new_cells(capsys, tmp_path):
    """Six real runs, each its own process (about a minute on 2 cores beside another job): the default suite has
    the table, bench.md and the column check without runs (the tests below)."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "chelsea"):
        save_image(images / f"{name}.png", load_image(name, 32))
    (images / "notes.txt").write_text("not an image: skipped")
    out = tmp_path / "bench"
    args = ["bench", "--images", str(images), "--size", "null", "--jobs", "2", "--out", str(out)]
    _, stdout, err, code = run_cli(capsys, *args, "--configs", "denoise.yaml", SGLD, "--", *TINY_RUN)
    assert code == 0, err
    runs = {(r["config"], r["image"]): r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(runs) == {(c, i) for c in ("denoise.yaml", SGLD) for i in ("astronaut", "chelsea")}
    metrics = {key: json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for key, r in runs.items()}
    assert metrics["denoise.yaml", "astronaut"]["steps"] == 30  # EXTRA ARGS reached the runs
    markdown = (out / "bench.md").read_text()
    assert ("Every cell of a column is the same problem: Denoise of each image at its own size, then its 32x32 centre "
            "crop, cropped to the network's multiple (") in markdown
    assert "--model.sigma=25.0" in markdown and "; pixels fitted: astronaut 32x32, chelsea 32x32." in markdown
    observed = {key: m["psnr_observation_input"] for key, m in metrics.items()}
    assert all(observed["denoise.yaml", image] == observed[SGLD, image] for image in ("astronaut", "chelsea"))
    psnr = table_rows(markdown, "PSNR (dB)")
    assert psnr[SGLD][0] == "psnr_posterior_mean" and psnr["denoise.yaml"][0] == "psnr_selected"
    for config, key in (("denoise.yaml", "psnr_selected"), (SGLD, "psnr_posterior_mean")):
        values = [metrics[config, image][key] for image in ("astronaut", "chelsea")]
        assert psnr[config][1:4] == [f"{values[0]:.2f}", f"{values[1]:.2f}", f"{(values[0] + values[1]) / 2:.2f}"]
    coverage = table_rows(markdown, "coverage_95")
    assert list(coverage) == [SGLD]  # the SGD config has no posterior
    assert coverage[SGLD][0] == f"{metrics[SGLD, 'astronaut']['coverage_95']:.3f}"
    table = list(csv.DictReader((out / "bench.csv").open()))
    assert {(r["config"], r["image"]) for r in table if r["figure"] == "coverage_95"} == {
        (SGLD, "astronaut"), (SGLD, "chelsea"), (SGLD, "mean")}

    oracle = "denoise.yaml --model.strategy.stopping=oracle"
    _, stdout, err, code = run_cli(capsys, *args, "--configs", "denoise.yaml", SGLD, oracle, "--", *TINY_RUN)
    assert code == 0 and "4 of 6 runs finished before" in stdout, stdout + err
    psnr = table_rows((out / "bench.md").read_text(), "PSNR (dB)")
    assert list(psnr) == ["denoise.yaml", SGLD, oracle]
    # the same runs with the output of best ground-truth PSNR returned: never below the blind choice
    assert all(float(o) >= float(w) for o, w in zip(psnr[oracle][1:3], psnr["denoise.yaml"][1:3]))


def outcome(config: str, image: str, seed: int, **metrics) -> Outcome:
    return Outcome(Run({"config": config, "image": image, "seed": seed}, ("fit", config, image, str(seed))),
                   "done", 1.0, metrics)


def test_table_cells_are_mean_and_std_over_seeds_and_the_mean_column_averages_images_per_seed():
    outcomes = [outcome("sgd", "a", 0, psnr_selected=20.0), outcome("sgd", "a", 1, psnr_selected=22.0),
                outcome("sgd", "b", 0, psnr_selected=30.0), outcome("sgd", "b", 1, psnr_selected=34.0),
                outcome("sgld", "a", 0, psnr_selected=1.0, psnr_posterior_mean=25.0),
                Outcome(Run({"config": "sgld", "image": "a", "seed": 1}, ("x",)), "failed", 1.0, {}, "error: x"),
                outcome("sgld", "b", 0, psnr_selected=1.0, psnr_posterior_mean=31.0),
                outcome("sgld", "b", 1, psnr_selected=1.0, psnr_posterior_mean=33.0)]
    sgd, sgld = bench_table(outcomes, "psnr")
    assert sgd["figure"] == "psnr_selected" and sgld["figure"] == "psnr_posterior_mean"
    assert sgd["a"] == pytest.approx((21.0, 2 ** 0.5, 2)) and sgd["b"] == pytest.approx((32.0, 8 ** 0.5, 2))
    assert sgd["mean"] == pytest.approx((26.5, 2 ** 0.5 * 1.5, 2))  # per seed: 25 and 28
    assert sgld["a"] == (25.0, None, 1) and sgld["failed"] == {"a", "mean"}  # seed 1 failed
    assert sgld["mean"] == (28.0, None, 1)  # only seed 0 has every image
    assert bench_table(outcomes, "coverage_95") == []
    no_samples = outcome("sgld", "c", 0, psnr_selected=18.0, samples=0)  # a sampler that took no sample
    (_, sgld), = [bench_table(outcomes + [no_samples], "psnr")]
    assert sgld["figure"] == "psnr_posterior_mean" and sgld["c"] == (None, None, 0) and "c" not in sgld["failed"]


def test_uce_and_nll_get_tables_of_their_own_with_small_figures_legible(tmp_path):
    outcomes = [outcome("mcdropout", "a", 0, psnr_selected=25.0, coverage_95=0.91, uce=2.5e-4, nll=-2.1),
                outcome("sgd", "a", 0, psnr_selected=24.0)]
    (uce,), (nll,) = bench_table(outcomes, "uce"), bench_table(outcomes, "nll")  # SGD alone has no uncertainty
    assert uce["config"] == nll["config"] == "mcdropout"
    assert _cell(uce["a"], 1, False) == "2.50e-04" and _cell(nll["a"], 1, False) == "-2.10"
    write_bench(tmp_path, outcomes, "bench ...", "problem")
    markdown = (tmp_path / "bench.md").read_text()
    assert table_rows(markdown, "uce (the same configs)")["mcdropout"] == ["2.50e-04", "2.50e-04"]
    assert table_rows(markdown, "nll (the same configs)")["mcdropout"] == ["-2.10", "-2.10"]


def test_configs_that_would_fit_different_pixels_in_one_column_are_refused_before_anything_runs(capsys, tmp_path):
    """denoise.yaml fits each photo resized to 128 px, sgld_denoise.yaml its 64x64 centre crop; bench's --size and
    --crop make them one problem (the README's example)."""
    args = ["bench", "--configs", "denoise.yaml", "sgld_denoise.yaml", "--images", "astronaut", "chelsea",
            "--out", str(tmp_path / "bench"), "--dry-run"]
    _, out, err, code = run_cli(capsys, *args)
    errors = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(errors) == 2 and not (tmp_path / "bench").exists(), err
    assert errors[0] == ("error: column astronaut would compare different problems: denoise.yaml fits 128x128 pixels, "
                         "sgld_denoise.yaml 64x64 (--data.crop=null / 64, --data.size=128 / null)")
    assert "give bench --size and --crop" in errors[1]
    _, out, err, code = run_cli(capsys, *args, "--crop", "64")  # a 64 crop of 128 px or of the whole photo
    assert code == 2 and "sgld_denoise.yaml 64x64 (--data.size=128 / null)" in err
    _, out, err, code = run_cli(capsys, *args, "--size", "128", "--crop", "64")
    assert code == 0, err
    assert ("Every cell of a column is the same problem: Denoise of each image resized to 128 px on its longer side, "
            "then its 64x64 centre crop") in out and "pixels fitted: astronaut 64x64, chelsea 64x64." in out
    assert out.count("--data.size=128 --data.crop=64") == 4  # each of the 2 x 2 command lines


def test_bench_md_states_the_problem_and_gives_mean_and_std_over_seeds(tmp_path):
    outcomes = [outcome("sgd", "a", 0, psnr_selected=20.0), outcome("sgd", "a", 1, psnr_selected=22.0),
                outcome("sgld", "a", 0, psnr_posterior_mean=25.0, coverage_95=0.9),
                outcome("sgld", "a", 1, psnr_posterior_mean=27.0, coverage_95=0.94)]
    problem = "Every cell of a column is the same problem: Denoise of each image at its own size (...)."
    write_bench(tmp_path, outcomes, "python -m dip_lightning bench ...", problem)
    markdown = (tmp_path / "bench.md").read_text()
    assert markdown.startswith("# bench: 2 configs x 1 image x 2 seeds\n") and f"\n{problem}\n" in markdown
    psnr = table_rows(markdown, "PSNR (dB)")
    assert psnr["sgd"][:3] == ["psnr_selected", f"21.00 ± {2 ** 0.5:.2f}", f"21.00 ± {2 ** 0.5:.2f}"]
    assert psnr["sgld"][:2] == ["psnr_posterior_mean", f"26.00 ± {2 ** 0.5:.2f}"]
    assert table_rows(markdown, "coverage_95")["sgld"][0] == f"0.920 ± {0.04 / 2 ** 0.5:.3f}"
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert {(r["config"], r["figure"], r["image"]) for r in rows} == {
        ("sgd", "psnr_selected", "a"), ("sgd", "psnr_selected", "mean"), ("sgld", "psnr_posterior_mean", "a"),
        ("sgld", "psnr_posterior_mean", "mean"), ("sgld", "coverage_95", "a"), ("sgld", "coverage_95", "mean")}

