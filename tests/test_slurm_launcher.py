"""The Slurm launcher's pieces that need no cluster (the cluster itself: tests/test_cluster.py, marker ``cluster``):
a cell in parts is one cell of the summary, the task's Slurm job id and CPUs are read from Slurm's variables, and the
sweep's line says what Slurm runs at once."""

from omegaconf import OmegaConf

from clitools import cells
from harness.core.runtime import configure_threads
from harness.sweep.plan import PlannedTask
from harness.sweep.slurm import SlurmLauncher
from harness.sweep.sweeper import cell_outcomes
from harness.tracking.store import slurm_job_id


def planned(*overrides):
    return [PlannedTask(i, (), {}, cell, "S=3 eta=0 digits/sample") for i, cell in enumerate(cells(*overrides))]


def test_a_cell_in_parts_is_one_cell_of_the_summary():
    jobs = planned("N=16", "repeats=1", "S=3", "parts=2")
    done = [{"index": 0, "name": "p0", "status": "FINISHED", "run_id": "r", "headline": None, "error": ""},
            {"index": 1, "name": "p1", "status": "FINISHED", "run_id": "r", "headline": "fid 1.0", "summary": "s"}]
    (cell,) = cell_outcomes(jobs, done)
    assert (cell["status"], cell["run_id"], cell["headline"], cell["name"]) == ("FINISHED", "r", "fid 1.0", jobs[0].name)
    killed = [done[0], {"index": 1, "name": "p1", "status": "KILLED", "run_id": None, "error": "its Slurm job 7_1 ..."}]
    (cell,) = cell_outcomes(jobs, killed)
    assert cell["status"] == "KILLED" and cell["run_id"] == "r" and "images 8..15): its Slurm job 7_1" in cell["error"]


def test_unsplit_cells_keep_their_outcomes():
    jobs = planned("N=16", "repeats=1", "S=3,4")
    outcomes = [{"index": i, "name": str(i), "status": s, "run_id": None} for i, s in enumerate(["FINISHED", "KILLED"])]
    assert cell_outcomes(jobs, outcomes) == outcomes


def test_the_task_reads_its_job_id_and_cpus_from_slurm(monkeypatch):
    for key in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(key, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert slurm_job_id() == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "40_3"  # as squeue and sacct name an array task
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
        assert configure_threads(None, workers=8) == 3  # the allocation's CPUs, not the node's cores / workers
        assert configure_threads(2, workers=1) == 2  # threads= still decides
    finally:
        torch.set_num_threads(before)


def test_the_sweep_line_says_what_slurm_runs_at_once():
    config = OmegaConf.create({"hydra": {"launcher": {"array_parallelism": 64, "partition": "gpu", "cpus_per_task": 8,
                                                      "gpus_per_node": 1}}})
    assert SlurmLauncher.describe(config, 4) == ("Slurm runs up to 4 at once (partition gpu, 8 CPU(s) and 1 GPU(s) "
                                                 "per task)")
    config.hydra.launcher.array_parallelism = 2
    assert SlurmLauncher.describe(config, 4).startswith("Slurm runs up to 2 at once")
