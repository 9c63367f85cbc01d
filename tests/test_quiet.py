"""Issue 20, problem 10: no noise. A damaged shard is one warning line; Ctrl-C reads "interrupted (Ctrl-C)"; a valid
checkpoint saved with an older pickle protocol loads without torch's warning; a refused pickle never quotes torch's
advice to load it with weights_only=False."""

from __future__ import annotations

import os
import pickle
import re
import signal
import warnings

import pytest
import torch

from clitools import HANG, ROOT, TINY, harness, runs, start_harness, wait_for_shards
from harness.models.digits_classifier import DEFAULT_WEIGHTS, load_classifier
from harness.core.errors import HarnessError
from harness.core.files import NotTensors, load_tensors
from harness.models.loading import read_state_dict

DIGITS_UNET = ROOT / "harness" / "assets" / "digits_unet.pt"
TINY_ANY_N = TINY[1:]  # clitools.TINY without its N


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_protocol_4_checkpoints_are_quiet(tmp_path):
    """A checkpoint saved with pickle protocol 4 (torch's safe loader reads only protocol 2's instructions): one
    HarnessError saying so and how to save it, without torch's warning about the protocol; torch's old format with
    its default protocol loads."""
    state, _ = read_state_dict(DIGITS_UNET)
    legacy, zipped, old = tmp_path / "legacy.pt", tmp_path / "zipped.pt", tmp_path / "old.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False, pickle_protocol=4)
    torch.save(state, zipped, pickle_protocol=4)
    torch.save(state, old, _use_new_zipfile_serialization=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in (legacy, zipped):
            with pytest.raises(HarnessError) as err:
                read_state_dict(path)
            assert str(err.value).startswith(f"cannot read checkpoint {path}: it was pickled with instructions torch's "
                                             "safe loader does not read (Unsupported operand 149: pickle protocol 4")
            assert "weights_only" not in str(err.value)
        loaded, info = read_state_dict(old)
    assert info["format"] == "state_dict" and all(torch.equal(loaded[k], state[k]) for k in state)
    assert not [w for w in caught if "protocol" in str(w.message)], [str(w.message) for w in caught]


def test_refused_pickles_say_what_they_hold_not_how_to_run_them(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "classifier.pt"
    with open(path, "wb") as f:
        pickle.dump({"w": Payload(marker)}, f, protocol=2)
    with pytest.raises(NotTensors, match="objects other than tensors"):
        load_tensors(path)
    with pytest.raises(HarnessError) as err:
        load_classifier(path)
    text = str(err.value)
    print(text)
    assert text.startswith(f"cannot load digits classifier weights {path} (NotTensors: it holds objects other than "
                           "tensors (") and "GLOBAL posix.system" in text
    assert "weights_only" not in text and "Re-running" not in text and "\n" not in text and not marker.exists()
    assert load_classifier(DEFAULT_WEIGHTS) is not None


@pytest.mark.slow
def test_damaged_shard_is_one_line(tmp_path):
    """A cell's shards, one of them damaged; a cell sharing its images (another N) warns once and resamples it."""
    harness(tmp_path, *TINY_ANY_N, "N=8")
    (shard,) = [p for p in (tmp_path / "out").glob("images/*/*.pt") if p.name.startswith("0000000-")]
    shard.write_bytes(shard.read_bytes()[:200])
    proc = harness(tmp_path, *TINY_ANY_N, "N=12")
    text = proc.stdout + proc.stderr
    print(text)
    assert text.count(shard.name) == 1 and text.count("warning") == 1
    assert f"warning: sample shard {shard.name} is damaged (unreadable (" in text
    assert runs(tmp_path).sort_values("start_time").iloc[-1]["metrics.images_sampled"] == 8  # 4 damaged + 4 new


@pytest.mark.slow
def test_ctrl_c_reads_ctrl_c(tmp_path):
    proc = start_harness(tmp_path, "N=400", "repeats=1", "batch_size=8", "S=20")
    wait_for_shards(tmp_path, [proc])
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err
    assert re.search(r"\[killed\] S=20 eta=0 digits/sample: interrupted \(Ctrl-C\) \(run \w+, marked KILLED\)", err), err
    assert "interrupted ()" not in out + err and "Traceback" not in out + err
    assert runs(tmp_path)["tags.error"].item().startswith("interrupted (Ctrl-C): ")
