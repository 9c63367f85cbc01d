"""Issue 13, case by case: payload files never execute, cells fail alone (a bad cell, a killed worker), SIGTERM marks
KILLED, orphaned runs are reconciled, damaged shards are resampled, NaN outputs fail the cell, unusable stores are one
message, failed atomic writes leave nothing, and two etas are one cell only when equal.

The command-line cases run the real ``python -m harness`` on tiny cells (N=8, S=3) into a temporary SQLite store."""

from __future__ import annotations

import os
import pickle
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from clitools import ROOT, harness, runs
from harness.core import files
from harness.tracking import store as tracking
from harness.core.errors import HarnessError
from harness.run.shards import ShardStore

DIGITS_UNET = ROOT / "harness" / "assets" / "digits_unet.pt"
TINY = ["N=8", "repeats=1", "batch_size=4", "S=3", "job.grid_images=8"]


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DDIM_HARNESS_CACHE", str(tmp_path / "cache"))


class Payload:
    """A pickle that runs a command when unpickled: it must never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def plant_orphan(uri: str, pid: int, host: str | None = None, name: str = "orphan") -> str:
    """A RUNNING run as a process that was killed leaves it: host and pid tags, never ended."""
    exp = tracking.prepare_store(uri, "ddim-harness")
    run = mlflow.MlflowClient(uri).create_run(exp, run_name=name, tags={"kind": "planted", "host": host or socket.gethostname(),
                                                                          "pid": str(pid)})
    return run.info.run_id


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]


# --- 1. no pickle from outside the package is ever unpickled ------------------------------------------------------


def test_payload_files_never_execute(tmp_path):
    """A planted pickle payload in every file the harness reads from outside the package: a sample shard, a model
    checkpoint, digits classifier weights, a CIFAR-10 batch. (The reference-features cache and torch-fidelity's
    extractor weights: tests/test_metrics.py.) Each is refused or resampled; the payload never runs."""
    from harness.data import cifar10
    from harness.models.digits_classifier import load_classifier
    from harness.models.loading import read_state_dict

    marker = tmp_path / "pwned"
    store = ShardStore(tmp_path / "shards", (1, 8, 8))
    store.write([0, 1], torch.zeros((2, 1, 8, 8), dtype=torch.uint8))
    planted = tmp_path / "shards" / "0000000-0000001.pt"
    torch.save({"indices": torch.tensor([0, 1]), "images": torch.zeros((2, 1, 8, 8), dtype=torch.uint8),
                "sha256": "x", "evil": Payload(marker)}, planted)
    assert list(ShardStore(tmp_path / "shards", (1, 8, 8)).missing(range(2))) == [0, 1] and not planted.exists()

    ckpt = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "evil": Payload(marker)}, ckpt)
    with pytest.raises(HarnessError, match="cannot read checkpoint"):
        read_state_dict(ckpt)
    with pytest.raises(HarnessError, match="cannot load digits classifier weights"):
        load_classifier(ckpt)

    batches = tmp_path / "data" / cifar10.BASE_FOLDER
    batches.mkdir(parents=True)
    good = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 1], "batch_label": "b", "filenames": [b"a", b"b"]}
    for name in cifar10.FILES["train"]:
        (batches / name).write_bytes(pickle.dumps(good, protocol=2))
    # The official files were pickled by numpy 1 (numpy.core.multiarray): that name is allowed too.
    old = pickle.dumps(good, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (batches / "data_batch_2").write_bytes(old)
    cfg = {"name": "cifar10", "root": str(tmp_path / "data")}
    assert cifar10.read_uint8(cfg, "train").shape == (10, 3, 32, 32)
    (batches / "data_batch_3").write_bytes(pickle.dumps({"data": Payload(marker)}, protocol=2))
    with pytest.raises(HarnessError, match=r"data_batch_3 is not a CIFAR-10 python batch .*os.*system"):
        cifar10.read_uint8(cfg, "train")
    assert not marker.exists()


def test_no_unsafe_load_in_the_package():
    """Every load in the package is a safe one: torch.load with weights_only=True, np.load without pickles, no
    pickle.load(s), pandas.read_pickle or joblib.load; a pickle.Unpickler only with a find_class that refuses
    globals (the CIFAR-10 batches); cloudpickle only for the launcher's own pipe to its workers."""
    import ast

    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "pickle.Unpickler" for b in node.bases):
                if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                    found.append(f"{path.name}:{node.lineno}: Unpickler without find_class")
            if not isinstance(node, ast.Call):
                continue
            name, kw = ast.unparse(node.func), {k.arg: ast.unparse(k.value) for k in node.keywords}
            bad = (name == "torch.load" and kw.get("weights_only") != "True"
                   or name in ("np.load", "numpy.load") and kw.get("allow_pickle", "False") != "False"
                   or name in ("pickle.load", "pickle.loads", "pd.read_pickle", "pandas.read_pickle", "joblib.load")
                   or name.startswith("cloudpickle.load") and path.name != "launcher.py")
            if bad:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "unsafe loads:\n" + "\n".join(found)


