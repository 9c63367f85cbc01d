"""The cluster path on a real Slurm: sweeps submitted to slurmctld, their runs in a PostgreSQL-backed MLflow server.

Deselected by default (marker ``cluster``); run against the local cluster of scripts/local-cluster.sh:

    scripts/local-cluster.sh up && eval "$(scripts/local-cluster.sh env)" && python -m pytest -q -m cluster -n 0

Nothing is mocked: real jobs, real signals (scancel, kill -9, SIGUSR2), the real server. Every sweep runs under a
timeout, so a sweep that hangs fails its test instead of blocking the suite. Each test has its own experiment and its
own Slurm job name (counted with sacct).
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from clitools import ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # real Slurm jobs: only with -m cluster (.ci/run brings the cluster up)

TINY = ["N=8", "repeats=1", "batch_size=8", "threads=null"]
LONG = ["N=200", "repeats=1", "S=20", "batch_size=10", "threads=null"]  # a cell that samples for a while
SWEEP_TIMEOUT = 420  # seconds: a sweep that takes longer hangs


@pytest.fixture(scope="module")
def cluster():
    """The local cluster's settings (scripts/local-cluster.sh env); a clear failure when it is not up."""
    needed = ("SLURM_CONF", "MLFLOW_TRACKING_URI", "LOCAL_CLUSTER_DIR")
    missing = [k for k in needed if not os.environ.get(k)]
    if missing:
        pytest.fail(f"the cluster tests need {', '.join(missing)}: run scripts/local-cluster.sh up, then "
                    'eval "$(scripts/local-cluster.sh env)"', pytrace=False)
    return {k: os.environ[k] for k in needed} | {"partition": os.environ.get("LOCAL_CLUSTER_PARTITION", "debug")}


