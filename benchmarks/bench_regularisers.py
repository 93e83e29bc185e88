"""Forward + backward time of each regulariser relative to ``dropout`` at the same rate.

    python benchmarks/bench_regularisers.py [--rows 4096 --cols 1024 --repeats 50 --device cpu]

Regularisers are timed interleaved (round-robin) in one process so machine noise hits all of them
alike; the ratio of medians is printed last and written to results/bench/regularisers.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from qsd.io import write_json
from qsd.regularisers import build

CASES = {
    "none": {},
    "dropout": {},
    "gaussian": {},
    "qsd": {},
    "qsd_cv0": {"cv": 0.0},
    "qsd_n1_cv0": {"n": 1, "cv": 0.0},
    "qsd_torch": {"backend": "torch"},  # the portable sampler, for comparison with the kernels
}


def step(module: torch.nn.Module, x: torch.Tensor) -> None:
    y = module(x)
    y.backward(torch.ones_like(y))
    x.grad = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("results/bench/regularisers.json"))
    args = ap.parse_args()

    x = torch.randn(args.rows, args.cols, device=args.device, requires_grad=True)
    modules = {k: build(k.split("_")[0], rate=args.rate, **p).train().to(args.device) for k, p in CASES.items()}
    times: dict[str, list[float]] = {k: [] for k in modules}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        for m in modules.values():
            step(m, x)
    for _ in range(args.repeats):
        for name, m in modules.items():
            sync()
            t0 = time.perf_counter()
            step(m, x)
            sync()
            times[name].append(time.perf_counter() - t0)

    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: median[k] / median["dropout"] for k in median}
    report = {
        "benchmark": "regulariser forward+backward",
        "shape": [args.rows, args.cols],
        "rate": args.rate,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_ms": {k: 1e3 * v for k, v in median.items()},
        "ratio_to_dropout": ratio,
        "torch": torch.__version__,
    }
    write_json(args.out, report)
    for k in modules:
        print(f"{k:12s} {1e3 * median[k]:8.2f} ms   {ratio[k]:5.2f} x dropout")


if __name__ == "__main__":
    main()
