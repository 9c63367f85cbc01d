"""A cell split into parts (harness.run.parts): the same images and metrics as the cell unsplit, one MLflow run with the
parts recorded, a failed part resumed by its rerun, parts racing for the run and for the scoring."""

import fcntl
import os
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from clitools import ROOT, cells, harness, runs
from harness.tracking import store as tracking
from harness.run.cell import Cell, part_range
from harness.core.errors import HarnessError
from harness.run.parts import lock_path
from harness.sweep.plan import tasks_of

TINY = ["N=16", "repeats=1", "S=3", "batch_size=4", "threads=1"]
METRICS = ["fid", "kid", "prc_precision", "prc_recall", "fd_pixels"]


def cell_of(*overrides) -> Cell:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return Cell.from_config(compose(config_name="config", overrides=list(overrides)))


def shard_images(root, n=16):
    """Every image of the one images folder under ``root``, by index, from the shard files themselves."""
    (folder,) = (root / "out" / "images").iterdir()
    out = torch.zeros((n, 1, 8, 8), dtype=torch.uint8)
    seen = torch.zeros(n, dtype=torch.bool)
    for p in sorted(folder.glob("*.pt")):
        s = torch.load(p, weights_only=True)
        out[s["indices"]] = s["images"]
        seen[s["indices"]] = True
    assert seen.all(), f"images {torch.nonzero(~seen).flatten().tolist()} have no shard"
    return out


def cell_runs(root):
    return runs(root).query("`tags.kind` == 'cell'")


def test_part_blocks_split_the_indices():
    for n, k in [(16, 3), (50_000, 8), (7, 7), (10, 4)]:
        blocks = [part_range(n, k, p) for p in range(k)]
        assert [i for b in blocks for i in b] == list(range(n))  # contiguous, in order, each index once
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_parts_alone_expand_into_part_jobs():
    def jobs(arguments, parts=1, part=None):
        return [list(j.overrides) for j in tasks_of(arguments, parts, part)]

    assert jobs(["S=10", "parts=3"]) == [
        ["S=10", "parts=3", "part=0"], ["S=10", "parts=3", "part=1"], ["S=10", "parts=3", "part=2"]]
    assert jobs(["S=20", "parts=3", "part=1"]) == [["S=20", "parts=3", "part=1"]]
    assert jobs(["S=50"]) == [["S=50"]]
    assert jobs(["S=100", "+parts=2"]) == [["S=100", "+parts=2", "part=0"], ["S=100", "+parts=2", "part=1"]]
    assert jobs(["S=10,20", "parts=2"]) == [["S=10", "parts=2", "part=0"], ["S=10", "parts=2", "part=1"],
                                            ["S=20", "parts=2", "part=0"], ["S=20", "parts=2", "part=1"]]
    assert jobs(["S=10"], "2", None) == [["S=10", "part=0"], ["S=10", "part=1"]]  # parts from the config
    assert jobs(["S=10"], 2, 1) == [["S=10"]]  # a part given in the config: that part only


@pytest.mark.parametrize("overrides, message", [
    (["parts=0"], "parts must be an integer >= 1"),
    (["parts=3", "part=3"], "part=3 is not one of the parts 0..2 of parts=3: use part=0..2"),
    (["part=2"], "part=2 needs parts=<k> with k > 2"),
    (["parts=3"], "give part=<0..2> for one of them, or run -m parts=3"),
    (["parts=2", "part=0", "job=timing"], "job=timing cells are not split into parts"),
    (["parts=40", "part=0", "N=16", "repeats=1"], "parts=40 is more than the cell's 16 images"),
    (["parts=2", "part=0", "force=true"], "run the cell once unsplit with force=true"),
])
def test_bad_parts_are_refused_with_the_fix(overrides, message):
    with pytest.raises(HarnessError, match=re.escape(message)):
        cell_of(*overrides)


def test_parts_leave_both_keys_alone():
    whole, part = cell_of(*TINY), cell_of(*TINY, "parts=3", "part=2")
    assert (whole.key, whole.images_key) == (part.key, part.images_key)
    assert list(whole.indices) == list(range(16)) and list(part.indices) == list(range(10, 16))
    planned = cells(*TINY, "S=3,5", "parts=3")  # as the sweep's pre-check composes them
    assert [(c.S, c.part) for c in planned] == [(3, 0), (3, 1), (3, 2), (5, 0), (5, 1), (5, 2)]


