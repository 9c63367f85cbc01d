"""Reconstruction and timing jobs, dry runs, presets and launchers on the shipped digits model."""

import pytest
import torch
from omegaconf import OmegaConf

from harness.checkpoints import load_checkpoint
from harness.datasets import digits
from harness.sampling import decode, encode, reconstruction_mse
from harness.schedule import NoiseSchedule
from harness.trajectory import timesteps
from clitools import ROOT, harness, runs


def test_reconstruction_error_of_the_default_model_falls_with_S():
    torch.set_num_threads(1)
    model, _ = load_checkpoint(OmegaConf.load(ROOT / "conf" / "model" / "digits.yaml"))
    x0 = digits.images("test")[:32]
    schedule = NoiseSchedule.linear()
    mse = {}
    for S in (10, 50, 200):
        tau = timesteps("uniform", S)
        mse[S] = float(reconstruction_mse(x0, decode(model, encode(model, x0, tau, schedule), tau, schedule)).mean())
    assert mse[10] > mse[50] > mse[200], mse


def test_recon_and_timing_jobs_log_their_metrics(tmp_path):
    harness(tmp_path, "-m", "job=recon", "S=5,20", "N=16", "batch_size=16")
    harness(tmp_path, "-m", "job=timing", "S=10,40", "batch_size=16", "job.repeats=3", "hydra.launcher.n_jobs=1")
    df = runs(tmp_path)
    assert set(df["status"]) == {"FINISHED"} and len(df) == 4
    recon = df[df["params.job"] == "recon"].set_index("params.S")
    assert recon.loc["5", "metrics.recon_mse"] > recon.loc["20", "metrics.recon_mse"] > 0
    assert (recon["metrics.recon_mse_stderr"] > 0).all() and (recon["metrics.n_images"] == 16).all()
    timing = df[df["params.job"] == "timing"].set_index("params.S")
    ratio = timing.loc["40", "metrics.seconds_per_image"] / timing.loc["10", "metrics.seconds_per_image"]
    assert 2.0 < ratio < 8.0, ratio  # 4x the network evaluations: roughly 4x the time
    for S in ("10", "40"):
        row = timing.loc[S]
        assert row["metrics.hours_50k"] == pytest.approx(50_000 * row["metrics.seconds_per_image"] / 3600)
        assert row["metrics.seconds_per_nfe"] == pytest.approx(row["metrics.seconds_per_batch"] / int(S))
        assert row["tags.dtype"] == "float32" and row["tags.timing_batch_size"] == "16"


def test_dry_run_lists_cells_without_sampling(tmp_path):
    harness(tmp_path, "N=8", "S=5")  # one finished cell
    proc = harness(tmp_path, "-m", "N=8", "S=5,10", "dry_run=true")
    assert "S=5 eta=0 uniform: NFE 5, done" in proc.stdout
    assert "S=10 eta=0 uniform: NFE 10, to run" in proc.stdout
    assert "2 cells: 1 done, 1 to run" in proc.stdout
    assert len(runs(tmp_path)) == 1


@pytest.mark.parametrize("preset", ["table1_cifar10", "table1_celeba", "table2_cifar10", "table3_bedroom", "table3_church"])
def test_paper_presets_dry_run_without_their_data(tmp_path, preset):
    proc = harness(tmp_path, f"sweeps={preset}", "dry_run=true")
    lines = proc.stdout.splitlines()
    cells = [line for line in lines if ": NFE " in line]
    expected = {"table1_cifar10": 25, "table1_celeba": 25, "table2_cifar10": 7, "table3_bedroom": 8, "table3_church": 8}
    assert len(cells) == expected[preset]
    assert "missing" in proc.stdout.lower()
    assert not (tmp_path / "out" / "cells").exists()


def test_cifar10_preset_uses_the_papers_settings(tmp_path):
    proc = harness(tmp_path, "sweeps=table1_cifar10", "dry_run=true")
    assert "cifar10 sample S=100 eta=0 quad: NFE 100" in proc.stdout
    assert "cifar10 sample S=10 eta=hat quad" in proc.stdout


def test_submitit_local_launcher_runs_the_cells(tmp_path):
    harness(tmp_path, "-m", "hydra/launcher=local", "N=8", "batch_size=8", "S=3", "eta=0,1", "threads=1")
    df = runs(tmp_path)
    assert len(df) == 2 and set(df["status"]) == {"FINISHED"}
