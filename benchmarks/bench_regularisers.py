"""Forward + backward time of each regulariser relative to ``dropout`` at the same rate.

    python benchmarks/bench_regularisers.py [--shapes 4096x1024 --dtypes float32 --repeats 50 --device cpu]
    python benchmarks/bench_regularisers.py --device cuda --shapes 4096x1024,16384x4096,65536x4096 \\
        --dtypes float32,bfloat16

Regularisers are timed interleaved (round-robin) in one process so machine noise hits all of them
alike. On CUDA one sample is the mean of ``--inner`` steps between two CUDA events (a single step
of a small tensor is shorter than its launch). Prints the device, absolute medians and the ratio of
medians, and writes JSON to results/bench/regularisers.json (regularisers_cuda.json on a GPU).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from qsd.io import write_json
from qsd.provenance import device_name
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


def step(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    y = module(x)
    y.backward(grad)
    x.grad = None


def time_case(module, x, grad, device, inner: int) -> float:
    """Seconds per forward+backward step: one sample."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        step(module, x, grad)
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        step(module, x, grad)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / inner


def bench(shape, dtype, cases, args, device) -> dict:
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.ones_like(x)
    modules = {k: build(k.split("_")[0], rate=args.rate, **CASES[k]).train().to(device) for k in cases}
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(3):
        for m in modules.values():
            step(m, x, grad)
    for _ in range(args.repeats):
        for name, m in modules.items():
            times[name].append(time_case(m, x, grad, device, args.inner))
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": list(shape), "dtype": str(dtype).removeprefix("torch."),
            "median_ms": {k: 1e3 * v for k, v in median.items()},
            "ratio_to_dropout": {k: median[k] / median["dropout"] for k in median}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x1024", help="comma-separated ROWSxCOLS")
    ap.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16, float16")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {list(CASES)}")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--inner", type=int, default=10, help="steps per CUDA sample")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    cases = args.cases.split(",")
    if "dropout" not in cases or set(cases) - set(CASES):
        raise SystemExit(f"--cases must include dropout and be among {list(CASES)}, got {cases}")
    out = args.out or Path("results/bench", "regularisers_cuda.json" if device.type == "cuda" else "regularisers.json")
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; rate {args.rate}; median of {args.repeats}"
          + (f" samples of {args.inner} steps" if device.type == "cuda" else " steps"))
    results = []
    for shape in (tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")):
        for dtype in (getattr(torch, d) for d in args.dtypes.split(",")):
            r = bench(shape, dtype, cases, args, device)
            results.append(r)
            print(f"\n{'x'.join(map(str, shape))} {r['dtype']}")
            for k in cases:
                print(f"  {k:12s} {r['median_ms'][k]:9.3f} ms   {r['ratio_to_dropout'][k]:5.2f} x dropout")
    write_json(out, {"benchmark": "regulariser forward+backward", "device": str(device), "device_name": name,
                     "threads": torch.get_num_threads(), "rate": args.rate, "repeats": args.repeats,
                     "inner": args.inner if device.type == "cuda" else 1, "torch": torch.__version__,
                     "results": results})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
