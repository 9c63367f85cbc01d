"""The main command end to end: a tiny multirun into a temporary SQLite store, bad input, skip and resume."""

import numpy as np
import pandas as pd
import pytest
import torch

from clitools import cells, coloured_pixels, drawn_figures, harness, runs, store_client, store_uri
from harness.sweep.parent import _headline_figure


@pytest.mark.slow  # measured 81-152 s (load 4-5 on the 2 cores): a 4-cell sweep, then again
def test_tiny_multirun_logs_every_cell(tmp_path, monkeypatch):
    proc = harness(tmp_path, "-m", "N=16", "repeats=2", "batch_size=16", "S=4,5", "eta=0,1", "hydra.launcher.n_jobs=2",
                   template=False)  # the harness creates the store
    df = runs(tmp_path)
    cells, sweep = df[df["tags.kind"] == "cell"], df[df["tags.kind"] == "sweep"]
    assert len(cells) == 4 and set(cells["status"]) == {"FINISHED"}  # two workers, one SQLite store, nothing lost
    assert len(sweep) == 1 and sweep["status"].item() == "FINISHED"
    assert (cells["tags.mlflow.parentRunId"] == sweep["run_id"].item()).all()  # the cells are the sweep's children
    assert sorted(zip(cells["params.S"], cells["params.eta"])) == [("4", "0"), ("4", "1"), ("5", "0"), ("5", "1")]
    assert (cells["params.S"] == cells["params.nfe"]).all() and set(cells["params.N"]) == {"16"}
    assert set(cells["params.repeats"]) == {"2"} and set(cells["params.trajectory"]) == {"uniform"}
    for m in ("fid", "kid", "prc_precision", "prc_recall", "fd_pixels"):
        for k in (0, 1):
            assert cells[f"metrics.{m}_r{k}"].notna().all()
        mean = (cells[f"metrics.{m}_r0"] + cells[f"metrics.{m}_r1"]) / 2
        assert (cells[f"metrics.{m}"] - mean).abs().max() < 1e-9  # the plain name is the mean over repeats
        assert (cells[f"metrics.{m}_ci95_low"] <= cells[f"metrics.{m}"]).all()
        assert (cells[f"metrics.{m}_ci95_high"] >= cells[f"metrics.{m}"]).all()
    assert (cells["metrics.seconds_per_image"] > 0).all() and (cells["metrics.sampling_seconds"] > 0).all()
    assert set(cells["tags.features.fid"]) == {"digits-cnn"} and set(cells["tags.features.fd_pixels"]) == {"pixels"}
    assert set(cells["tags.headline_metric"]) == {"fid"}
    assert cells["tags.checkpoint_sha256"].str.len().eq(64).all()
    assert cells["tags.mlflow.source.git.commit"].notna().all() and cells["tags.device"].eq("cpu").all()
    assert cells["tags.mlflow.note.content"].str.contains("digits").all()
    assert set(cells["tags.mlflow.runName"]) == {"S=4 eta=0 digits/sample", "S=4 eta=1 digits/sample",
                                                 "S=5 eta=0 digits/sample", "S=5 eta=1 digits/sample"}
    client = store_client(tmp_path)
    for run_id in cells["run_id"]:
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.yaml", "samples.png", "hydra"} <= names
        assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["digits-train"]
    assert {a.path for a in client.list_artifacts(sweep["run_id"].item())} >= {"sweep_summary.csv", "metric_vs_S.png"}
    assert proc.stdout.count("[done]") == 4 and "cell 4/4" in proc.stdout and "fid " in proc.stdout
    assert "INFO" not in proc.stdout + proc.stderr and "Frechet Inception Distance" not in proc.stdout + proc.stderr
    # The outcomes came back as the launcher's return values: no file carries them, and the summary has every cell.
    sweep_dir = tmp_path / "out" / "multirun"  # hydra.sweep.dir: the jobs' folders
    assert list(sweep_dir.rglob("multirun.yaml")) and not list(sweep_dir.rglob("outcome.json"))
    summary = client.download_artifacts(sweep["run_id"].item(), "sweep_summary.csv", str(tmp_path))
    table = pd.read_csv(summary)
    assert sorted(table["index"]) == [0, 1, 2, 3] and set(table["status"]) == {"FINISHED"}
    assert set(table["run_id"]) == set(cells["run_id"]) and table["headline"].str.startswith("fid ").all()
    # metric_vs_S.png draws the cells' FID against S, one line per eta, with their intervals
    png = client.download_artifacts(sweep["run_id"].item(), "metric_vs_S.png", str(tmp_path))
    assert coloured_pixels(png) > 500  # two lines of markers and error bars, not an empty frame
    figures = drawn_figures(monkeypatch)
    assert _headline_figure(store_uri(tmp_path), list(cells["run_id"])) is not None
    (ax,) = figures[0].axes
    drawn = {bars.get_label(): bars.lines[0].get_xydata() for bars in ax.containers}
    assert set(drawn) == {"ddim eta=0", "ddim eta=1"}
    for eta in ("0", "1"):
        mine = cells[cells["params.eta"] == eta].sort_values("params.S", key=lambda s: s.astype(int))
        expected = np.column_stack([mine["params.S"].astype(float), mine["metrics.fid"]])
        np.testing.assert_allclose(drawn[f"ddim eta={eta}"], expected)

    # A second run of the same sweep skips every cell.
    again = harness(tmp_path, "-m", "N=16", "repeats=2", "batch_size=16", "S=4,5", "eta=0,1", "hydra.launcher.n_jobs=1")
    assert again.stdout.count("[skip]") == 4 and len(runs(tmp_path).query("`tags.kind` == 'cell'")) == 4


