"""The one seam through which tests inject faults into real runs: a worker killed mid-cell (the OOM killer, a
segfault), a job stopped after k batches (to exercise resume). Production code marks where such a fault can strike
with ``point(name, **facts)`` and never looks at what a fault does; a point does nothing unless
``$DDIM_HARNESS_FAULTS`` holds a rule for it (the tests set it; worker processes inherit it):

    DDIM_HARNESS_FAULTS="batch_done:raise:batches=2"   the job raises FaultInjected when its 2nd batch is done
    DDIM_HARNESS_FAULTS="batch_done:kill:task=1"       the process of sweep task 1 SIGKILLs itself after a batch
    DDIM_HARNESS_FAULTS="scoring:stop"                  the job SIGSTOPs itself before scoring (the test fills the
                                                        disk meanwhile, then sends SIGCONT)

Rules are separated by ";". A rule fires at the first point of its name where every fact it names equals the
point's (compared as text). Points: ``batch_done`` (facts ``batches``: batches this job has done, ``task``: its
number in the sweep, None for a single run), ``scoring`` (a sample cell's images are all there, before it is
scored; fact ``task``), ``report_file`` (a report file written under its temporary name, not yet renamed; fact
``file``).
"""

from __future__ import annotations

import os
import signal

ENV = "DDIM_HARNESS_FAULTS"


class FaultInjected(RuntimeError):
    """The fault of a ``raise`` rule: the job fails as a job interrupted mid-work does."""


def _rules(spec: str) -> list[tuple[str, str, dict[str, str]]]:
    rules = []
    for rule in filter(None, (r.strip() for r in spec.split(";"))):
        name, action, *conditions = rule.split(":")
        facts = dict(c.split("=", 1) for c in ",".join(conditions).split(",") if c)
        rules.append((name, action, facts))
    return rules


def point(name: str, /, **facts) -> None:
    """A place where a real fault can strike; acts only on a matching rule of ``$DDIM_HARNESS_FAULTS``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for rule_name, action, wanted in _rules(spec):
        if rule_name == name and all(str(facts.get(k)) == v for k, v in wanted.items()):
            if action == "kill":  # no handler runs: the run stays RUNNING, as after the OOM killer
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "stop":  # paused until SIGCONT: the test changes the machine meanwhile (fills a disk)
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            raise FaultInjected(f"fault injected at {name} ({', '.join(f'{k}={v}' for k, v in facts.items())}) "
                                f"by {ENV}")