# --- 4. integrity ---------------------------------------------------------------------------------------------------


def test_tampered_and_truncated_shards_are_resampled(tmp_path, capsys):
    from harness.core import config
    from harness.run.generate import generate
    from harness.models.loading import load_checkpoint
    from harness.diffusion.samplers import get_sampler
    from harness.diffusion.schedule import NoiseSchedule
    from harness.diffusion.trajectory import timesteps

    torch.set_num_threads(1)
    model, _ = load_checkpoint(config.load("model", "digits"))
    kw = dict(sampler=get_sampler("ddim"), indices=range(12), seed=0, tau=timesteps("uniform", 3),
              schedule=NoiseSchedule.linear(), eta=1.0, batch_size=4, device=torch.device("cpu"))
    folder = tmp_path / "images"
    assert generate(model, ShardStore(folder, (1, 8, 8)), **kw).sampled == 12
    original = ShardStore(folder, (1, 8, 8)).images(12).all()

    first, second, third = sorted(folder.glob("*.pt"))
    shard = torch.load(first, weights_only=True)
    shard["images"][0, 0, 0, 0] ^= 1  # one bit of one pixel: the stored checksum no longer matches
    torch.save(shard, first)
    second.write_bytes(second.read_bytes()[:300])  # truncated
    capsys.readouterr()
    store = ShardStore(folder, (1, 8, 8))
    assert list(store.missing(range(12))) == [0, 1, 2, 3, 4, 5, 6, 7]
    out = capsys.readouterr().out
    assert f"sample shard {first.name} is damaged (its checksum does not match its contents)" in out
    assert f"sample shard {second.name} is damaged (unreadable" in out
    assert not first.exists() and not second.exists() and third.exists()
    assert generate(model, store, **kw).sampled == 8  # only the damaged shards' images are sampled again
    assert torch.equal(ShardStore(folder, (1, 8, 8)).images(12).all(), original)


def test_failed_atomic_writes_leave_no_temp_files(tmp_path, monkeypatch):
    from harness.metrics import suite as metrics
    from harness.metrics.suite import Scoring, reference_features

    target = tmp_path / "x.pt"
    files.save_atomic({"a": torch.ones(2)}, target)

    def full_disk(obj, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk)
        with pytest.raises(OSError, match="No space left"):
            files.save_atomic({"a": torch.zeros(2)}, target)
        with pytest.raises(OSError):
            ShardStore(tmp_path / "shards", (1, 8, 8)).write([0], torch.zeros((1, 1, 8, 8), dtype=torch.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards", "x.pt"]  # no temporary file beside them
    assert list((tmp_path / "shards").iterdir()) == []
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))  # the old file is intact

    def full_disk_npz(path, **arrays):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics.np, "savez", full_disk_npz)
    with pytest.raises(OSError):
        reference_features(Scoring("digits-train", "digits-cnn", 8), torch.device("cpu"))
    assert [p.name for p in (tmp_path / "cache" / "references").iterdir()] == [".lock"]


