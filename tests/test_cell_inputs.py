"""Issue 20, problem 1: a cell's identity holds the content of its input files (harness.run.inputs), so a checkpoint
replaced under the same path is a new cell: no skip to the old run, no reuse of the old weights' shards."""

from __future__ import annotations

import os
import time

import pytest
import torch

from clitools import ROOT, TINY, cells, harness, runs
from harness.core import files
from harness.models.loading import read_state_dict

DIGITS_UNET = ROOT / "harness" / "assets" / "digits_unet.pt"


pytestmark = pytest.mark.usefixtures("private_caches")  # clitools.private_caches


def other_weights(path) -> None:
    """The digits U-Net's weights, scaled: a valid checkpoint of the same architecture that samples other images."""
    state, _ = read_state_dict(DIGITS_UNET)
    torch.save({k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}, path)


def test_file_digest_follows_the_file_not_its_path(tmp_path, monkeypatch):
    """Rewritten in place with the same size (and its modification time put back), a file is hashed again; the
    digest is recorded in the cache folder for the next process, except for a file changed within the last two
    seconds (two writes in one tick of the file system's clock can leave the same size and times)."""
    monkeypatch.setattr(files, "RACY_NS", 10**18)  # every file counts as just changed (the test's own two seconds)
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    assert files.file_digest(path) == files.hashlib.sha256(b"a" * 100).hexdigest()
    assert not (tmp_path / "cache" / "digests").exists()  # just written: not cached
    path.write_bytes(b"c" * 100)  # within the same tick of the file system's clock as likely as not
    assert files.file_digest(path) == files.hashlib.sha256(b"c" * 100).hexdigest()
    monkeypatch.setattr(files, "RACY_NS", 0)
    first = files.file_digest(path)
    st = path.stat()
    time.sleep(0.05)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert files.file_digest(path) == files.hashlib.sha256(b"b" * 100).hexdigest() != first
    records = list((tmp_path / "cache" / "digests").iterdir())
    assert len(records) == 2 and {r.read_text() for r in records} == {first, files.file_digest(path)}


def test_keys_name_the_checkpoint_by_content(tmp_path):
    a, b, copy = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "copy.pt"
    copy.write_bytes(DIGITS_UNET.read_bytes())
    other_weights(b)
    same, other = cells(f"model.checkpoint.path={copy}")[0], cells(f"model.checkpoint.path={b}")[0]
    assert same.inputs["checkpoint"] == "sha256:" + files.file_sha256(DIGITS_UNET)
    assert other.inputs["checkpoint"] != same.inputs["checkpoint"]
    a.write_bytes(DIGITS_UNET.read_bytes())
    before = cells(f"model.checkpoint.path={a}")[0]
    before.key  # identity is computed when first asked for (the runner: before anything else)
    a.write_bytes(b.read_bytes())  # swapped under the same path
    after = cells(f"model.checkpoint.path={a}")[0]
    assert before.images_key != after.images_key and before.key != after.key
    assert set(before.inputs) == {"checkpoint", "extractor_weights", "reference"}
    assert before.inputs["reference"].startswith("digits-train-") and before.inputs["extractor_weights"].startswith("sha256:")


def test_extractor_weights_are_part_of_the_key(tmp_path):
    from harness.models.digits_classifier import DEFAULT_WEIGHTS

    w = tmp_path / "w.pt"
    w.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    default, given = cells()[0], cells(f"metrics.weights_path={w}")[0]
    assert default.inputs["extractor_weights"] == given.inputs["extractor_weights"]
    state = torch.load(w, weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, w)
    changed = cells(f"metrics.weights_path={w}")[0]
    assert changed.inputs["extractor_weights"] != given.inputs["extractor_weights"]
    assert changed.key != given.key and changed.images_key == given.images_key  # the same images, scored otherwise


@pytest.mark.slow
def test_swapped_checkpoint_is_a_new_cell(tmp_path):
    """The issue's reproduction: run a cell from a checkpoint path, overwrite the file with other weights, run the
    same command: it samples again (no [skip], no shards of the old weights), into another images folder, and its run
    records the new file's sha256; a third run of the same file skips."""
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(DIGITS_UNET.read_bytes())
    first = harness(tmp_path, *TINY, f"model.checkpoint.path={ckpt}")
    other_weights(ckpt)
    second = harness(tmp_path, *TINY, f"model.checkpoint.path={ckpt}")
    print(first.stdout, second.stdout)
    assert "[skip]" not in second.stdout and "[done]" in second.stdout and "all from shards" not in second.stdout
    df = runs(tmp_path).sort_values("start_time")
    old, new = df.iloc[0], df.iloc[1]
    assert new["metrics.images_sampled"] == 8
    assert new["tags.cell_dir"] != old["tags.cell_dir"] and new["tags.cell_key"] != old["tags.cell_key"]
    assert new["tags.inputs.checkpoint"] == "sha256:" + files.file_sha256(ckpt) == "sha256:" + new["tags.checkpoint_sha256"]
    assert old["tags.inputs.checkpoint"] == "sha256:" + files.file_sha256(DIGITS_UNET)
    assert new["metrics.fid"] != old["metrics.fid"]
    third = harness(tmp_path, *TINY, f"model.checkpoint.path={ckpt}")
    assert f"finished run {new['run_id']} has the same settings" in third.stdout
