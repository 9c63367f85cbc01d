"""Peak memory of scoring a cell at LSUN's image size: the images must stream from their shards, never all in RAM.

A synthetic cell (random uint8 3x256x256 images, LSUN's shape, written as the harness's checksummed shards) is scored
in a fresh subprocess the way the sample job scores a cell: its ``ShardImages`` (``ShardStore.images``), the sample
grid (``head``), then ``harness.metrics.suite.score`` (features streamed in batches, FID, KID, precision/recall against a
reference). The features come from a cheap stand-in extractor, ``block-means`` (the mean of each 16x16 block per
channel: 768 features), registered for the run, so the cost is the harness's data path, not Inception's. The
reference is a registered torch-fidelity input of random images made on the fly.

The child reports its resident set before scoring (after its imports) and its peak (``VmHWM`` in
``/proc/self/status``, Linux); the increase is compared with the size of the cell's images as uint8. A control run
(``--control``, on by default) scores after holding every image in one tensor (``ShardImages.all()``), which is
what streaming avoids: its increase is at least the images' size, which shows that the measurement sees it.

    python benchmarks/streaming_rss.py                       # 5,000 images in shards of 256 (983 MB as uint8)
    python benchmarks/streaming_rss.py --images 2000 --no-control

Writes benchmarks/results/streaming_rss-cpu.json. Needs Linux (/proc) and about 1 GB of temporary disk per 5,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from torch.utils.data import Dataset

EXTRACTOR = "block-means"
REFERENCE = "streaming-rss-reference"
BLOCKS = 16  # blocks per side: 3 x 16 x 16 = 768 features
SHAPE = (3, 256, 256)  # LSUN's
LIMIT_BYTES = 4 * 2**30


def _random_images(seed: int, count: int) -> torch.Tensor:
    return torch.randint(0, 256, (count, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def write_cell(folder: Path, n: int, shard: int, seed: int = 0) -> None:
    """n random images in the harness's shards of ``shard`` images, one shard in memory at a time."""
    from harness.run.shards import ShardStore

    store = ShardStore(folder, SHAPE)
    for k, first in enumerate(range(0, n, shard)):
        indices = range(first, min(n, first + shard))
        store.write(indices, _random_images(seed * 1_000_003 + k, len(indices)))