CELL_IMPORTS = """
import atexit, os, runpy, sys, traceback
import harness, harness.diffusion.samplers as samplers

atexit.register(lambda: print("MODULES", *sorted(sys.modules)))
root, first, counted = os.path.dirname(harness.__file__) + os.sep, [], samplers.CountingModel.__call__


def call(self, x, t):  # stands in for the NFE counter's frame, the last harness frame before the network
    if not first:
        stack = traceback.extract_stack()[:-1]
        first.extend(f"{os.path.relpath(f.filename, root)}:{f.name}" for f in stack if f.filename.startswith(root))
        first.append("diffusion/samplers.py:__call__")
    return counted(self, x, t)


samplers.CountingModel.__call__ = call
atexit.register(lambda: print("FRAMES", *first))
sys.argv = ["harness", *sys.argv[1:]]
runpy.run_module("harness", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow  # two processes: 31-45 s on the loaded 2 cores
def test_a_cells_process_imports_neither_the_report_nor_jinja2(tmp_path):
    """One real cell (python -m harness, no -m): its process never imports the report (its tables, claims, templates),
    the sweep's modules nor jinja2, and it reaches the network in at most 10 harness frames; only a dry run imports
    the report, for its planner line. (scipy is a cell's own: mlflow imports scipy.sparse, FID scipy.linalg, the
    repeats' interval scipy.stats.)"""
    script = tmp_path / "cell.py"
    script.write_text(CELL_IMPORTS)
    proc = harness(tmp_path / "run", "N=8", "repeats=1", "batch_size=4", "S=3", "job.grid_images=8",
                   entry=(str(script),))
    assert "[done]" in proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("MODULES ")]
    modules = set(line.split()[1:])
    assert "harness.run.runner" in modules and "harness.diffusion.unet" in modules  # it did run the cell here
    assert not {m for m in modules if m.startswith("harness.report")}
    assert not {m for m in modules if m.split(".")[0] == "jinja2"}
    assert not {m for m in modules if m.startswith("harness.sweep")}  # a single run never enters the sweep
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("FRAMES ")]
    frames = line.split()[1:]
    assert frames[0] == "__main__.py:<module>" and "run/runner.py:run_cell" in frames, frames
    assert len(frames) <= 10, frames  # python -m harness to the first network call (docs/architecture.md)

    dry = harness(tmp_path / "dry", "N=8", "repeats=1", "S=3", "dry_run=true", entry=(str(script),))
    (line,) = [x for x in dry.stdout.splitlines() if x.startswith("MODULES ")]
    assert "harness.report.pilot" in line.split()


