"""Sweep the fused QSD kernel's launch constants on a GPU: forward+backward time of each setting
relative to torch's dropout on the same tensor.

    python benchmarks/tune_qsd_kernel.py [--shapes 4096x1024,65536x4096 --dtypes float32,bfloat16]

The constants are ``qsd_cuda``'s GROUPS (groups of four elements per block), WARPS (per program),
PROGRAMS_PER_SM (the persistent grid's size), SLOW (groups per tile of the rejected proposals) and
BATCH (blocks between two looks at the queue of them);
none changes the mask, only its speed. Prints the
device, absolute medians and ratios, best first per tensor, and writes
results/bench/qsd_kernel_tuning_cuda.json.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import torch
from bench_regularisers import time_case

from qsd.io import write_json
from qsd.provenance import device_name
from qsd.regularisers import build


def median_ms(module, x, grad, repeats: int, inner: int) -> float:
    device = x.device
    time_case(module, x, grad, device, 1)  # compiles the kernel for this setting
    return 1e3 * statistics.median(time_case(module, x, grad, device, inner) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x1024,65536x4096", help="comma-separated ROWSxCOLS")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--cvs", default="0.5,0", help="quantal-size CVs (0: the fixed-quanta path)")
    ap.add_argument("--groups", default="128,256,512")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--programs-per-sm", default="4,8,16,32")
    ap.add_argument("--slow", default="32", help="groups per tile of the rejected proposals")
    ap.add_argument("--batch", default="1,4", help="blocks between two looks at the queue")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("results/bench/qsd_kernel_tuning_cuda.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("tune_qsd_kernel.py needs a CUDA GPU (the Triton kernel's constants have no CPU meaning)")
    from qsd.regularisers import qsd_cuda

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",")]

    names = ("GROUPS", "WARPS", "PROGRAMS_PER_SM", "SLOW", "BATCH")
    settings = list(itertools.product(*(ints(v) for v in (args.groups, args.warps, args.programs_per_sm, args.slow,
                                                            args.batch))))
    default = tuple(getattr(qsd_cuda, n) for n in names)
    name = device_name(torch.device("cuda"))
    print(f"device: {name}; torch {torch.__version__}; median of {args.repeats} samples of {args.inner} "
          f"forward+backward steps; current constants {names} = {default}")
    results = []
    for shape, dtype, cv in itertools.product(args.shapes.split(","), args.dtypes.split(","), args.cvs.split(",")):
        x = torch.randn(*map(int, shape.split("x")), device="cuda", dtype=getattr(torch, dtype), requires_grad=True)
        grad = torch.ones_like(x)
        dropout = median_ms(build("dropout", rate=0.5).train(), x, grad, args.repeats, args.inner)
        qsd = build("qsd", rate=0.5, cv=float(cv)).train().cuda()
        rows = []
        for setting in settings:
            for n, v in zip(names, setting):
                setattr(qsd_cuda, n, v)
            ms = median_ms(qsd, x, grad, args.repeats, args.inner)
            rows.append({**{n.lower(): v for n, v in zip(names, setting)}, "ms": ms, "ratio": ms / dropout})
        for n, v in zip(names, default):
            setattr(qsd_cuda, n, v)
        rows.sort(key=lambda r: r["ms"])
        results.append({"shape": shape, "dtype": dtype, "cv": float(cv), "dropout_ms": dropout, "settings": rows})
        print(f"\n{shape} {dtype} cv={cv}: dropout {dropout:.3f} ms")
        for r in rows:
            mark = "  (current)" if tuple(r[n.lower()] for n in names) == default else ""
            print("  " + " ".join(f"{n} {r[n.lower()]:4d}" for n in names) +
                  f"  {r['ms']:8.3f} ms  {r['ratio']:5.2f} x dropout{mark}")
        del x, grad
    write_json(args.out, {"benchmark": "QSD kernel launch constants, forward+backward", "device_name": name,
                          "torch": torch.__version__, "repeats": args.repeats, "inner": args.inner, "results": results})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
