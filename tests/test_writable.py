"""Issue 20, problem 6: every folder a cell writes (output_root, its images/, the cache) is checked before Hydra makes
its job folders and before any sampling: one line naming the fix, exit status 2, no run in the store.

Unwritable folders are made with what works for the user running the tests: a file in the way and symbolic links
that lead nowhere for anyone; permissions (chmod) for a user, the immutable attribute (chattr +i) for root."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

import pytest

from clitools import TINY, harness
from harness.core.errors import HarnessError
from harness.run.disk import check_writable



@contextmanager
def unwritable(folder):
    """``folder`` (made if missing) that no one may write into while inside the block."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        undo = lambda: folder.chmod(0o700)  # noqa: E731
    else:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("root without chattr +i (CAP_LINUX_IMMUTABLE): no way to make a folder unwritable here")
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    try:
        yield folder
    finally:
        undo()


def one_error(proc, *parts: str) -> None:
    """Exit status 2 and one line, ``error: ...`` holding every part, no traceback."""
    text = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, text
    assert text.startswith("error: ") and "\n" not in text, text
    for part in parts:
        assert part in text, text


def test_reasons(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    cases = {tmp_path / "file": "a file is in the way", tmp_path / "file" / "sub": "a file is in the way",
             tmp_path / "loop": "a symbolic link loop", tmp_path / "loop" / "sub": "a symbolic link loop",
             tmp_path / "dangling" / "sub": "it is a symbolic link whose target is missing"}
    for folder, reason in cases.items():
        with pytest.raises(HarnessError) as err:
            check_writable(folder, "the things", "fix it")
        assert str(err.value).startswith(f"cannot write the things into {folder}: {reason}") and str(err.value).endswith("; fix it.")
    check_writable(tmp_path / "new" / "deep", "x", "y")
    assert not (tmp_path / "new").exists()  # nothing made: bad input elsewhere must leave no folders


def test_verified_weights_folder_only_for_extractors_with_weights(tmp_path, private_caches):
    from clitools import cells
    from harness.run.disk import check_cell_paths

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "verified-weights").write_text("x")
    check_cell_paths(cells("S=5", f"output_root={tmp_path / 'out'}")[0])  # digits-cnn: its weights ship with it
    with pytest.raises(HarnessError, match=r"verified extractor weights \(cache/verified-weights\) into .*: a file is "):
        check_cell_paths(cells("dataset=cifar10", "S=5", f"output_root={tmp_path / 'out'}")[0])


@pytest.mark.slow
def test_unwritable_folders_are_one_line_before_any_work(tmp_path):
    out = tmp_path / "a"
    out.write_text("a file where output_root should be")  # Hydra itself would fail making its job folder
    proc = harness(out.parent / "w1", *TINY, f"output_root={out}", check=False)
    one_error(proc, f"cannot write the job folders (output_root) into {out}: a file is in the way",
              "set output_root=<a writable folder>")

    w2 = tmp_path / "w2"
    (w2 / "out").mkdir(parents=True)
    (w2 / "out" / "images").write_text("x")
    proc = harness(w2, "-m", "seed=0,1", *TINY, check=False)  # a sweep: refused before its parent run exists
    one_error(proc, f"into {w2 / 'out' / 'images'}: a file is in the way", "or set output_root=<a writable folder>")

    w3 = tmp_path / "w3"
    (w3 / "cache").mkdir(parents=True)
    (w3 / "cache" / "references").symlink_to(w3 / "cache" / "references")
    proc = harness(w3, *TINY, check=False)
    one_error(proc, f"the reference features (cache/references) into {w3 / 'cache' / 'references'}: a symbolic link "
                    "loop is on its path", "set DDIM_HARNESS_CACHE=<a writable folder>")

    w4 = tmp_path / "w4"
    w4.mkdir()
    (w4 / "cache").write_text("x")
    proc = harness(w4, *TINY, check=False)
    one_error(proc, f"the cache (reference features, verified weights) into {w4 / 'cache'}: a file is in the way")
    for w in (w2, w3, w4):  # nothing was sampled, no run was made
        assert not (w / "out" / "images").is_dir() or not any((w / "out" / "images").iterdir())
        assert not (w / "out" / "runs").exists() and not (w / "out" / "multirun").exists()


@pytest.mark.slow
def test_folder_without_permission(tmp_path):
    with unwritable(tmp_path / "out" / "images"):
        proc = harness(tmp_path, *TINY, check=False)
    one_error(proc, f"cannot write the sample shards (output_root/images) into {tmp_path / 'out' / 'images'}: "
                    "permission denied; make")
