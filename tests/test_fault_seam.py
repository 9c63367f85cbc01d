"""The fault seam (harness.core.faults): a point acts only on a rule that names it and every fact the rule gives."""

import pytest

from harness.core import faults


def test_a_point_without_rules_does_nothing(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.point("batch_done", batches=1, job=None)


def test_a_rule_fires_only_where_every_fact_matches(monkeypatch):
    monkeypatch.setenv(faults.ENV, "other:raise; batch_done:raise:batches=2,job=1")
    faults.point("batch_done", batches=1, job=1)  # batches differ
    faults.point("batch_done", batches=2, job=0)  # job differs
    faults.point("batch_done", batches=2, job=None)
    with pytest.raises(faults.FaultInjected, match="batch_done .*batches=2, job=1"):
        faults.point("batch_done", batches=2, job=1)
