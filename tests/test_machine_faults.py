"""Issue 28: when the machine misbehaves (a full disk, a deleted experiment, an absurd N, a symbolic link loop, an
override Hydra cannot read, a report stopped mid-write, no GPU for a paper preset), one line naming the fix.

The command-line cases run the real ``python -m harness`` (and ``python -m harness.report``) in a temporary folder
with a private store and caches (tests/clitools.py); the full disks are real tmpfs mounts where the machine allows
them (root), filled with real files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest

from clitools import TINY, finish, harness, new_store, process_state, start_harness, wait_until
from harness.core.overrides import unreadable_override
from harness.core.files import atomic_path
from harness.run.shards import Missing, ShardStore

PAPER_TINY = ["N=20", *TINY[1:]]  # the paper's datasets score in 10 blocks (metrics.blocks): N a multiple of 20


def lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def one_line(proc) -> str:
    """The one line a refused command prints (stderr), with no traceback."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Exception" not in proc.stderr, out[-3000:]
    found = lines(proc)
    assert len(found) == 1, out[-3000:]
    return found[0]


def report_cli(cwd: Path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "harness.report", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def tmpfs(folder: Path, size: str):
    """A real tmpfs of ``size`` at ``folder`` (root only), unmounted afterwards whatever happens."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Fill the disk of ``folder`` to its last byte with one real file (unbuffered writes, the last ones 1 byte)."""
    fd = os.open(folder / f"filler-{uuid.uuid4().hex}", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free == 0


# --- a deleted experiment -------------------------------------------------------------------------------------------


def test_a_deleted_experiment_is_one_line_naming_restore(tmp_path):
    """``mlflow.delete_experiment`` then the same command: the runner and the report each say to restore it (the
    command and the API call, with its id) or to name another, instead of blaming the database."""
    uri = f"sqlite:///{new_store(tmp_path / 'mlflow.db')}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("ddim-harness")
    client.delete_experiment(exp)
    line = one_line(harness(tmp_path, *TINY, check=False))
    assert f"mlflow experiments restore --experiment-id {exp}" in line and f"restore_experiment('{exp}')" in line
    assert "tracking.experiment=" in line and "Move it aside" not in line
    report = report_cli(tmp_path, "--out", "r")
    assert report.returncode == 2
    line = one_line(report)
    assert f"mlflow experiments restore --experiment-id {exp}" in line and "--experiment NAME" in line
    assert not (tmp_path / "out" / "images").exists()  # refused before any sampling


# --- an absurd N ----------------------------------------------------------------------------------------------------


def test_missing_images_are_held_as_gaps_not_listed():
    """What a cell has still to sample at N=1e9 takes the memory of the stored shards, not of N."""
    have = {5: "a", 6: "a", 10: "b"}
    missing = Missing(range(3, 10**9), have)
    assert len(missing) == 10**9 - 3 - 3 and missing.runs == [range(3, 5), range(7, 10), range(11, 10**9)]
    assert missing[:6] == [3, 4, 7, 8, 9, 11] and missing[-1] == 10**9 - 1 and missing[2] == 7
    assert list(Missing(range(0, 12), have)) == [0, 1, 2, 3, 4, 7, 8, 9, 11]
    assert not Missing(range(5, 7), have) and sys.getsizeof(missing.runs) < 200


def test_a_dry_run_at_a_billion_images_counts_stored_shards_without_listing_n(tmp_path):
    """dry_run=true at N=1e9 with shards on disk: their images are counted (the range is never listed)."""
    from clitools import cells

    cell = cells("N=1000000000", "repeats=1", f"output_root={tmp_path / 'out'}")[0]
    import torch

    ShardStore(cell.images_dir, cell.image_shape).write([0, 1, 2], torch.zeros((3, *cell.image_shape), dtype=torch.uint8))
    proc = harness(tmp_path, "N=1000000000", "repeats=1", "dry_run=true")
    assert "1 x 1000000000 images" in proc.stdout and "(3 of its images already sampled)" in proc.stdout


# --- a symbolic link loop, an override Hydra cannot read --------------------------------------------------------------


def test_a_dataset_root_in_a_symlink_loop_is_one_line_before_any_download(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    proc = harness(tmp_path, "dataset=cifar10", "device=cpu", f"dataset.root={loop}", *PAPER_TINY, check=False)
    line = one_line(proc)
    assert proc.returncode == 2 and "symbolic link loop" in line and "dataset.root" in line
    assert "download" not in proc.stdout + proc.stderr


def test_an_override_hydra_cannot_read_says_to_quote_it(tmp_path):
    odd = tmp_path / "my runs" / "éxp"
    proc = harness(tmp_path, f"output_root={odd}", "dry_run=true", check=False)
    line = one_line(proc)
    assert proc.returncode == 2 and "quote the value" in line and f"'output_root=\"{odd}\"'" in line
    assert "LexerNoViableAltException" not in proc.stdout + proc.stderr
    quoted = harness(tmp_path, f'output_root="{odd}"', "dry_run=true")  # the fix it names works
    assert "1 cells" in quoted.stdout and odd.is_dir()
    assert unreadable_override(["-m", "S=10,20", "eta=0", "--config-name", "config"]) is None


# --- the report's files -----------------------------------------------------------------------------------------------


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stopped mid-write")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with atomic_path(path) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]


@pytest.mark.slow
def test_a_report_killed_mid_write_leaves_every_file_whole(tmp_path):
    """A report killed (-9) after writing claims.csv under its temporary name: claims.csv is still the previous
    report's, whole; the files written before it are the new ones; the manifest (written last) the previous one."""
    from report_store import Store, sample_metrics

    store = Store(tmp_path / "mlflow.db")
    store.add("sample", "digits", 10, "0", sample_metrics(1.0, 10))
    assert report_cli(tmp_path, "--out", "r").returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    store.add("sample", "digits", 20, "0", sample_metrics(2.0, 10))
    env = dict(os.environ, OMP_NUM_THREADS="1", DDIM_HARNESS_FAULTS="report_file:kill:file=claims.csv")
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "harness.report", "--out", "r"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    out = tmp_path / "r"
    assert (out / "claims.csv").read_bytes() == before["claims.csv"]
    assert (out / ".report-files.json").read_bytes() == before[".report-files.json"]
    assert (out / "metrics_long.csv").read_bytes() != before["metrics_long.csv"]  # written before it: the new one
    (tmp,) = out.glob(".claims.csv.*.tmp.csv")  # the new claims.csv, whole, never renamed
    assert tmp.read_text().startswith(before["claims.csv"].decode().splitlines()[0])


# --- no GPU for a paper preset --------------------------------------------------------------------------------------


@pytest.mark.slow  # measured 24 and 62 s (load 3-4 on the 2 cores): three processes
def test_a_paper_preset_without_a_gpu_is_one_line_before_sampling(tmp_path):
    """dataset=cifar10 (expects_gpu) with device=auto where torch sees no GPU (hidden here even on a GPU machine):
    one line with torch's version, its CUDA build, why, and the fixes; the dry run names the device."""
    import torch

    hidden = {"CUDA_VISIBLE_DEVICES": ""}  # the subprocesses' only: this process's environment is left as it was
    proc = harness(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'data'}", *PAPER_TINY, check=False, env=hidden)
    plan = harness(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "S=10", "dry_run=true", env=hidden)
    asked = harness(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "S=10", "device=cpu",
                    "dry_run=true", env=hidden)
    line = one_line(proc)
    assert proc.returncode == 2 and "dataset=cifar10 expects a GPU" in line and f"torch {torch.__version__}" in line
    assert ("CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}") in line
    assert "device=cpu" in line and "hides every GPU" in line or "CPU-only" in line
    assert not (tmp_path / "data").exists()  # refused before the data is downloaded
    assert "on cpu (NO GPU here: the run stops unless device=cpu)" in plan.stdout
    assert "on cpu, " in asked.stdout and "NO GPU" not in asked.stdout


# --- full disks, and a single run's own orphans ------------------------------------------------------------------------


def start(folder: Path, *args, faults: str | None = None) -> subprocess.Popen:
    """clitools.start_harness with ``args`` naming their own output_root and store."""
    return start_harness(folder, *args, template=False, faults=faults)


def wait_stopped(proc: subprocess.Popen) -> None:
    """Until the process has stopped itself (a ``stop`` rule of the fault seam)."""
    wait_until(lambda: process_state(proc.pid) == "T", "the run's stop point", [proc], every=0.2)


def fid(proc) -> str:
    return proc.stdout.split("fid ", 1)[1].split()[0]


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="a real full disk needs a tmpfs mount (root)")
def test_a_full_disk_is_one_line_before_and_while_a_cell_runs_and_the_rerun_resumes(tmp_path):
    """On a real 3 MB tmpfs holding output_root and the store: a cell that cannot fit is refused before sampling,
    naming the folder, the bytes needed and free; a disk filled while it samples, then while it scores, ends it with
    ``no space left on <folder>`` (its shards kept); a rerun while still full is one line before Hydra writes; freed,
    the rerun resumes from the shards to the FID of a clean run."""
    clean = harness(tmp_path / "clean", *TINY)
    with tmpfs(tmp_path / "disk", "3m") as disk:
        shutil.copyfile(os.environ["HARNESS_TEST_STORE_TEMPLATE"], disk / "mlflow.db")
        args = [*TINY, f"output_root={disk / 'out'}", f"tracking.uri=sqlite:///{disk / 'mlflow.db'}"]

        big = finish(start(tmp_path, *args, "N=1000000"))
        line = one_line(big)
        assert big.returncode == 2 and f"not enough space on {disk}" in line and "bytes" in line and "free" in line
        assert not list((disk / "out").glob("images/*/*.pt"))

        proc = start(tmp_path, *args, faults="batch_done:stop:batches=1")
        wait_stopped(proc)
        fill(disk)
        proc.send_signal(signal.SIGCONT)
        full = finish(proc)
        (images,) = (disk / "out" / "images").iterdir()
        line = one_line(full)
        assert full.returncode == 1 and f"no space left on {images}: " in line and "resumes" in line, line
        assert [p.name for p in images.glob("*.pt")] == ["0000000-0000003.pt"]

        still = finish(start(tmp_path, *args))
        assert still.returncode == 2 and f"no space left on {disk / 'out'}" in one_line(still)

        for filler in disk.glob("filler-*"):
            filler.unlink()
        proc = start(tmp_path, *args, faults="scoring:stop")
        wait_stopped(proc)
        fill(disk)
        proc.send_signal(signal.SIGCONT)
        scoring = finish(proc)
        assert scoring.returncode == 1 and "no space left on " in one_line(scoring), scoring.stderr
        assert len(list(images.glob("*.pt"))) == 2

        for filler in disk.glob("filler-*"):
            filler.unlink()
        resumed = finish(start(tmp_path, *args))
        assert resumed.returncode == 0, resumed.stderr
        assert "(all from shards)" in resumed.stdout and fid(resumed) == fid(clean)


@pytest.mark.slow
def test_a_single_run_reconciles_its_own_cells_orphans(tmp_path):
    """A single run killed (-9) mid-cell leaves its run RUNNING; the same command again marks it KILLED before it
    starts (a sweep does this for the whole experiment), and leaves other cells' runs alone."""
    killed = harness(tmp_path, *TINY, faults="batch_done:kill:batches=1", check=False)
    assert killed.returncode == -signal.SIGKILL
    other = harness(tmp_path, *TINY[:-1], "S=4", faults="batch_done:kill:batches=1", check=False)
    assert other.returncode == -signal.SIGKILL
    rerun = harness(tmp_path, *TINY)
    from clitools import runs

    table = runs(tmp_path).set_index("tags.mlflow.runName")
    statuses = sorted(zip(table.index, table["status"]))
    assert statuses == [("S=3 eta=0 digits/sample", "FINISHED"), ("S=3 eta=0 digits/sample", "KILLED"),
                        ("S=4 eta=0 digits/sample", "RUNNING")], statuses
    assert "[reconciled] S=3 eta=0 digits/sample: run " in rerun.stdout


# --- dependency ranges and the constraints CI installs -----------------------------------------------------------------


def test_dependencies_are_ranges_and_constraints_pin_versions_inside_them():
    """pyproject.toml gives each dependency a range (so a user's torch is kept when it fits); constraints.txt (what
    .ci/run installs with -c) pins every one of them to a version inside its range."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = Path(__file__).resolve().parent.parent
    deps = [Requirement(d) for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for dep in deps:
        assert any(s.operator == ">=" for s in dep.specifier) and not any(s.operator == "==" for s in dep.specifier), dep
        assert dep.specifier.contains(pins[canonicalize_name(dep.name)]), (dep, pins[canonicalize_name(dep.name)])
    assert "-c constraints.txt" in (root / ".ci" / "run").read_text()


@pytest.mark.skipif(not can_mount(), reason="a real full disk needs a tmpfs mount (root)")
def test_the_stores_full_disk_is_one_line_naming_it(tmp_path):
    """A store on a full disk: the runner's check before sampling names the store's folder, the bytes needed and
    free; a write the store refuses (SQLite's "database or disk is full") says no space left on its folder, not
    "is it an MLflow SQLite database? Move it aside"."""
    from clitools import cells
    from harness.core.errors import HarnessError
    from harness.run.disk import check_space
    from harness.tracking.store import prepare_store

    with tmpfs(tmp_path / "disk", "2m") as disk:
        shutil.copyfile(os.environ["HARNESS_TEST_STORE_TEMPLATE"], disk / "mlflow.db")
        fill(disk)
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        cell = cells(*TINY, f"output_root={tmp_path / 'out'}", f"tracking.uri={uri}")[0]
        with pytest.raises(HarnessError) as err:
            check_space(cell, uri)
        assert str(err.value).startswith(f"not enough space on {disk}: the cell writes about ") and \
            "the tracking store's rows and artifacts" in str(err.value) and "(0 bytes) are free" in str(err.value)
        with pytest.raises(HarnessError) as err:
            for i in range(200):  # until SQLite needs a page the disk no longer has
                prepare_store(uri, f"experiment-{i}")
        assert str(err.value).startswith(f"no space left on {disk} (the tracking store ") and \
            "database or disk is full" in str(err.value) and "Move it aside" not in str(err.value)
