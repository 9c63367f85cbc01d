"""A sample cell in parts (``parts=k``, ``part=0..k-1``): each part samples its block of the cell's indices into the
shared images folder and records itself on the cell's one run, under the cell's lock; the part that completes the
cell scores it (docs/architecture.md: a cell in parts)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import processes
from harness.core.errors import HarnessError
from harness.core.locks import file_lock
from harness.core.names import Tag, part_key
from harness.run.cell import Cell
from harness.tracking import store as tracking

if TYPE_CHECKING:  # the sweeper imports this module in every Hydra start: torch only when a part runs
    import torch

    from harness.run.shards import ShardStore

CREATED, JOINED, REOPENED, FINISHED = "created", "joined", "reopened", "finished"


# --- the cell's run ----------------------------------------------------------------------------------------------

def lock_path(cell: Cell) -> Path:
    """The cell's lock, held briefly: to find or create its run, and to record a part and decide who finishes."""
    return cell.output_root / "cells" / f"{cell.key}.lock"


def find_run(uri: str, experiment: str, key: str):
    """The newest run of the cell in parts (its key and a ``parts`` tag), whatever its status, or None."""
    return tracking.newest_run(uri, experiment, f"tags.{Tag.CELL_KEY} = '{key}' and tags.{Tag.PARTS} LIKE '%'")


def _drop_tags(run: tracking.Run, tags: Mapping[str, str], names: Sequence[str]) -> None:
    for name in names:
        if name in tags:
            run.client.delete_tag(run.run_id, name)


def _reopen(run: tracking.Run, tags: Mapping[str, str]) -> None:
    """A FAILED or KILLED run of parts back to RUNNING, with no owner and no finishing part until one claims it."""
    run.client.update_run(run.run_id, status="RUNNING")
    _drop_tags(run, tags, [Tag.PID, Tag.FINISHING_PART, Tag.ERROR])


def open_run(cell: Cell, uri: str, name: str, tags: Mapping[str, Any],
             parent_run_id: str | None) -> tuple[tracking.Run, str]:
    """The cell's run for this part and how it was got: CREATED (the first part), JOINED, REOPENED (it was FAILED or
    KILLED), or FINISHED (nothing left to do). The part is recorded on it as running."""
    with file_lock(lock_path(cell)):
        found = find_run(uri, cell.tracking.experiment, cell.key)
        with tracking.store_errors(uri):
            if found is None:
                run = tracking.Run.start(uri, cell.tracking.experiment, name, cell.params(),
                                         {**tags, Tag.PARTS: cell.parts}, parent_run_id, owned=False)
                how, old = CREATED, {}
            else:
                run, old = tracking.Run(uri, found.info.run_id), found.data.tags
                if found.info.status == "FINISHED":
                    return run, FINISHED
                if old.get(Tag.PARTS) != str(cell.parts):
                    raise HarnessError(
                        f"the cell's run {run.run_id} is split into parts={old.get(Tag.PARTS)}, not parts={cell.parts}: "
                        f"run its parts with parts={old.get(Tag.PARTS)} (the parts' image blocks depend on it).")
                how = JOINED if found.info.status == "RUNNING" else REOPENED
                if how == REOPENED:
                    _reopen(run, old)
            p = cell.part
            _drop_tags(run, old, [part_key(p, "error")])
            run.set_tags({part_key(p, "state"): "running", part_key(p, "host"): socket.gethostname(),
                          part_key(p, "pid"): os.getpid(), part_key(p, "device"): tags.get(Tag.DEVICE_NAME)})
    return run, how


# --- a part's end --------------------------------------------------------------------------------------------------

@dataclass
class PartEnd:
    parts_done: list[int]
    missing: int  # images of the cell not in its folder yet
    scoring: str | None  # "part 2 on host x (pid 123)" when another live part is scoring the cell
    store: ShardStore | None  # the finishing part's verified view of all the cell's images; None: not finishing
    images: float = 0.0  # images sampled by all parts, over their attempts (for the finishing part)
    seconds: float = 0.0  # their sampling seconds


def _claimant(tags: Mapping[str, str], status: str) -> str | None:
    """The live part scoring the cell, described, or None. A claim lasts while the run is RUNNING, and ends with its
    process on this host; a process on another host is taken to be alive."""
    part = tags.get(Tag.FINISHING_PART)
    if part is None or status != "RUNNING":
        return None
    host, pid = tags.get(Tag.HOST, ""), tags.get(Tag.PID, "")
    if host == socket.gethostname() and pid.isdigit() and not processes.alive(int(pid)):
        return None
    return f"part {part} on {host} (pid {pid})"


def part_done(cell: Cell, run: tracking.Run, device: torch.device, sampled: int, seconds: float) -> PartEnd:
    """Record this part's block as done (with the images it sampled now and their seconds) and decide, under the
    cell's lock, whether it finishes the cell: every image is in the folder and no live part is scoring it."""
    from harness.core.runtime import device_name
    from harness.run.shards import images_store

    p = cell.part
    with file_lock(lock_path(cell)):
        with tracking.store_errors(run.uri):
            now = run.client.get_run(run.run_id)
            metrics, tags = dict(now.data.metrics), now.data.tags
            for what, value in (("images", sampled), ("seconds", seconds)):
                metrics[part_key(p, what)] = metrics.get(part_key(p, what), 0.0) + value
            done = sorted({int(q) for q in tags.get(Tag.PARTS_DONE, "").split(",") if q} | {p})
            run.log_metrics({part_key(p, "images"): metrics[part_key(p, "images")],
                             part_key(p, "seconds"): metrics[part_key(p, "seconds")]})
            run.set_tags({part_key(p, "state"): "done", Tag.PARTS_DONE: ",".join(map(str, done))})
            store = images_store(cell)
            missing = len(store.missing(range(cell.n_images)))  # a fresh look: every part's shards, verified
            scoring = _claimant(tags, now.info.status)
            # Every part must have recorded its block: a part's last shard is on disk before its count is, so a part
            # that saw only the images could finish the cell without the other's count.
            if missing or scoring or len(done) < cell.parts:
                return PartEnd(done, missing, scoring, None)
            if now.info.status != "RUNNING":  # another part failed after its images were written
                _reopen(run, tags)
            run.set_tags({Tag.FINISHING_PART: p, Tag.HOST: socket.gethostname(), Tag.PID: os.getpid(),
                          Tag.DEVICE: device, Tag.DEVICE_NAME: device_name(device)})
    total = {what: sum(metrics.get(part_key(q, what), 0.0) for q in range(cell.parts)) for what in ("images", "seconds")}
    return PartEnd(done, 0, None, store, total["images"], total["seconds"])


def part_failed(cell: Cell, run: tracking.Run, state: str, message: str) -> None:
    """This part's state (failed or killed) and error on the cell's run; the caller then ends the run."""
    run.set_tags({part_key(cell.part, "state"): state, part_key(cell.part, "error"): message[:5000]})
