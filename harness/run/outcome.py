"""What a job returns to its sweep: its outcome (the runner's, or the launcher's for a worker that died or a job the
sweep never started), summarised by the sweeper on the parent run."""

from __future__ import annotations

from dataclasses import dataclass

from harness.tracking.credentials import redact


@dataclass
class Outcome:
    index: int | None  # the task's number in the sweep (None for a single run)
    name: str
    status: str  # FINISHED | FAILED | KILLED | SKIPPED | PLANNED
    summary: str = ""
    error: str = ""
    run_id: str | None = None
    headline: str | None = None  # "fid 3.21 +- 0.40"
    preempted: bool = False  # a Slurm task stopped by its pre-timeout/preemption signal: submitted again

    def __post_init__(self) -> None:  # printed and logged by the sweep: names made of overrides may hold a store URI
        self.name, self.error = redact(self.name), redact(self.error)