def compose_cell(*overrides):
    from hydra import compose, initialize_config_module

    from harness.run.cell import Cell

    with initialize_config_module("harness.conf", version_base="1.3"):
        return Cell.from_config(compose("config", overrides=list(overrides)))


def test_cell_key_uses_eta_exactly():
    a, b = compose_cell("eta=0.1"), compose_cell("eta=0.1000001")  # differ in the 7th significant digit
    assert a.key != b.key and a.images_key != b.images_key
    assert (a.eta_label, b.eta_label) == ("0.1", "0.1000001")  # f"{eta:g}" would print both as 0.1
    assert b.params()["eta"] == "0.1000001" and b.run_name.startswith("S=50 eta=0.1000001 ")
    assert compose_cell("eta=0.10").key == a.key == compose_cell("eta='0.1'").key  # equal etas: one cell


def test_nonfinite_metrics_are_flagged_on_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.Run.start(uri, "ddim-harness", "S=3 eta=0 digits/sample", {"S": 3}, {"kind": "cell"})
    run.log_metrics({"fid": float("nan"), "kid": 0.5})
    run.log_metrics({"fd_pixels": float("inf"), "prc_recall": 1.0})
    data = mlflow.MlflowClient(uri).get_run(run.run_id).data
    assert data.tags["nonfinite_metrics"] == "fd_pixels,fid"
    assert np.isnan(data.metrics["fid"]) and data.metrics["kid"] == 0.5  # logged as they are, not dropped


def test_experiment_tags_for_the_mlflow_ui(tmp_path):
    """Set on an experiment made before them, never changed once there (a user may pick another primary metric)."""
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = mlflow.MlflowClient(uri)
    exp = c.create_experiment("ddim-harness")
    c.set_experiment_tag(exp, "mlflow.experiment.primaryMetric.name", "kid")
    assert tracking.prepare_store(uri, "ddim-harness") == exp
    tags = c.get_experiment(exp).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.experiment.primaryMetric.name"] == "kid" and tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "False"
    view = json.loads(tags["mlflow.sharedViewState.ddim-cells"])  # the envelope MLflow's UI parses
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int) and isinstance(view["state"], str)
    assert "metrics.`fid`" in json.loads(view["state"])["selectedColumns"]
    fresh = tracking.prepare_store(uri, "other")
    assert c.get_experiment(fresh).tags["mlflow.experiment.primaryMetric.name"] == "fid"


