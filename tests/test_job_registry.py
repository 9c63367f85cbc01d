"""Jobs are registry entries (harness.run.registry): a new job is one module with its ``JOB`` and one YAML."""

import pytest

from clitools import harness, runs

from harness.core.errors import HarnessError
from harness.run import registry

TOY = '''
from harness.run.registry import Job


def run(ctx):
    ctx.run.log_metrics({"toy_images": float(ctx.cell.n_images)})
    ctx.summary = f"toy of {ctx.cell.n_images} images"


JOB = Job("toy", run, describe=lambda cell: f"toy of {cell.N} images")
'''


def test_a_new_job_is_one_module_and_one_yaml(tmp_path):
    """A toy job outside the package, run end to end through the command line with no other edit: its module on the
    path, its YAML on Hydra's search path."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "toyjob.py").write_text(TOY)
    (tmp_path / "confs" / "job").mkdir(parents=True)
    (tmp_path / "confs" / "job" / "toy.yaml").write_text("name: toy\nmodule: toyjob\n")
    proc = harness(tmp_path, "job=toy", "N=6", "repeats=2", f"hydra.searchpath=[file://{tmp_path / 'confs'}]",
                   env={"PYTHONPATH": str(tmp_path / "code")})
    assert "[done] S=50 eta=0 digits/toy: toy of 12 images" in proc.stdout
    df = runs(tmp_path)
    assert df["status"].tolist() == ["FINISHED"] and df["params.job"].tolist() == ["toy"]
    assert df["metrics.toy_images"].tolist() == [12.0]
    assert df["tags.mlflow.note.content"].str.contains("toy of 6 images").all()


def test_an_unknown_job_names_the_fix():
    with pytest.raises(HarnessError, match="Unknown job 'nosuch'"):
        registry.job("nosuch")


def test_a_job_module_that_fails_to_import_is_not_called_unknown(tmp_path, monkeypatch):
    (tmp_path / "brokenjob.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        registry.job("broken", "brokenjob")
