"""The cost of FD_DINOv2's and CMMD's features: seconds per 1,000 images through the full-size networks (DINOv2
ViT-L/14 at 224x224, CLIP ViT-L/14 at 336x336) with their preprocessing, from CIFAR-10-sized uint8 images.

The weights are random (the time does not depend on them; no download). A CPU measures a few dozen images
(--images) and the figure is scaled to 1,000, which is exact up to the batch's fixed costs, since every image costs
the same; a GPU measures more (--images 1000). CMMD's kernel sums are timed apart, at N = 50,000 a side.

    python benchmarks/vit_metrics_cost.py --images 32 --batch-size 16
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, common_args, measure, pick_device, print_table, set_threads

SPECS = {"dinov2": {"arch": "vit_large_patch14_dinov2", "architecture": {}, "image_size": 224},
         "clip": {"arch": "ViT-L-14-336", "architecture": {}, "image_size": 336}}


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--images", type=int, default=32, help="images timed per repeat (scaled to 1,000)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per network call (metrics.vit_batch_size)")
    parser.add_argument("--size", type=int, default=32, help="the images' side (CIFAR-10: 32)")
    parser.add_argument("--cmmd-n", type=int, default=0, help="also time CMMD's kernel sums at this N a side (0: skip)")
    args = parser.parse_args()
    bench = Bench("vit_metrics_cost", args)
    device = pick_device(args.device)
    threads = set_threads(args.threads)
    from harness.metrics import clip, cmmd, dinov2

    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8)
    rows, results = [], {"threads": threads, "images": args.images, "batch_size": args.batch_size, "networks": {}}
    for name, module, wrap in (("dinov2", dinov2, dinov2.DINOv2Features), ("clip", clip, clip.CLIPEmbeddings)):
        net = wrap(module.build(SPECS[name]), SPECS[name]["image_size"]).eval().to(device)
        params = sum(p.numel() for p in net.parameters())

        def run():
            for start in range(0, args.images, args.batch_size):
                net(images[start:start + args.batch_size].to(device))

        timing = measure(run, device, repeats=args.repeats, warmup=args.warmup)
        per_1000 = timing["median_s"] * 1000 / args.images
        results["networks"][name] = {"arch": SPECS[name]["arch"], "parameters": params, **timing,
                                     "seconds_per_1000_images": per_1000}
        rows.append({"network": SPECS[name]["arch"], "params": f"{params / 1e6:.0f}M",
                     "s/1000": f"{per_1000:.0f}", "spread": f"{timing['min_s'] * 1000 / args.images:.0f}-"
                                                        f"{timing['max_s'] * 1000 / args.images:.0f}"})
        del net
    if args.cmmd_n:
        x = torch.nn.functional.normalize(torch.randn(args.cmmd_n, 768), dim=1)
        y = torch.nn.functional.normalize(torch.randn(args.cmmd_n, 768), dim=1)
        timing = measure(lambda: cmmd.mmd2(x, y), torch.device("cpu"), repeats=1, warmup=0)
        results["cmmd_kernel"] = {"n": args.cmmd_n, **timing}
        rows.append({"network": f"CMMD kernel sums, N={args.cmmd_n}", "params": "-", "s/1000": f"{timing['median_s']:.0f} s total",
                     "spread": "-"})
    print_table(rows, [("network", "network", "<"), ("params", "parameters", ">"), ("s/1000", "s per 1,000 images", ">"),
                       ("spread", "min-max", ">")], title=f"FD_DINOv2 / CMMD features on {device}, {threads} threads")
    bench.write(device, results, args.out)


if __name__ == "__main__":
    main()
