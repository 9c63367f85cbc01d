"""The one seam through which tests inject faults into real runs: production code marks where one can strike with
``point(name, **facts)``; a point acts only on a matching rule of ``$DDIM_HARNESS_FAULTS``, e.g.
``batch_done:raise:batches=2;scoring:stop`` (the rules and points: docs/architecture.md)."""

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
