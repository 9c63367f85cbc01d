"""Issue 20, problem 8: the report on an experiment whose runs were all deleted is one message, not a KeyError; and
its manifest (.report-files.json) only ever deletes files the report wrote, unchanged since."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from report_store import Store, sample_metrics

from harness.report.build import MANIFEST, Options, build_report


def report_cli(tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "harness.report", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_report_on_an_experiment_whose_runs_were_deleted(tmp_path):
    store = Store(tmp_path / "mlflow.db")
    run_id = store.add("sample", "digits", 10, "0", sample_metrics(1.0, 10))
    store.client.delete_run(run_id)  # as the MLflow UI's delete does
    proc = report_cli(tmp_path, "--out", "r")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: The experiment 'ddim-harness' in sqlite:///mlflow.db has no runs yet: run "
                                   "python -m harness first.")


@pytest.mark.slow
def test_planted_manifest_deletes_nothing_else(tmp_path):
    store = Store(tmp_path / "mlflow.db")
    store.add("sample", "digits", 10, "0", sample_metrics(1.0, 10), artifact=True)
    out = tmp_path / "r"
    build_report(Options(store.uri, out))
    recorded = json.loads((out / MANIFEST).read_text())["sha256"]
    assert recorded["report.md"] == hashlib.sha256((out / "report.md").read_bytes()).hexdigest()
    assert not list(out.glob(".report-files.*.tmp"))

    mine = {"notes.md": "my notes", "data.csv": "a,b\n", "secret.key": "k", "figure_mine.png": "x",
            "table9.csv": "edited"}
    for name, text in mine.items():
        (out / name).write_text(text)
    outside = tmp_path / "outside.md"
    outside.write_text("outside")
    (out / "figure_link.png").symlink_to(outside)
    planted = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in mine.items() if name != "table9.csv"}
    planted.update({"table9.csv": "0" * 64, "../outside.md": hashlib.sha256(b"outside").hexdigest(),
                    "figure_link.png": hashlib.sha256(b"outside").hexdigest(), "report.md": "0" * 64})
    (out / MANIFEST).write_text(json.dumps({"sha256": planted}))
    build_report(Options(store.uri, out))
    kept = {name: (out / name).read_text() for name in mine if (out / name).exists()}
    # Names the report never writes stay whatever their hash; a report-like name goes only with its true hash.
    assert kept == {name: text for name, text in mine.items() if name != "figure_mine.png"}
    assert outside.read_text() == "outside" and (out / "figure_link.png").is_symlink()

    (out / "table9.csv").write_text("x")
    (out / MANIFEST).write_text(json.dumps(["notes.md", "table9.csv"]))  # the old format: names without hashes
    build_report(Options(store.uri, out))
    assert (out / "notes.md").is_file() and (out / "table9.csv").is_file()

    (out / MANIFEST).unlink()
    (out / MANIFEST).symlink_to(outside)  # never written through
    build_report(Options(store.uri, out))
    assert outside.read_text() == "outside" and not (out / MANIFEST).is_symlink()


@pytest.mark.slow
def test_stale_report_files_are_deleted_only_when_unchanged(tmp_path):
    store = Store(tmp_path / "mlflow.db")
    store.add("sample", "digits", 10, "0", sample_metrics(1.0, 10), artifact=True)
    store.add("sample", "cifar10", 10, "0", sample_metrics(12.0, 10), extractor="inception-v3-compat", artifact=True)
    out = tmp_path / "r"
    build_report(Options(store.uri, out))
    assert (out / "figure3_samples_digits.png").is_file() and (out / "figure3_samples_cifar10.png").is_file()
    (out / "figure3_samples_cifar10.png").write_bytes(b"edited by hand")
    build_report(Options(store.uri, out, datasets=["lsun_church", "celeba", "digits"]))
    assert (out / "figure3_samples_digits.png").is_file()
    assert (out / "figure3_samples_cifar10.png").read_bytes() == b"edited by hand"  # changed since: kept
    build_report(Options(store.uri, out, datasets=["cifar10"]))
    assert not (out / "figure3_samples_digits.png").exists()  # the report's own, unchanged, stale: deleted