def test_store_uris_are_shown_without_secrets_or_machine_paths(tmp_path, monkeypatch):
    """Reports and messages show a store relative to the working directory, else by file name, and a server without
    its user and password; the MLflow UI command printed after a sweep names a store outside it in full."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    outside = tmp_path.parent / "elsewhere" / "mlflow.db"
    assert tracking.shown_uri(f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}") == "sqlite:///sub/mlflow.db"
    assert tracking.shown_uri(f"sqlite:///{outside}") == "sqlite:///.../mlflow.db"
    assert tracking.shown_uri("http://alice:s3cret@tracking.example:5000/") == "http://tracking.example:5000/"
    assert tracking.view_link(f"sqlite:///{outside}", "7").startswith(f"mlflow ui --backend-store-uri sqlite:///{outside}, ")
    assert tracking.view_link("https://alice:s3cret@tracking.example", "7").startswith("https://tracking.example/#/experiments/7/")


# --- 3. orphans: the report side -------------------------------------------------------------------------------------


def test_report_marks_orphans_and_says_how_many(tmp_path):
    from harness.report.documents import provenance_section
    from harness.report.runs import load_runs
    from test_report import Store

    store = Store(tmp_path / "mlflow.db")
    store.add("sample", "digits", 10, "0", {"fid": 1.0})
    orphan = plant_orphan(store.uri, dead_pid())
    alive = plant_orphan(store.uri, os.getpid(), name="alive")  # this process: still running
    elsewhere = plant_orphan(store.uri, dead_pid(), host="another-host", name="elsewhere")  # cannot be seen from here
    runset = load_runs(store.uri, "ddim-harness")
    assert runset.orphans == [orphan]
    c = mlflow.MlflowClient(store.uri)
    assert c.get_run(orphan).info.status == "KILLED" and "ended without closing the run" in c.get_run(orphan).data.tags["error"]
    assert c.get_run(alive).info.status == "RUNNING" and c.get_run(elsewhere).info.status == "RUNNING"
    assert dict(zip(runset.ignored["run_id"], runset.ignored["status"]))[orphan] == "KILLED"
    section, _ = provenance_section([], [], runset, None)
    text = repr(section)
    assert f"1 run(s) left RUNNING by processes that no longer exist" in text and orphan in text
    assert load_runs(store.uri, "ddim-harness").orphans == []  # once


# --- 5. stores ------------------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unusable_store_is_one_message_in_process(tmp_path, monkeypatch):
    """The store's failure itself (imports paid): a dead server and a corrupt database each answer in seconds."""
    for key in tracking._HTTP_LIMITS:
        monkeypatch.delenv(key, raising=False)
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(np.random.default_rng(0).bytes(20000))
    for uri, expected in ((f"http://127.0.0.1:{closed_port()}", "is the server running and reachable?"),
                          (f"sqlite:///{bad}", "is not an SQLite database")):
        start = time.perf_counter()
        with pytest.raises(HarnessError, match=re.escape(expected)):
            tracking.prepare_store(uri, "ddim-harness")
        assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_unusable_store_is_one_message_on_the_command_line(tmp_path):
    """A corrupt mlflow.db and a dead server: the runner (single run and sweep) and the report each exit non-zero
    with one message naming the fix, no traceback, within 30 s (plus the start-up imports)."""
    (tmp_path / "mlflow.db").write_bytes(np.random.default_rng(0).bytes(20000))
    dead = f"tracking.uri=http://127.0.0.1:{closed_port()}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    report = [sys.executable, "-m", "harness.report", "--out", str(tmp_path / "report")]
    cases = [
        ("runner, corrupt store", lambda: harness(tmp_path, *TINY, check=False), "is not an SQLite database"),
        ("sweep, corrupt store", lambda: harness(tmp_path, "-m", "S=3,4", *TINY[:3], check=False), "is not an SQLite database"),
        ("runner, dead server", lambda: harness(tmp_path / "d", *TINY, dead, check=False), "is the server running"),
        ("sweep, dead server", lambda: harness(tmp_path / "d", "-m", "S=3,4", *TINY[:3], dead, check=False),
         "is the server running"),
        ("report, corrupt store", lambda: subprocess.run(report, cwd=tmp_path, env=env, capture_output=True, text=True,
                                                          timeout=120), "is not an SQLite database"),
        ("report, dead server", lambda: subprocess.run(report + ["--tracking-uri", dead.split("=", 1)[1]], cwd=tmp_path,
                                                        env=env, capture_output=True, text=True, timeout=120),
         "is the server running"),
    ]
    for what, run, expected in cases:
        start = time.perf_counter()
        proc = run()
        seconds = time.perf_counter() - start
        assert proc.returncode != 0, what
        assert expected in proc.stderr, (what, proc.stderr)
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, (what, proc.stderr)
        no_traceback(proc)
        assert seconds < 60, (what, seconds)  # the store's part is < 30 s (above); start-up imports take the rest
        print(f"{what}: exit {proc.returncode} in {seconds:.1f} s: {proc.stderr.strip()}")


# --- 4. NaN outputs ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_nan_model_output_fails_the_cell(tmp_path):
    from harness.models.loading import read_state_dict

    state, _ = read_state_dict(DIGITS_UNET)
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(nan, tmp_path / "nan.pt")
    proc = harness(tmp_path, *TINY, f"model.checkpoint.path={tmp_path / 'nan.pt'}", check=False)
    assert proc.returncode == 1
    expected = "the model produced non-finite values (NaN or inf) for 4 of 4 images (indices [0, 1, 2, 3]) at step 1"
    assert expected in proc.stderr and "precision=fp32" in proc.stderr
    no_traceback(proc)
    df = runs(tmp_path)
    assert df["status"].item() == "FAILED" and expected in df["tags.error"].item()
    assert not list((tmp_path / "out" / "images").glob("*/*.pt"))  # nothing written from the NaN batch


