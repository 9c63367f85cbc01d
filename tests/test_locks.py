"""The helpers for file locks and process liveness (harness.core.locks, harness.core.processes)."""

import os
import subprocess

from clitools import wait_until

from harness.core import processes
from harness.core.locks import file_lock


def test_a_held_lock_is_refused_without_waiting_and_free_once_released(tmp_path):
    path = tmp_path / "made" / "x.lock"  # its folder is made
    with file_lock(path) as held:
        assert held is not None
        with file_lock(path, wait=False) as other:  # another open file of this process: flock refuses it too
            assert other is None
    with file_lock(path, wait=False) as again:
        assert again is not None


def test_a_process_is_alive_until_it_exits_and_a_zombie_is_not():
    assert processes.alive(os.getpid()) and processes.state(os.getpid()) in ("R", "S")
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert processes.alive(child.pid)
        child.kill()
        wait_until(lambda: processes.state(child.pid) == "Z", "a zombie")
        assert not processes.alive(child.pid)
    finally:
        child.wait()
    assert not processes.alive(child.pid) and processes.state(child.pid) is None
