"""Reconstruction and timing jobs, dry runs, presets, the dataset axis and launchers on the shipped digits model."""

import pytest
import torch

from harness.core import config
from harness.data import digits
from harness.models.loading import load_checkpoint
from harness.diffusion.sampling import decode, encode, reconstruction_mse
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps
from clitools import cells, harness, runs


def test_reconstruction_error_of_the_default_model_falls_with_S():
    torch.set_num_threads(1)
    model, _ = load_checkpoint(config.load("model", "digits"))
    x0 = digits.images("test")[:32]
    schedule = NoiseSchedule.linear()
    mse = {}
    for S in (10, 50, 200):
        tau = timesteps("uniform", S)
        mse[S] = float(reconstruction_mse(x0, decode(model, encode(model, x0, tau, schedule), tau, schedule)).mean())
    assert mse[10] > mse[50] > mse[200], mse


@pytest.mark.slow
def test_recon_and_timing_jobs_log_their_metrics(tmp_path):
    harness(tmp_path, "-m", "job=recon", "S=5,20", "N=16", "batch_size=16")
    harness(tmp_path, "-m", "job=timing", "S=10,40", "batch_size=16", "job.repeats=3", "hydra.launcher.n_jobs=1")
    df = runs(tmp_path).query("`tags.kind` == 'cell'")
    assert set(df["status"]) == {"FINISHED"} and len(df) == 4
    recon = df[df["params.job"] == "recon"].set_index("params.S")
    assert recon.loc["5", "metrics.recon_mse"] > recon.loc["20", "metrics.recon_mse"] > 0
    assert (recon["metrics.recon_mse_stderr"] > 0).all() and (recon["metrics.n_images"] == 16).all()
    timing = df[df["params.job"] == "timing"].set_index("params.S")
    for S in ("10", "40"):
        row = timing.loc[S]
        assert row["metrics.hours_50k"] == pytest.approx(50_000 * row["metrics.seconds_per_image"] / 3600)
        assert row["metrics.seconds_per_nfe"] == pytest.approx(row["metrics.seconds_per_batch"] / int(S))
        assert row["metrics.seconds_per_batch_min"] <= row["metrics.seconds_per_batch"] <= row["metrics.seconds_per_batch_max"]
        assert row["tags.dtype"] == "float32" and row["tags.timing_batch_size"] == "16"


@pytest.mark.slow
def test_dry_run_lists_cells_without_sampling(tmp_path):
    harness(tmp_path, "N=8", "S=5")  # one finished cell
    proc = harness(tmp_path, "-m", "N=8", "S=5,10", "dry_run=true")
    assert "S=5 eta=0 digits/sample [uniform, 5 x 8 images]: NFE 5, on cpu, done" in proc.stdout
    assert "S=10 eta=0 digits/sample [uniform, 5 x 8 images]: NFE 10, on cpu, to run, ~" in proc.stdout  # timed from the S=5 run
    assert "2 cells: 1 done, 1 to run" in proc.stdout
    assert len(runs(tmp_path).query("`tags.kind` == 'cell'")) == 1


@pytest.mark.parametrize("preset, count", [("table1_cifar10", 25), ("table1_celeba", 25), ("table2_cifar10", 7),
                                           ("table3_bedroom", 8), ("table3_church", 8), ("samplers", 16),
                                           ("samplers_cifar10", 32), ("samplers_exact", 32)])
def test_presets_plan_without_their_data(tmp_path, monkeypatch, capsys, preset, count):
    from harness.run.dryrun import print_plan

    monkeypatch.chdir(tmp_path)  # the plan reads the (empty) store in the working directory
    monkeypatch.setenv("DDIM_HARNESS_DATA", str(tmp_path / "no-data"))
    planned = cells(f"sweeps={preset}")
    assert len(planned) == count
    missing = print_plan(planned)
    out = capsys.readouterr().out
    assert sum(": NFE " in line for line in out.splitlines()) == count
    needs_data = preset not in ("samplers", "samplers_exact")
    assert (missing == count) == needs_data
    if needs_data:  # each missing input printed once for all its cells
        assert [line for line in out.splitlines() if line.startswith("MISSING for")][0].startswith(f"MISSING for {count} cell(s)")


def test_cifar10_preset_uses_the_papers_settings():
    planned = {c.run_name: c for c in cells("sweeps=table1_cifar10")}
    c = planned["S=100 eta=0 cifar10/sample"]
    assert (c.trajectory, c.N, c.repeats, c.nfe, c.metrics["feature_extractor"]) == ("quad", 50000, 1, 100, "inception-v3-compat")
    assert c.model["checkpoint"]["name"] == "cifar10" and planned["S=10 eta=hat cifar10/sample"].eta == "hat"


def test_the_dataset_axis_brings_model_tau_and_metric():
    planned = cells("dataset=digits,cifar10", "S=10,20", "eta=0,1")
    assert len(planned) == 8
    by = {c.dataset["name"]: c for c in planned}
    assert (by["digits"].model["name"], by["digits"].trajectory, by["digits"].metrics["feature_extractor"]) == (
        "digits", "uniform", "digits-cnn")
    assert (by["cifar10"].model["name"], by["cifar10"].trajectory, by["cifar10"].metrics["feature_extractor"]) == (
        "cifar10", "quad", "inception-v3-compat")


def test_sampler_nfe_targets_pick_S():
    planned = {c.sampler: c for c in cells("sampler=ddim,heun,dpm_solver_3", "nfe=20")}
    assert (planned["ddim"].S, planned["ddim"].nfe) == (20, 20)  # S=19 and S=20 both give 20 levels: the largest
    assert planned["heun"].nfe == 19 and planned["dpm_solver_3"].nfe <= 20  # 2 and 3 evaluations per step


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_cells(tmp_path):
    harness(tmp_path, "-m", "hydra/launcher=local", "N=8", "batch_size=8", "S=3", "eta=0,1", "threads=1")
    df = runs(tmp_path).query("`tags.kind` == 'cell'")
    assert len(df) == 2 and set(df["status"]) == {"FINISHED"}