# --- 2. cells fail alone ----------------------------------------------------------------------------------------------


def cell_runs(tmp_path):
    df = runs(tmp_path)
    return df[df["tags.kind"] == "cell"], df[df["tags.kind"] == "sweep"], df


@pytest.mark.slow
def test_one_bad_cell_fails_alone_and_orphans_are_reconciled(tmp_path):
    """A 4-cell sweep whose third cell fails at run time (its checkpoint file is corrupt; the pre-check only sees that
    it exists): the other three finish, the bad one is FAILED with its message, the summary names it, the exit status
    is 1. A run left RUNNING by a dead process before the sweep is marked KILLED when the sweep starts. Then force=true
    resamples a finished cell whose shards exist."""
    paths = []
    for name in ("c0", "c1", "bad", "c3"):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(np.random.default_rng(0).bytes(5000) if name == "bad" else DIGITS_UNET.read_bytes())
        paths.append(path)
    orphan = plant_orphan(f"sqlite:///{tmp_path / 'mlflow.db'}", dead_pid())
    proc = harness(tmp_path, "-m", "model.checkpoint.path=" + ",".join(map(str, paths)), *TINY, "hydra.launcher.n_jobs=2",
                   check=False)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    no_traceback(proc)
    assert "note: 1 run(s) left RUNNING by processes that no longer exist were marked KILLED" in proc.stdout
    assert "4 cells, 3 finished, 0 skipped (already finished), 1 failed" in proc.stdout
    assert f"1 of 4 cells failed:\n  failed: path=bad.pt S=3 eta=0 digits/sample: cannot read checkpoint {paths[2]}" in proc.stdout
    assert re.search(r"runs: mlflow ui --backend-store-uri sqlite:///mlflow.db, then open http://127.0.0.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning&viewStateShareKey=ddim-cells", proc.stdout)

    cells, sweep, df = cell_runs(tmp_path)
    status = dict(zip(cells["tags.mlflow.runName"], cells["status"]))
    assert status == {"path=c0.pt S=3 eta=0 digits/sample": "FINISHED", "path=c1.pt S=3 eta=0 digits/sample": "FINISHED",
                      "path=bad.pt S=3 eta=0 digits/sample": "FAILED", "path=c3.pt S=3 eta=0 digits/sample": "FINISHED"}
    bad = cells[cells["status"] == "FAILED"].iloc[0]
    assert bad["tags.error"].startswith("HarnessError: cannot read checkpoint")
    client = mlflow.MlflowClient()
    assert "cannot read checkpoint" in Path(client.download_artifacts(bad["run_id"], "error.txt", str(tmp_path))).read_text()
    assert sweep["status"].item() == "FAILED" and sweep["tags.mlflow.runName"].item() == "sweep path=c0.pt,c1.pt,bad.pt,c3.pt (4 cells)"
    assert sweep["tags.dataset"].item() == "digits" and sweep["tags.job"].item() == "sample"
    assert (cells["tags.mlflow.parentRunId"] == sweep["run_id"].item()).all()
    summary = (Path(client.download_artifacts(sweep["run_id"].item(), "sweep_summary.csv", str(tmp_path)))).read_text()
    assert summary.count("FINISHED") == 3 and "FAILED" in summary and "cannot read checkpoint" in summary
    assert df.set_index("run_id").loc[orphan, "status"] == "KILLED" and "RUNNING" not in set(df["status"])

    forced = harness(tmp_path, *TINY, f"model.checkpoint.path={paths[0]}", "force=true")
    assert "[done]" in forced.stdout
    newest = runs(tmp_path).sort_values("start_time").iloc[-1]
    assert newest["metrics.images_sampled"] == 8  # resampled, although the sweep left this cell's shards


