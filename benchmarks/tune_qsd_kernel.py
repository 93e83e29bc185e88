"""Sweep the fused QSD kernel's launch constants on a GPU: forward+backward time of each setting
relative to torch's dropout on the same tensor.

    python benchmarks/tune_qsd_kernel.py [--shapes 4096x1024,65536x4096 --dtypes float32,bfloat16]

The constants are ``qsd_cuda``'s GROUPS (groups of four elements per block), WARPS (per program)
and PROGRAMS_PER_SM (the persistent grid's size); none changes the mask, only its speed. Prints the
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
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("results/bench/qsd_kernel_tuning_cuda.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("tune_qsd_kernel.py needs a CUDA GPU (the Triton kernel's constants have no CPU meaning)")
    from qsd.regularisers import qsd_cuda

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",")]

    settings = list(itertools.product(ints(args.groups), ints(args.warps), ints(args.programs_per_sm)))
    default = (qsd_cuda.GROUPS, qsd_cuda.WARPS, qsd_cuda.PROGRAMS_PER_SM)
    name = device_name(torch.device("cuda"))
    print(f"device: {name}; torch {torch.__version__}; median of {args.repeats} samples of {args.inner} "
          f"forward+backward steps; current constants (GROUPS, WARPS, PROGRAMS_PER_SM) = {default}")
    results = []
    for shape, dtype, cv in itertools.product(args.shapes.split(","), args.dtypes.split(","), args.cvs.split(",")):
        x = torch.randn(*map(int, shape.split("x")), device="cuda", dtype=getattr(torch, dtype), requires_grad=True)
        grad = torch.ones_like(x)
        dropout = median_ms(build("dropout", rate=0.5).train(), x, grad, args.repeats, args.inner)
        qsd = build("qsd", rate=0.5, cv=float(cv)).train().cuda()
        rows = []
        for groups, warps, programs in settings:
            qsd_cuda.GROUPS, qsd_cuda.WARPS, qsd_cuda.PROGRAMS_PER_SM = groups, warps, programs
            ms = median_ms(qsd, x, grad, args.repeats, args.inner)
            rows.append({"groups": groups, "warps": warps, "programs_per_sm": programs, "ms": ms, "ratio": ms / dropout})
        qsd_cuda.GROUPS, qsd_cuda.WARPS, qsd_cuda.PROGRAMS_PER_SM = default
        rows.sort(key=lambda r: r["ms"])
        results.append({"shape": shape, "dtype": dtype, "cv": float(cv), "dropout_ms": dropout, "settings": rows})
        print(f"\n{shape} {dtype} cv={cv}: dropout {dropout:.3f} ms")
        for r in rows:
            mark = "  (current)" if (r["groups"], r["warps"], r["programs_per_sm"]) == default else ""
            print(f"  GROUPS {r['groups']:4d} WARPS {r['warps']} PROGRAMS_PER_SM {r['programs_per_sm']:3d}  "
                  f"{r['ms']:8.3f} ms  {r['ratio']:5.2f} x dropout{mark}")
        del x, grad
    write_json(args.out, {"benchmark": "QSD kernel launch constants, forward+backward", "device_name": name,
                          "torch": torch.__version__, "repeats": args.repeats, "inner": args.inner, "results": results})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
