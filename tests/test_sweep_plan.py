"""The sweep's plan (harness.sweep.plan) and the hand-over to its jobs (harness.sweep.sweeper, harness.run.runner):
overrides parsed once in Hydra's order, each job's Cell built and named before any work, cells that cross to a worker
without their cached file hashes, and the outcomes read from the launcher's return values."""

import pickle

import pytest
from hydra.core.utils import JobReturn, JobStatus

from clitools import cells
from harness.core.errors import HarnessError
from harness.sweep.plan import tasks_of, run_name, sweep_name, swept_values
from harness.sweep.sweeper import _outcome


@pytest.mark.parametrize("arguments", [
    ["S=10,20", "eta=0,1"],
    ["eta=0,1", "S=10", "eta=0.5,hat"],  # a later value of a key replaces the earlier one, in its place
    ["+foo=bar", "seed=range(0,3)", "dataset=digits"],
    ["sampler=choice(ddim,pndm)", "S=10,20,50"],
])
def test_jobs_are_hydras_product_in_hydras_order(arguments):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference: what Hydra's own sweeper runs
    from hydra.core.override_parser.overrides_parser import OverridesParser

    expected = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)[0]
    jobs = tasks_of(arguments)
    assert [list(j.overrides) for j in jobs] == expected
    assert [j.index for j in jobs] == list(range(len(expected)))
    assert dict(jobs[0].settings).get("foo", "-") == ("bar" if "+foo=bar" in arguments else "-")  # key without "+"


def test_the_plan_refuses_what_it_cannot_sweep():
    with pytest.raises(HarnessError, match=r"list the values \(S=a,b,c\)"):
        tasks_of(["S=interval(1,5)"])
    with pytest.raises(HarnessError, match="key=value"):
        tasks_of(["S=="])


def test_names_say_what_the_sweep_varies():
    jobs = tasks_of(["S=10,20", "eta=0,1", "seed=3", "model.checkpoint.path=/x/a.pt,/x/b.pt"])
    assert swept_values(jobs) == {"S": ["10", "20"], "eta": ["0", "1"],
                                  "model.checkpoint.path": ["/x/a.pt", "/x/b.pt"]}
    assert sweep_name(jobs) == "sweep S=10,20 eta=0,1 path=a.pt,b.pt (8 cells)"
    cell = cells("S=10", "eta=0")[0]
    # the swept settings the standard name does not show lead it (a path by its file name); the unswept seed does not
    assert run_name(cell, jobs[1], swept_values(jobs)) == "path=b.pt S=10 eta=0 digits/sample"


def test_every_job_gets_its_built_cell_and_name():
    planned = cells("S=3,5", "eta=0,1", "seed=0,1", "N=16", "repeats=1")
    assert [(c.S, c.eta, c.seed) for c in planned] == [(S, eta, seed) for S in (3, 5) for eta in (0.0, 1.0)
                                                       for seed in (0, 1)]
    assert len({c.key for c in planned}) == 8


def test_a_cell_crosses_to_a_worker_without_its_file_hashes():
    cell = cells("S=10", "eta=0.5")[0]
    key, images_key, inputs = cell.key, cell.images_key, cell.inputs  # computed from files, cached on the cell
    sent = pickle.loads(pickle.dumps(cell))
    assert not {"key", "images_key", "inputs", "checkpoint_content"} & set(vars(sent))  # the job hashes its files again
    assert sent == cell and sent.key == key and sent.images_key == images_key and sent.inputs == inputs
    assert type(sent.dataset) is type(cell.dataset) and dict(sent.config) == dict(cell.config)
    with pytest.raises(TypeError):
        sent.dataset["name"] = "cifar10"  # still read-only


def test_outcomes_come_from_the_launchers_return_values():
    job = tasks_of(["S=10"])[0]
    planned = type("Planned", (), {"index": 0, "label": "S=10 eta=0 digits/sample"})()
    done = JobReturn(overrides=list(job.overrides), status=JobStatus.COMPLETED)
    done.return_value = {"index": 0, "name": "x", "status": "FINISHED", "summary": "ok", "error": "",
                         "run_id": "r1", "headline": "fid 3"}
    assert _outcome(planned, done) == {**done.return_value, "name": "S=10 eta=0 digits/sample"}
    raised = JobReturn(overrides=list(job.overrides), status=JobStatus.FAILED, _return_value=RuntimeError("boom"))
    failed = _outcome(planned, raised)
    assert failed["status"] == "FAILED" and failed["error"] == "RuntimeError: boom" and failed["run_id"] is None
    assert _outcome(planned, None)["status"] == "FAILED"


def test_an_unknown_config_option_is_one_line_with_the_options():
    with pytest.raises(HarnessError) as err:
        cells("dataset=nosuch,digits")
    message = str(err.value)
    assert message.startswith("cell dataset=nosuch: ") and "\n" not in message
    assert "Could not find 'dataset/nosuch' Available options in 'dataset': celeba cifar10 digits" in message