class Sweep:
    """One test's sweeps: its experiment, its Slurm job name, its working directory."""

    def __init__(self, cluster, tmp_path: Path, cpus: int = 1):
        self.cluster, self.dir = cluster, tmp_path
        self.name = "t" + uuid.uuid4().hex[:8]
        self.experiment = f"cluster-{self.name}"
        self.cpus = cpus
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))

    def command(self, *overrides: str) -> list[str]:
        return [sys.executable, "-m", "harness", "-m", "hydra/launcher=slurm",
                f"hydra.launcher.partition={self.cluster['partition']}", "hydra.launcher.gpus_per_node=0",
                f"hydra.launcher.cpus_per_task={self.cpus}", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=15",
                f"hydra.launcher.name={self.name}", f"output_root={self.dir / 'out'}", "progress=false",
                f"tracking.uri={self.cluster['MLFLOW_TRACKING_URI']}", f"tracking.experiment={self.experiment}",
                *overrides]

    def env(self, **extra) -> dict:
        env = dict(os.environ, DDIM_HARNESS_CACHE=str(self.dir / "cache"), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0",
                   HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
        return env | extra

    def run(self, *overrides: str, timeout: float = SWEEP_TIMEOUT, **env) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.command(*overrides), cwd=self.dir, env=self.env(**env), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            self.cancel()
            pytest.fail(f"the sweep hung: no end after {timeout} s\n{err.stdout}\n{err.stderr}")

    def start(self, *overrides: str, **env) -> subprocess.Popen:
        return subprocess.Popen(self.command(*overrides), cwd=self.dir, env=self.env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def finish(self, proc: subprocess.Popen, timeout: float = SWEEP_TIMEOUT) -> tuple[str, str]:
        try:
            return proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            self.cancel()
            pytest.fail(f"the sweep hung: no end after {timeout} s\n{out}\n{err}")

    def cancel(self) -> None:
        subprocess.run(["scancel", f"--name={self.name}"], check=False)

    # --- Slurm's view ------------------------------------------------------------------------------------------------
    def jobs(self) -> list[tuple[str, str]]:
        """(job id, state) of every job of this test Slurm's accounting knows, array tasks one by one."""
        out = subprocess.run(["sacct", "-n", "-X", "-P", f"--name={self.name}", "-S", self.started, "-o",
                              "JobID,State"], capture_output=True, text=True, check=True).stdout
        return [tuple(line.split("|")[:2]) for line in out.splitlines() if line.strip()]

    def queue(self) -> dict[str, str]:
        """Job id -> state (PENDING, RUNNING, ...) of this test's jobs in squeue, array tasks one by one."""
        out = subprocess.run(["squeue", "-h", "-r", f"--name={self.name}", "-o", "%i|%T"], capture_output=True,
                             text=True, check=True).stdout
        return dict(line.split("|") for line in out.splitlines() if line.strip())

    def wait(self, what: str, predicate, proc: subprocess.Popen, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = predicate()
            if got:
                return got
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before {what}:\n{proc.stdout.read()}\n{proc.stderr.read()}")
            time.sleep(0.5)
        self.cancel()
        pytest.fail(f"no {what} within {timeout} s")

    # --- the store's view -------------------------------------------------------------------------------------------
    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.cluster["MLFLOW_TRACKING_URI"])

    def runs(self, kind: str = "cell") -> list:
        c = self.client()
        exp = c.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        return [r for r in c.search_runs([exp.experiment_id], max_results=1000) if r.data.tags.get("kind") == kind]

    def summary(self) -> list[dict]:
        """The newest sweep's summary table (sweep_summary.csv on its parent run)."""
        parent = max(self.runs("sweep"), key=lambda r: r.info.start_time)
        path = self.client().download_artifacts(parent.info.run_id, "sweep_summary.csv", str(self.dir))
        return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def assert_summary_matches_the_store(sweep: Sweep) -> None:
    """Cell by cell, the sweep's summary says what the store holds: the run id and its state."""
    runs = {r.info.run_id: r for r in sweep.runs()}
    for row in sweep.summary():
        if row["status"] == "SKIPPED" or not row["run_id"]:
            assert row["status"] in ("SKIPPED", "KILLED"), row  # a job that never opened a run
            continue
        assert row["run_id"] in runs, row
        assert runs[row["run_id"]].info.status == row["status"], (row, runs[row["run_id"]].info.status)


def test_a_2x2_sweep_into_the_server_then_its_rerun_submits_no_job(cluster, tmp_path):
    sweep = Sweep(cluster, tmp_path)
    first = sweep.run(*TINY, "S=3,4", "eta=0,1")
    assert first.returncode == 0, first.stdout + first.stderr
    runs = sweep.runs()
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    # each cell's line on the sweep's own console as its job ends, not only in the .submitit logs
    assert first.stdout.count("[done]") == 4, first.stdout
    for r in runs:
        assert r.info.run_id in first.stdout
    # the sweep's line says how many tasks Slurm runs at once (not the submitting host's cores)
    assert re.search(r"4 cells.*Slurm runs up to \d+ at once", first.stdout), first.stdout
    assert_summary_matches_the_store(sweep)
    print(first.stdout, first.stderr)  # what the sweep printed (pytest -rP shows it)
    submitted = len(sweep.jobs())
    assert submitted == 4

    # a run left RUNNING on another node by a Slurm job that has ended (its host's processes cannot be seen from here)
    c = sweep.client()
    orphan = c.create_run(runs[0].info.experiment_id, run_name="orphan", tags={
        "kind": "cell", "host": "another-node", "pid": "1", "slurm_job_id": sweep.jobs()[0][0]}).info.run_id
    again = sweep.run(*TINY, "S=3,4", "eta=0,1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert c.get_run(orphan).info.status == "KILLED"  # reconciled from the scheduler, whatever its host
    print(again.stdout, again.stderr)
    assert again.stdout.count("[skip]") == 4, again.stdout  # on the sweep's console, before any submission
    assert len(sweep.jobs()) == submitted  # no job for a finished cell
    assert len(sweep.runs()) == 5  # the four cells and the orphan


def test_parts_as_an_array_are_scored_once_and_bitwise_the_unsplit_cell(cluster, tmp_path):
    from test_parts import shard_images, unsplit_images

    sweep = Sweep(cluster, tmp_path)
    args = ["N=16", "repeats=1", "S=3", "batch_size=4", "threads=1"]
    proc = sweep.run(*args, "parts=2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout, proc.stderr)
    (run,) = sweep.runs()
    assert run.info.status == "FINISHED" and run.data.tags["parts_done"] == "0,1"
    assert proc.stdout.count("[done]") == 1 and proc.stdout.count("[part done]") == 1, proc.stdout  # scored once
    assert re.search(r"sweep done .*: 1 cells?, 1 finished", proc.stdout), proc.stdout  # a cell in parts counts once
    assert len(sweep.jobs()) == 2
    assert torch.equal(shard_images(tmp_path), unsplit_images(*args, f"output_root={tmp_path / 'ref'}"))


def test_every_way_a_job_dies_is_recorded_truly_and_the_rerun_resumes(cluster, tmp_path):
    """Four long cells on a 2-CPU node (two run, two wait): task 3 cancelled while pending, task 0 cancelled while it
    starts (before its run is open), task 1's Python killed with kill -9, then task 2 sent SIGUSR2 (the pre-timeout /
    preemption signal) once its run is open, and a fifth cancelled while running."""
    sweep = Sweep(cluster, tmp_path)
    proc = sweep.start(*LONG, "S=20,21,22,23,24")
    try:
        queue = sweep.wait("the array in the queue", lambda: len(sweep.queue()) == 5 and sweep.queue(), proc)
        ids = sorted(queue, key=lambda i: int(i.split("_")[1]))
        array = ids[0].split("_")[0]
        subprocess.run(["scancel", f"{array}_3"], check=True)  # pending
        sweep.wait("task 0 running", lambda: sweep.queue().get(f"{array}_0") == "RUNNING", proc)
        subprocess.run(["scancel", f"{array}_0"], check=True)  # starting: Python has not opened its run yet
        def sampling(S):  # the cell's run, once it is open and has written a shard (so that its rerun resumes)
            runs = [r for r in sweep.runs() if r.data.params.get("S") == str(S) and r.info.status == "RUNNING"]
            return [r for r in runs if any((tmp_path / r.data.tags["cell_dir"]).glob("*.pt"))]

        (victim,) = sweep.wait("task 1 sampling", lambda: sampling(21), proc)
        os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)
        (preempted,) = sweep.wait("task 2 sampling", lambda: sampling(22), proc)
        subprocess.run(["scancel", "--signal=USR2", f"{array}_2"], check=True)
        (running,) = sweep.wait("task 4 sampling", lambda: sampling(24), proc)
        subprocess.run(["scancel", f"{array}_4"], check=True)
        out, err = sweep.finish(proc)
    finally:
        sweep.cancel()
    console = out + err
    print(console)
    assert proc.returncode == 1, console
    assert not sweep.queue(), "the sweep returned while some of its tasks were still queued or running"
    assert "no outcome: the launcher failed" not in console
    runs = {r.info.run_id: r for r in sweep.runs()}
    assert runs[victim.info.run_id].info.status == "KILLED"  # its job died: its run is not left RUNNING
    assert runs[running.info.run_id].info.status == "KILLED"
    # the preempted cell went on from its shards in the same run, recorded as preempted, not FAILED "SystemExit"
    assert runs[preempted.info.run_id].info.status == "FINISHED", runs[preempted.info.run_id].data.tags
    assert runs[preempted.info.run_id].data.tags.get("preempted") == "1"
    assert "SystemExit" not in console
    assert len([r for r in runs.values() if r.data.params.get("S") == "22"]) == 1
    rows = {row["name"].split()[0]: row for row in sweep.summary()}
    assert rows["S=20"]["status"] == "KILLED" and not rows["S=20"]["run_id"]  # cancelled before its run was open
    assert rows["S=23"]["status"] == "KILLED" and not rows["S=23"]["run_id"]  # cancelled while pending
    assert rows["S=21"]["run_id"] == victim.info.run_id and rows["S=22"]["status"] == "FINISHED"
    assert_summary_matches_the_store(sweep)
    for line in ("[killed]", "[done]"):
        assert line in out, out  # the jobs' lines on the sweep's console

    rerun = sweep.run(*LONG, "S=20,21,22,23,24")
    print(rerun.stdout, rerun.stderr)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.count("[skip]") == 1  # the preempted cell, finished
    finished = [r for r in sweep.runs() if r.info.status == "FINISHED"]
    assert sorted(int(r.data.params["S"]) for r in finished) == [20, 21, 22, 23, 24]
    # the killed cells resumed from their shards: they sampled fewer images than the cell has
    resumed = [r for r in finished if r.data.params["S"] in ("21", "24")]
    assert all(r.data.metrics["images_sampled"] < 200 for r in resumed), [r.data.metrics for r in resumed]


def test_sigterm_to_the_sweep_cancels_its_pending_and_running_tasks(cluster, tmp_path):
    sweep = Sweep(cluster, tmp_path)
    proc = sweep.start(*LONG, "S=20,21", "hydra.launcher.array_parallelism=1")  # one task runs, the other waits
    try:
        run_of = lambda: [r for r in sweep.runs() if r.info.status == "RUNNING"]
        (running,) = sweep.wait("the first run open", run_of, proc)
        assert len(sweep.queue()) == 2
        os.kill(proc.pid, signal.SIGTERM)
        out, err = sweep.finish(proc, timeout=120)
    finally:
        sweep.cancel()
    print(out, err)
    assert proc.returncode == 143, out + err
    assert not sweep.queue(), "the sweep's tasks outlived it"
    assert {state.split()[0] for _, state in sweep.jobs()} == {"CANCELLED"}
    run = next(r for r in sweep.runs() if r.info.run_id == running.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["threads"] == "1"  # the allocation's CPUs (SLURM_CPUS_PER_TASK), not the host's 2 cores
    assert run.data.tags.get("slurm_job_id") in {job for job, _ in sweep.jobs()}


def test_without_accounting_a_dead_job_is_one_line_not_a_hang(cluster, tmp_path):
    """slurm.conf without accounting (as many small clusters run): sacct answers nothing. A job cancelled before it
    writes a result must still end the sweep in bounded time, and the sweep says once what is missing."""
    conf = Path(cluster["SLURM_CONF"]).read_text()
    plain = tmp_path / "slurm.conf"
    plain.write_text("\n".join(line for line in conf.splitlines()
                               if not line.startswith(("AccountingStorage", "JobAcctGather"))) + "\n")
    sweep = Sweep(cluster, tmp_path)
    proc = sweep.start(*TINY, "S=3", SLURM_CONF=str(plain))
    try:
        (task,) = sweep.wait("the task in the queue", sweep.queue, proc)
        subprocess.run(["scancel", task], check=True)
        out, err = sweep.finish(proc, timeout=180)
    finally:
        sweep.cancel()
    console = out + err
    print(console)
    assert proc.returncode == 1, console
    assert console.count("AccountingStorageType") == 1, console  # one line naming the fix ...
    assert "sacct" not in console.replace("(sacct: ", ""), console  # ... and no warning per poll
    (row,) = sweep.summary()
    assert row["status"] == "KILLED" and "ended without a result" in row["error"], row
