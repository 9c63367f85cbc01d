"""Scoring streams a cell's images from its shards: the peak memory of scoring grows far less than the images'
size, on a synthetic cell of LSUN-sized (3x256x256) images (benchmarks/streaming_rss.py measures 5,000; Linux)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import streaming_rss  # noqa: E402


@pytest.mark.slow  # about 1.5 min: 2,000 images written, then scored in three fresh processes
def test_scoring_memory_does_not_grow_with_the_cell(tmp_path):
    streaming_rss.write_cell(tmp_path / "cell", 2000, shard=256)
    small = streaming_rss.measure(tmp_path / "cell", 500, reference_images=500)
    large = streaming_rss.measure(tmp_path / "cell", 2000, reference_images=500)
    held = streaming_rss.measure(tmp_path / "cell", 2000, reference_images=500, hold_all=True)
    added = large["images_bytes"] - small["images_bytes"]  # 1,500 images: 295 MB as uint8
    growth = large["increase_bytes"] - small["increase_bytes"]
    assert growth < 0.25 * added, (small, large)  # four times as many images, about the same peak
    assert large["increase_bytes"] < large["images_bytes"], large
    # the measurement sees a cell held in memory: holding the 2,000 images raises the peak by at least their size
    assert held["increase_bytes"] > held["images_bytes"], held