def plan(capsys, *overrides) -> str:
    """What ``dry_run=true`` prints for these cells (in this process; the store is the working directory's)."""
    from harness.run.dryrun import print_plan

    capsys.readouterr()
    print_plan([cell_of(*TINY, *o) for o in overrides])
    return capsys.readouterr().out


@pytest.mark.slow  # about 2.5 min on one loaded CPU core: 4 harness processes
def test_three_part_processes_make_the_unsplit_cells_images_and_metrics_in_one_run(tmp_path, monkeypatch, capsys):
    from harness.run.runner import run_cell

    harness(tmp_path / "a", *TINY)  # the cell unsplit
    whole = cell_runs(tmp_path / "a").iloc[0]

    b = tmp_path / "b"
    harness(b, *TINY, "parts=3", "part=2")  # any order; each part is its own process
    harness(b, *TINY, "parts=3", "part=0")
    df = cell_runs(b)
    assert len(df) == 1 and df.iloc[0]["status"] == "RUNNING"
    assert pd.isna(df.iloc[0].get("tags.pid"))  # no one process owns it while its parts sample ...
    assert tracking.reconcile_orphans(f"sqlite:///{b / 'mlflow.db'}", "ddim-harness") == []  # ... so it is no orphan
    monkeypatch.chdir(b)  # the store of the in-process dry runs below
    shown = plan(capsys, *(["parts=3", f"part={p}"] for p in range(3)))  # the three parts: one line
    assert re.search(r"S=3 eta=0 digits/sample .*: NFE 4, on cpu, to run, GPU-hours unknown .*; 3 parts of 5-6 images, "
                     r"parts done: 0, 2 \(run \w+\)", shown), shown
    last = harness(b, *TINY, "parts=3", "part=1")
    assert "[done]" in last.stdout and "the last of 3 parts" in last.stdout

    assert torch.equal(shard_images(tmp_path / "a"), shard_images(b))  # bitwise
    df = cell_runs(b)
    assert len(df) == 1
    run = df.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.parts"] == "3" and run["tags.parts_done"] == "0,1,2"
    for m in METRICS:
        assert run[f"metrics.{m}"] == whole[f"metrics.{m}"], m  # the same images scored the same way
    for p, size in enumerate([5, 5, 6]):
        assert run[f"metrics.part_{p}_images"] == size and run[f"tags.part_{p}_state"] == "done"
        assert run[f"metrics.part_{p}_seconds"] > 0
    assert run["metrics.images_sampled"] == 16 and run["metrics.seconds_per_nfe_image"] > 0
    assert run["tags.finishing_part"] == "1" and run["tags.pid"] == run["tags.part_1_pid"]  # the owner: who scored
    assert run["tags.cell_key"] == whole["tags.cell_key"]

    # A part of a finished cell is skipped; a dry run with a measured rate gives the time of a cell and its parts.
    skipped = run_cell(cell_of(*TINY, "parts=3", "part=0", f"output_root={b / 'out'}"))
    assert skipped.status == "SKIPPED" and skipped.run_id == run["run_id"] and len(cell_runs(b)) == 1
    shown = plan(capsys, ["parts=3", "part=0"], ["parts=3", "part=0", "S=5"])
    assert f"S=3 eta=0 digits/sample [uniform, 1 x 16 images]: NFE 4, on cpu, done (run {run['run_id']})" in shown
    assert re.search(r"S=5 eta=0 digits/sample .*: NFE 5, on cpu, to run, ~\d+ s of CPU time; 3 parts of 5-6 images "
                     r"\(~\d+ s each\), parts 0 here", shown), shown
    rate = f"{run['metrics.seconds_per_nfe_image']:.3g} s per image and NFE, from run {run['run_id']}"
    assert f"throughput of model digits: {rate}" in shown


def unsplit_images(*overrides) -> torch.Tensor:
    """The cell's images sampled in this process, unsplit, through the library (the reference for the CLI's)."""
    from harness.run.generate import generate
    from harness.models.loading import load_checkpoint
    from harness.run.shards import ShardStore

    torch.set_num_threads(1)  # as the CLI's threads=1
    cell = cell_of(*overrides)
    model, _ = load_checkpoint(cell.model)
    store = ShardStore(cell.output_root, cell.image_shape)
    generate(model.eval(), store, sampler=cell.sampler_info, indices=range(cell.n_images), seed=cell.seed,
             tau=cell.tau, schedule=cell.schedule, eta=cell.eta, batch_size=cell.batch_size,
             device=torch.device("cpu"), noise_scheme=cell.noise)
    return torch.stack([store.images(cell.n_images)[i] for i in range(cell.n_images)])


