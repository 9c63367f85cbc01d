"""The fault seam (harness.core.faults): a point acts only on a rule that names it and every fact the rule gives."""

import os
import signal

import pytest

from harness.core import faults


def test_a_point_without_a_matching_rule_does_nothing(monkeypatch):
    """No rule, or a kill rule for another task: the point neither kills nor raises; the matching one kills."""
    killed = []
    monkeypatch.setattr(faults.os, "kill", lambda *args: killed.append(args))
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.point("batch_done", batches=1, task=None)
    monkeypatch.setenv(faults.ENV, "batch_done:kill:task=1")
    faults.point("batch_done", batches=1, task=None)
    faults.point("batch_done", batches=1, task=0)
    assert killed == []
    with pytest.raises(faults.FaultInjected):  # os.kill is recorded here instead of killing: the point goes on
        faults.point("batch_done", batches=1, task=1)
    assert killed == [(os.getpid(), signal.SIGKILL)]


def test_a_rule_fires_only_where_every_fact_matches(monkeypatch):
    monkeypatch.setenv(faults.ENV, "other:raise; batch_done:raise:batches=2,task=1")
    faults.point("batch_done", batches=1, task=1)  # batches differ
    faults.point("batch_done", batches=2, task=0)  # task differs
    faults.point("batch_done", batches=2, task=None)
    with pytest.raises(faults.FaultInjected, match="batch_done .*batches=2, task=1"):
        faults.point("batch_done", batches=2, task=1)