class RandomReference(Dataset):
    """The reference: ``n`` random images, each made when asked for (image i from seed i)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return _random_images(10_000_000 + i, 1)[0]


def _register(reference_images: int) -> None:
    """The stand-in extractor and the reference, in torch-fidelity's registries and the harness's list of its own."""
    import torch_fidelity
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    from harness.metrics import features

    class BlockMeans(FeatureExtractorBase):
        """uint8 [B, 3, H, W] -> the mean of each (H/16)x(W/16) block per channel: [B, 768]. Eight images at a time
        in float, so that the stand-in itself adds little memory to what is measured."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        def forward(self, x):
            pool = torch.nn.functional.avg_pool2d
            return (torch.cat([pool(part.float(), x.shape[-1] // BLOCKS).flatten(1) for part in x.split(8)]),)

        @staticmethod
        def get_provided_features_list():
            return ("blocks",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "blocks"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, *SHAPE, dtype=torch.uint8)

    torch_fidelity.register_feature_extractor(EXTRACTOR, BlockMeans)
    features.OURS = features.OURS + (EXTRACTOR,)  # weights: none, read by no one
    torch_fidelity.register_dataset(REFERENCE, lambda root, download: RandomReference(reference_images))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def child(folder: Path, n: int, batch_size: int, reference_images: int, hold_all: bool, root: Path) -> dict:
    """Score the cell in ``folder`` as the sample job does; return the resident set before and the peak (bytes)."""
    from harness.metrics.suite import Scoring, score
    from harness.metrics.references import TensorImages
    from harness.run.shards import ShardStore

    _register(reference_images)
    torch.set_num_threads(1)
    baseline = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    images = ShardStore(folder, SHAPE).images(n)
    grid = images.head(100)  # the sample grid of samples.png
    del grid
    if hold_all:
        images = TensorImages(images.all())
    scoring = Scoring(REFERENCE, EXTRACTOR, SHAPE[-1], batch_size=batch_size, kid_subset_size=min(1000, n, reference_images),
                      datasets_root=str(root))
    (metrics,) = score(images, 1, scoring, torch.device("cpu"))
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": _status_kib("VmHWM") * 1024,
            "seconds": time.perf_counter() - start, "fid": metrics["fid"]}


def measure(folder: Path, n: int, batch_size: int = 100, reference_images: int = 1000, hold_all: bool = False) -> dict:
    """Scoring the cell in ``folder`` in a fresh process: its resident set before scoring, its peak, the increase."""
    with tempfile.TemporaryDirectory(prefix="streaming-rss-") as tmp:
        env = dict(os.environ, DDIM_HARNESS_CACHE=tmp, OMP_NUM_THREADS="1")
        cmd = [sys.executable, __file__, "--child", str(folder), "--images", str(n), "--batch-size", str(batch_size),
               "--reference", str(reference_images), "--root", tmp] + (["--hold-all"] if hold_all else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the scoring child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    images_bytes = n * SHAPE[0] * SHAPE[1] * SHAPE[2]
    out.update(images=n, images_bytes=images_bytes, hold_all=hold_all,
               increase_bytes=out["peak_rss_bytes"] - out["baseline_rss_bytes"])
    out["increase_over_images"] = out["increase_bytes"] / images_bytes
    return out


def main() -> None:
    from common import Bench, print_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="images in the synthetic cell")
    parser.add_argument("--shard", type=int, default=256, help="images per shard")
    parser.add_argument("--batch-size", type=int, default=100, help="feature extraction batch (metrics.batch_size)")
    parser.add_argument("--reference", type=int, default=1000, help="images in the random reference")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                        help="also score after holding every image in memory (what streaming avoids)")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hold-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.images, args.batch_size, args.reference, args.hold_all,
                               Path(args.root))))
        return

    bench = Bench("streaming_rss", args)
    with tempfile.TemporaryDirectory(prefix="streaming-rss-cell-") as tmp:
        start = time.perf_counter()
        write_cell(Path(tmp), args.images, args.shard)
        write_s = time.perf_counter() - start
        rows = [measure(Path(tmp), args.images, args.batch_size, args.reference)]
        if args.control:
            rows.append(measure(Path(tmp), args.images, args.batch_size, args.reference, hold_all=True))
    mib = 2**20
    print_table(
        [{"how": "all images held (control)" if r["hold_all"] else "streamed from shards (the harness)",
          "base": r["baseline_rss_bytes"] / mib, "peak": r["peak_rss_bytes"] / mib, "inc": r["increase_bytes"] / mib,
          "ratio": r["increase_over_images"], "s": r["seconds"]} for r in rows],
        [("how", "scoring", "s"), ("base", "RSS before MiB", ".0f"), ("peak", "peak RSS MiB", ".0f"),
         ("inc", "increase MiB", ".0f"), ("ratio", "increase / images", ".3f"), ("s", "seconds", ".1f")],
        f"{args.images} images of {'x'.join(map(str, SHAPE))} in shards of {args.shard} "
        f"({rows[0]['images_bytes'] / mib:.0f} MiB as uint8), features in batches of {args.batch_size}",
    )
    streamed = rows[0]
    results = {"images": args.images, "shard": args.shard, "image_shape": list(SHAPE), "batch_size": args.batch_size,
               "reference_images": args.reference, "write_seconds": write_s, "limit_bytes": LIMIT_BYTES,
               "under_limit": streamed["peak_rss_bytes"] < LIMIT_BYTES, "runs": rows}
    bench.write(torch.device("cpu"), results, args.out)
    if not results["under_limit"]:
        sys.exit(f"peak RSS {streamed['peak_rss_bytes'] / 2**30:.2f} GiB is over {LIMIT_BYTES / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()