@pytest.mark.slow  # three CLI runs
def test_a_part_that_finds_every_image_waits_for_the_other_parts_count(tmp_path):
    """A part writes its last shard before it records its count, so a part that sees every image while another part
    has not recorded its block must not finish the cell (it would log the images sampled without the other's)."""
    import shutil

    harness(tmp_path / "a", *TINY)  # every image of the cell, written unsplit
    b = tmp_path / "b"
    shutil.copytree(tmp_path / "a" / "out", b / "out")  # b's store has no run; its images folder is complete
    first = harness(b, *TINY, "parts=2", "part=0")
    assert "every image is there; the last part to record its block scores the cell (parts done: 0 of 2)" in first.stdout
    assert cell_runs(b).iloc[0]["status"] == "RUNNING"
    last = harness(b, *TINY, "parts=2", "part=1")
    run = cell_runs(b).iloc[0]
    assert "[done]" in last.stdout and run["status"] == "FINISHED" and run["tags.parts_done"] == "0,1"
    assert run["tags.finishing_part"] == "1" and run["metrics.images_sampled"] == 0  # all from shards


@pytest.mark.slow  # about 1.5 min: two sweeps of 2 parts through submitit (the SLURM code path)
def test_failed_parts_resume_on_rerun_through_submitit(tmp_path):
    sweep = ["-m", "hydra/launcher=local", *TINY, "parts=2"]
    broken = harness(tmp_path, *sweep, check=False, faults="batch_done:raise:batches=1")
    assert broken.returncode != 0
    run = cell_runs(tmp_path).iloc[0]
    assert len(cell_runs(tmp_path)) == 1 and run["status"] == "FAILED"
    for p in (0, 1):
        assert run[f"tags.part_{p}_state"] == "failed" and "fault injected" in run[f"tags.part_{p}_error"]
    assert len(list((tmp_path / "out" / "images").glob("*/*.pt"))) == 2  # one batch of each part

    harness(tmp_path, *sweep)  # the same sweep again: each part resumes its block
    df = cell_runs(tmp_path)
    assert len(df) == 1
    run = df.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.parts_done"] == "0,1" and "tags.error" not in run.dropna()
    # each part sampled only the 4 images its failed attempt had not written (a failed attempt records no count)
    assert run["metrics.part_0_images"] == 4 and run["metrics.part_1_images"] == 4
    assert run["metrics.images_sampled"] == 8
    assert torch.equal(shard_images(tmp_path), unsplit_images(*TINY, f"output_root={tmp_path / 'ref'}"))


def blocked_on(path, count, proc, timeout=300.0) -> None:
    """Wait until ``count`` processes wait for the flock on ``path`` (Linux /proc/locks: blocked entries have "->")
    while ``proc`` runs."""
    inode = f":{os.stat(path).st_ino} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open("/proc/locks") as f:
            waiting = [line for line in f if "->" in line and inode in line]
        if len(waiting) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} processes never waited for the cell lock {path}")


@pytest.mark.slow  # about 1 min: two parts in parallel workers
def test_parallel_parts_race_for_one_run_and_one_scoring(tmp_path):
    args = [*TINY, "parts=2"]
    lock = lock_path(cell_of(*args, "part=0", f"output_root={tmp_path / 'out'}"))
    lock.parent.mkdir(parents=True)
    env = dict(os.environ, DDIM_HARNESS_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "harness", "-m", f"output_root={tmp_path / 'out'}", "progress=false", *args,
           "hydra.launcher.n_jobs=2"]
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # both workers reach the cell's run together, then race for it
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            blocked_on(lock, 2, proc)
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    df = cell_runs(tmp_path)
    assert len(df) == 1  # one run for the cell, created by one part, joined by the other
    run = df.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.parts_done"] == "0,1"
    assert out.count("[done]") == 1 and out.count("[part done]") == 1  # scored once
    assert run["tags.pid"] == run[f"tags.part_{run['tags.finishing_part']}_pid"]
    assert shard_images(tmp_path).shape[0] == 16
