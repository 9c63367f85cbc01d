"""The Hydra app behind ``python -m harness`` (and the ``ddim-harness`` command): one job per cell.

The configs are the package ``harness.conf`` (the repository's ``conf/``, shipped in the wheel), found through the
installed package rather than a search path over the working directory.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from harness.core.overrides import unreadable_override
from harness.core.config import HYDRA_CONFIG_PATH
from harness.run import signals


def task(cfg: DictConfig) -> dict:
    """One Hydra job: one cell (harness.run.runner.run_job). Module-level, so worker processes can import it by name."""
    from harness.run.runner import run_job  # lazy: brings torch, mlflow: python -m harness --help stays fast

    if cfg.get("dry_run"):  # only a dry run imports the report, for its planner line
        from harness.report.pilot import PilotLines

        return run_job(cfg, pilot=PilotLines())
    return run_job(cfg)


hydra_main = hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="config")(task)


def main() -> None:
    """``hydra_main`` with Ctrl-C and SIGTERM as clean stops (harness.run.signals): one that stops the command outside a
    cell (while Hydra starts, while a sweep starts or ends) is one line and exit status 130 or 143, never a
    traceback; a sweep's parent run still open is marked KILLED."""
    problem = unreadable_override(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    signals.install()
    try:
        hydra_main()
    except KeyboardInterrupt as err:
        signum = signals.signal_of(err)  # later signals are ignored (harness.run.signals): this cleanup is not cut short
        from harness.sweep.parent import end_open_parent  # a sweep's parent run, if this process opened one
        run_id = end_open_parent("KILLED")
        marked = f"; parent run {run_id} marked KILLED" if run_id else ""
        print(f"stopped ({signals.name(signum)}){marked}", file=sys.stderr, flush=True)
        sys.exit(signals.exit_status(signum))
    finally:
        signals.stop_raising()  # the process is ending: a signal now must not break off its atexit handlers
