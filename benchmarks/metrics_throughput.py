"""The metric suite's cost on the digits default: feature throughput, and scoring K repeats of N images with a cold
and a warm reference cache.

* images per second through the ``digits-cnn`` and ``pixels`` extractors for N uint8 [1, 8, 8] random images;
* ``harness.metrics.suite.score`` (FID, KID, precision/recall, pixel FD per repeat) against ``digits-train``: the first call
  with a cold cache (``DDIM_HARNESS_CACHE`` points at a fresh temporary folder: the reference features are computed
  and written), then --repeats more calls, which must read them from the cache and not rewrite them.

    python benchmarks/metrics_throughput.py --N 250 --K 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, common_args, measure, pick_device, print_table, set_threads


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--N", type=int, default=250, help="images per repeat (the default cell's N)")
    parser.add_argument("--K", type=int, default=5, help="repeats (the default cell's)")
    parser.add_argument("--batch-size", type=int, default=500, help="feature extraction batch (metrics.batch_size)")
    args = parser.parse_args()
    bench = Bench("metrics_throughput", args)
    device = pick_device(args.device)
    set_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as cache:
        os.environ["DDIM_HARNESS_CACHE"] = cache  # read at call time by the harness: a cold cache
        from harness.metrics import features
        from harness.metrics.suite import Scoring, score
        from harness.metrics.references import TensorImages

        n = args.N * args.K
        images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        extractors = {name: features.make_extractor(name, [layer], None, device)
                      for name, layer in (("digits-cnn", "penultimate"), ("pixels", "pixels"))}
        extract = measure(lambda: features.extract(TensorImages(images), extractors, args.batch_size, device),
                          device, args.repeats, args.warmup)
        scoring = Scoring("digits-train", "digits-cnn", 8, batch_size=args.batch_size)

        def call() -> tuple[float, list[dict]]:
            start = time.perf_counter()
            res = score(TensorImages(images), args.K, scoring, device)
            return time.perf_counter() - start, res

        cold_s, cold = call()
        files = sorted((Path(cache) / "references").glob("*.npz"))
        assert files, "the first call wrote no reference features"
        written = [(f.name, f.stat().st_mtime_ns) for f in files]
        warm = [call() for _ in range(max(1, args.repeats))]
        for _, res in warm:
            assert res == cold, "a warm call gave other metrics"
        assert [(f.name, f.stat().st_mtime_ns) for f in files] == written, "a warm call rewrote the reference cache"

    warm_s = [s for s, _ in warm]
    results = {
        "N": args.N, "K": args.K, "batch_size": args.batch_size,
        "extractors": {"images_per_s": n / extract["median_s"], **extract},
        "score_cold_s": cold_s, "score_warm_median_s": statistics.median(warm_s), "score_warm_s": warm_s,
        "metrics_repeat_0": cold[0], "reference_files": [name for name, _ in written],
    }
    print_table(
        [{"what": f"digits-cnn + pixel features, {n} images", "s": extract["median_s"], "ips": n / extract["median_s"]},
         {"what": f"score {args.K} x {args.N}, cold cache", "s": cold_s, "ips": n / cold_s},
         {"what": f"score {args.K} x {args.N}, warm, median of {len(warm_s)}", "s": results["score_warm_median_s"],
          "ips": n / results["score_warm_median_s"]}],
        [("what", "what", "s"), ("s", "seconds", ".4f"), ("ips", "images/s", ".0f")],
        f"metric suite on {device} ({torch.get_num_threads()} threads); reference features cached, not rewritten",
    )
    bench.write(device, results, args.out)


if __name__ == "__main__":
    main()
