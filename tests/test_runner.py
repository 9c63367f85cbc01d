"""The main command end to end: a tiny multirun into a temporary SQLite store, bad input, skip and resume."""

import mlflow
import pytest
import torch

from clitools import harness, runs


def test_tiny_multirun_logs_every_cell(tmp_path):
    proc = harness(tmp_path, "-m", "N=32", "batch_size=16", "S=4,5", "eta=0,1", "hydra.launcher.n_jobs=2")
    df = runs(tmp_path)
    assert len(df) == 4 and set(df["status"]) == {"FINISHED"}  # two parallel workers, one SQLite store, nothing lost
    assert sorted(zip(df["params.S"], df["params.eta"])) == [("4", "0"), ("4", "1"), ("5", "0"), ("5", "1")]
    assert (df["params.S"] == df["params.nfe"]).all() and set(df["params.N"]) == {"32"}
    assert set(df["params.trajectory"]) == {"uniform"}
    assert df["metrics.fid"].notna().all() and (df["metrics.fid"] > 0).all()
    assert (df["metrics.seconds_per_image"] > 0).all() and (df["metrics.sampling_seconds"] > 0).all()
    assert set(df["tags.feature_extractor"]) == {"digits-cnn"}
    assert df["tags.checkpoint_sha256"].str.len().eq(64).all()
    assert df["tags.git_commit"].notna().all() and df["tags.device"].eq("cpu").all()
    for run_id in df["run_id"]:
        names = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
        assert {"config.yaml", "samples.png", "hydra"} <= names
    assert proc.stdout.count("[done]") == 4 and "FID" in proc.stdout

    # A second run of the same sweep skips every cell.
    again = harness(tmp_path, "-m", "N=32", "batch_size=16", "S=4,5", "eta=0,1", "hydra.launcher.n_jobs=1")
    assert again.stdout.count("[skip]") == 4 and len(runs(tmp_path)) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["S=0"], "S (the number of sampling steps"),
        (["S=1001"], "1..1000"),
        (["eta=-0.5"], "eta must be a number >= 0 or 'hat'"),
        (["N=1"], "N must be an integer >= 2"),
        (["-m", "S=10,2000", "N=4"], "1..1000"),
        (["-m", "eta=0,minus", "N=4"], "eta must be"),
        (["model.checkpoint.path=/nonexistent/ckpt.pth", "N=4"], "/nonexistent/ckpt.pth"),
        (["model=cifar10", "N=4"], "model=cifar10 takes 3x32x32 images but dataset=digits has 1x8x8"),
    ],
)
def test_bad_input_is_one_clear_message(tmp_path, args, message):
    proc = harness(tmp_path, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("cells/*/samples/*.pt"))  # no heavy work happened
    if "-m" not in args and "checkpoint" not in args[0]:
        assert not (tmp_path / "mlflow.db").exists()  # refused before the tracking store was touched


def test_unknown_dataset_names_the_options(tmp_path):
    proc = harness(tmp_path, "dataset=imagenet", check=False)
    assert proc.returncode != 0 and "dataset" in proc.stderr and "digits" in proc.stderr


def test_interrupted_cell_resumes_to_the_same_images(tmp_path):
    common = ["N=40", "batch_size=8", "S=4", "eta=1", "job.grid_images=40"]
    harness(tmp_path / "a", *common)
    broken = harness(tmp_path / "b", *common, "debug.fail_after_batches=2", check=False)
    assert broken.returncode != 0
    shards = list((tmp_path / "b" / "out").glob("cells/*/samples/*.pt"))
    assert len(shards) == 2
    resumed = harness(tmp_path / "b", *common[:1], "batch_size=16", *common[2:])  # another batch size on resume

    def images(root):
        (cell,) = (root / "out" / "cells").iterdir()
        shard = [torch.load(p, weights_only=True) for p in sorted((cell / "samples").glob("*.pt"))]
        out = torch.zeros((40, 1, 8, 8), dtype=torch.uint8)
        for s in shard:
            out[s["indices"]] = s["images"]
        return out

    assert torch.equal(images(tmp_path / "a"), images(tmp_path / "b"))
    df = runs(tmp_path / "b")
    assert sorted(df["status"]) == ["FAILED", "FINISHED"]
    finished = df[df["status"] == "FINISHED"].iloc[0]
    assert finished["metrics.images_sampled"] == 40 - 16
    assert "[done]" in resumed.stdout
