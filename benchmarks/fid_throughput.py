"""FID cost on the digits default: feature-extractor throughput, and compute_fid with a cold and a warm cache.

* images per second through the ``digits-cnn`` feature extractor for N uint8 [1, 8, 8] images (random pixels,
  shaped like the sampler's output after ``to_uint8``), in batches of --batch-size (the fid config's 500);
* the first ``compute_fid`` against ``digits-train`` with a cold cache (``DDIM_HARNESS_CACHE`` points at a fresh
  temporary folder: the reference statistics are computed and written), then --repeats more calls, which must read
  them from the cache: the statistics file must exist after the first call and not be rewritten (same mtime and
  sha256) by the later ones.

    python benchmarks/fid_throughput.py --N 1000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, common_args, measure, pick_device, print_table, set_threads


def fingerprint(path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--N", type=int, default=1000, help="images (the default cell's N)")
    parser.add_argument("--batch-size", type=int, default=500, help="feature extraction batch (conf/fid/digits_cnn.yaml)")
    args = parser.parse_args()
    bench = Bench("fid_throughput", args)
    device = pick_device(args.device)
    set_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="fid-bench-") as cache:
        os.environ["DDIM_HARNESS_CACHE"] = cache  # read at call time by the harness: a cold cache
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        from harness.fid import DIGITS_EXTRACTOR, compute_fid, reference_statistics_path

        images = torch.randint(0, 256, (args.N, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        extractor = FEATURE_EXTRACTORS_REGISTRY[DIGITS_EXTRACTOR](DIGITS_EXTRACTOR, ["penultimate"]).to(device)
        batches = [b.to(device) for b in images.split(args.batch_size)]
        extract = measure(lambda: [extractor(b) for b in batches], device, args.repeats, args.warmup)

        stats = reference_statistics_path("digits-train", DIGITS_EXTRACTOR)
        assert not stats.exists(), f"the cache is not cold: {stats} exists"

        def fid_call() -> tuple[float, dict]:
            start = time.perf_counter()
            res = compute_fid(images, "digits-train", DIGITS_EXTRACTOR, batch_size=args.batch_size, device=device, verbose=False)
            return time.perf_counter() - start, res

        cold_s, cold = fid_call()
        assert stats.is_file() and not cold["reference_cached"], f"the first call did not write {stats}"
        written = fingerprint(stats)
        warm = [fid_call() for _ in range(max(1, args.repeats))]
        for _, res in warm:
            assert res["reference_cached"] and res["fid"] == cold["fid"], res
        assert fingerprint(stats) == written, f"{stats} was rewritten by a call with a warm cache"

    warm_s = [s for s, _ in warm]
    results = {
        "N": args.N, "batch_size": args.batch_size,
        "extractor": {"images_per_s": args.N / extract["median_s"], **extract},
        "compute_fid_cold_s": cold_s, "compute_fid_second_s": warm_s[0], "compute_fid_warm_median_s": statistics.median(warm_s),
        "compute_fid_warm_s": warm_s, "fid": cold["fid"], "statistics_file": stats.name,
        "statistics_cached_and_not_rewritten": True,
    }
    print_table(
        [{"what": f"digits-cnn features, N={args.N}", "s": extract["median_s"], "ips": results["extractor"]["images_per_s"]},
         {"what": "compute_fid, cold cache (1st)", "s": cold_s, "ips": args.N / cold_s},
         {"what": "compute_fid, warm cache (2nd)", "s": warm_s[0], "ips": args.N / warm_s[0]},
         {"what": f"compute_fid, warm, median of {len(warm_s)}", "s": results["compute_fid_warm_median_s"],
          "ips": args.N / results["compute_fid_warm_median_s"]}],
        [("what", "what", "s"), ("s", "seconds", ".4f"), ("ips", "images/s", ".0f")],
        f"FID on {device} ({torch.get_num_threads()} threads); statistics {stats.name} cached, not rewritten",
    )
    bench.write(device, results, args.out)


if __name__ == "__main__":
    main()