@pytest.mark.parametrize(
    "args, message",
    [
        (["S=0"], "S (the number of sampling steps"),
        (["S=1001"], "1..1000"),
        (["eta=-0.5"], "eta must be a number >= 0 or 'hat'"),
        (["eta=1.5", "S=10"], "eta=1.5 is too large"),
        (["N=1"], "N must be an integer >= 2"),
        (["threads=0"], "threads must be an integer >= 1"),
        (["repeats=0"], "repeats must be an integer >= 1"),
        (["dataset.name=a/b"], "is not a plain name"),
        (["S=10,2000"], "1..1000"),
        (["eta=0,minus"], "eta must be"),
        (["device=cpu,cuda"], "CUDA is not available"),
        (["model.checkpoint.path=/nonexistent/ckpt.pth"], "/nonexistent/ckpt.pth"),
        (["model=cifar10"], "model=cifar10 takes 3x32x32 images but dataset=digits has 1x8x8"),
        (["sampler=heun", "eta=1"], "takes no eta"),
        (["sampler=euler"], "Unknown sampler 'euler'"),
        (["sampler=dpm_solver_2", "trajectory=quad", "S=100"], "repeats some"),
        (["job=recon", "sampler=heun"], "job=recon runs only sampler=ddim"),
        (["noise=mt"], "Unknown noise scheme"),
        (["compile=fast"], "Unknown compile mode"),
        (["precision=fp8"], "Unknown precision"),
        (["dataset=gmm_gaussian64", "model=digits"], "do not go together"),
    ],
)
def test_bad_input_is_refused_before_any_work(args, message):
    """What the sweep's pre-check runs for every cell, before anything is launched."""
    from harness.run.preflight import check_environment
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError) as err:
        for cell in cells(*args):
            check_environment(cell)
    assert message in str(err.value)


@pytest.mark.parametrize("args, message", [(["S=0"], "S (the number of sampling steps"),
                                           (["-m", "eta=0,1.5", "S=10", "N=4"], "eta=1.5 is too large"),
                                           (["model.checkpoint.path=/nonexistent/ckpt.pth", "N=4"], "/nonexistent/ckpt.pth")])
def test_bad_input_on_the_command_line_is_one_clear_message(tmp_path, args, message):
    proc = harness(tmp_path, *args, check=False, template=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "images").exists()  # no heavy work happened
    assert not (tmp_path / "mlflow.db").exists()  # refused before the tracking store was touched


def test_unknown_dataset_names_the_options(tmp_path):
    proc = harness(tmp_path, "dataset=imagenet", check=False)
    assert proc.returncode != 0 and "dataset" in proc.stderr and "digits" in proc.stderr


def shard_images(root, n):
    (folder,) = (root / "out" / "images").iterdir()
    out = torch.zeros((n, 1, 8, 8), dtype=torch.uint8)
    for p in sorted(folder.glob("*.pt")):
        s = torch.load(p, weights_only=True)
        out[s["indices"]] = s["images"]
    return out


@pytest.mark.slow
def test_interrupted_cell_resumes_to_the_same_images(tmp_path):
    common = ["N=20", "repeats=2", "batch_size=8", "S=4", "eta=1", "job.grid_images=40"]
    harness(tmp_path / "a", *common)
    broken = harness(tmp_path / "b", *common, check=False, faults="batch_done:raise:batches=2")
    assert broken.returncode != 0
    assert len(list((tmp_path / "b" / "out" / "images").glob("*/*.pt"))) == 2
    resumed = harness(tmp_path / "b", *common[:2], "batch_size=16", *common[3:])  # another batch size on resume
    assert torch.equal(shard_images(tmp_path / "a", 40), shard_images(tmp_path / "b", 40))
    df = runs(tmp_path / "b")
    assert sorted(df["status"]) == ["FAILED", "FINISHED"]
    assert "fault injected" in df[df["status"] == "FAILED"]["tags.error"].item()
    assert df[df["status"] == "FINISHED"]["metrics.images_sampled"].item() == 40 - 16
    assert "[done]" in resumed.stdout

    # More repeats reuse the images that exist: only the new index range is sampled.
    harness(tmp_path / "b", *common[:1], "repeats=3", *common[2:])
    df = runs(tmp_path / "b")
    assert df[df["params.repeats"] == "3"]["metrics.images_sampled"].item() == 20