@pytest.mark.slow
def test_killed_worker_fails_only_its_cell(tmp_path):
    """A worker SIGKILLed mid-cell (after its first batch, by the fault seam harness.core.faults): its cell is reported
    FAILED in the summary, its run marked KILLED (not left RUNNING), a new worker runs the remaining cell, the others
    finish, the exit status is 1."""
    proc = harness(tmp_path, "-m", "seed=0,1,2", *TINY, "hydra.launcher.n_jobs=2", check=False,
                   faults="batch_done:kill:task=1")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    no_traceback(proc)
    cells, sweep, df = cell_runs(tmp_path)
    status = dict(zip(cells["tags.mlflow.runName"], cells["status"]))
    assert status == {"seed=0 S=3 eta=0 digits/sample": "FINISHED", "seed=1 S=3 eta=0 digits/sample": "KILLED",
                      "seed=2 S=3 eta=0 digits/sample": "FINISHED"}
    killed = cells[cells["status"] == "KILLED"].iloc[0]
    assert "ended without closing the run (killed or crashed)" in killed["tags.error"]
    assert len(list((tmp_path / killed["tags.cell_dir"]).glob("*.pt"))) == 1  # it died mid-cell, after one batch
    assert "3 cells, 2 finished, 0 skipped (already finished), 1 failed" in proc.stdout
    assert (f"  failed: seed=1 S=3 eta=0 digits/sample: the worker process running this cell died (killed by signal 9); "
            f"run {killed['run_id']} marked KILLED") in proc.stdout
    assert sweep["status"].item() == "FAILED" and "RUNNING" not in set(df["status"])


# --- 3. SIGTERM -------------------------------------------------------------------------------------------------------


def start_harness(tmp_path, *args):
    env = dict(os.environ, DDIM_HARNESS_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    cmd = [sys.executable, "-m", "harness", *flags, f"output_root={tmp_path / 'out'}", "progress=false", *overrides]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_first_shard(tmp_path, proc, timeout=300):
    """Poll until a cell has written its first shard (its run is RUNNING, mid-sampling)."""
    deadline = time.monotonic() + timeout
    while not list((tmp_path / "out").glob("images/*/*.pt")):
        if proc.poll() is not None:
            raise AssertionError(f"ended before sampling: {proc.communicate()}")
        assert time.monotonic() < deadline, "no shard written in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_marks_a_single_run_killed(tmp_path):
    proc = start_harness(tmp_path, "N=200", "repeats=1", "batch_size=8", "S=20")
    wait_for_first_shard(tmp_path, proc)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (pid,) = db.execute("select value from tags where key = 'pid'").fetchone()
    assert int(pid) == proc.pid
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in out + err
    assert re.search(r"\[killed\] S=20 eta=0 digits/sample: interrupted \(signal 15\) \(run \w+, marked KILLED\)", err), err
    df = runs(tmp_path)
    assert df["status"].item() == "KILLED" and df["tags.error"].item().startswith("interrupted (signal 15)")
    assert len(list((tmp_path / "out").glob("images/*/*.pt"))) < 25  # stopped mid-sampling


@pytest.mark.slow
def test_sigterm_stops_a_sweep(tmp_path):
    """SIGTERM to a sweep's process (a scheduler's time limit): passed on to its worker, whose running cell's run is
    KILLED; no further cell starts; the summary lists every cell; the parent run is KILLED; exit 143 (issue 20)."""
    proc = start_harness(tmp_path, "-m", "seed=0,1,2", "N=200", "repeats=1", "batch_size=8", "S=20",
                         "hydra.launcher.n_jobs=1")
    wait_for_first_shard(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    print(out, err)
    assert proc.returncode == 143 and "Traceback" not in out + err and "leaked semaphore" not in err
    assert "[killed] cell 1/3 seed=0 S=20 eta=0 digits/sample: interrupted (signal 15)" in err
    assert "sweep stopped (SIGTERM) after" in err and "3 cells, 0 finished, 0 skipped, 3 killed or not started" in err
    cells, sweep, df = cell_runs(tmp_path)
    assert list(cells["status"]) == ["KILLED"] and sweep["status"].item() == "KILLED"
    summary = Path(mlflow.MlflowClient().download_artifacts(sweep["run_id"].item(), "sweep_summary.csv", str(tmp_path)))
    assert summary.read_text().count("not started: the sweep was stopped (SIGTERM)") == 2
