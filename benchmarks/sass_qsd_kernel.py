"""Compile the fused QSD kernel for a GPU architecture without a GPU and print its static profile:
registers per thread, SASS instructions, hardware-function (MUFU) instructions, barriers, shared
memory loads/stores and Triton layout conversions. A proxy for speed, not a timing: use it to compare
kernel versions on a machine without a GPU, then time them with bench_regularisers.py on one.

    python benchmarks/sass_qsd_kernel.py [--arch 90 --dtype float32 --cv 0.5 --sites 4]

Needs only the pip-installed Triton (its bundled ptxas, nvdisasm and cuobjdump).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from qsd.regularisers import qsd_cuda

TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
POINTER = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}


def compile_kernel(arch: int, dtype: str, cv: float, sites: int):
    """The kernel as qsd_scale launches it for a tensor of ``dtype`` whose size is a multiple of 16."""
    signature = {"x_ptr": POINTER[dtype], "y_ptr": POINTER[dtype], "numel": "i64", "key_ptr": "*i64",
                 "t_ptr": "*i64", "scratch_ptr": "*i64", "inv_cv2": "fp32", "gamma_scale": "fp32", "scale": "fp32",
                 "N_SITES": "constexpr", "FIXED_QUANTA": "constexpr", "MAY_BOOST": "constexpr",
                 "G": "constexpr", "S": "constexpr", "CAP": "constexpr", "BATCH": "constexpr"}
    constants = {"N_SITES": sites, "FIXED_QUANTA": cv == 0.0, "MAY_BOOST": cv > 1.0,
                 "G": qsd_cuda.GROUPS, "S": qsd_cuda.SLOW, "CAP": qsd_cuda.queue_entries(),
                 "BATCH": qsd_cuda.BATCH}
    aligned = {(i,): [["tt.divisibility", 16]] for i in range(6)}  # pointers and numel, as Triton specialises them
    source = ASTSource(qsd_cuda._qsd_scale_kernel, signature, constants, aligned)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": qsd_cuda.WARPS})


def profile(kernel) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp, "k.cubin")
        cubin.write_bytes(kernel.asm["cubin"])
        sass = subprocess.run([TOOLS / "nvdisasm", "-c", cubin], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([TOOLS / "cuobjdump", "--dump-resource-usage", cubin], capture_output=True,
                               text=True, check=True).stdout
    ops = [line.split("*/", 1)[1].strip() for line in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/", line)]
    return {"registers": int(re.search(r"REG:(\d+)", usage).group(1)),
            "stack_bytes": int(re.search(r"STACK:(\d+)", usage).group(1)),
            "instructions": len(ops),
            "mufu": sum("MUFU" in op for op in ops),
            "barriers": sum(re.search(r"\bBAR\b", op) is not None for op in ops),
            "shared_ld_st": sum(re.search(r"\b(LDS|STS)\b", op) is not None for op in ops),
            "layout_conversions": kernel.asm["ttgir"].count("ttg.convert_layout")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    ap.add_argument("--dtype", default="float32", choices=sorted(POINTER))
    ap.add_argument("--cv", type=float, default=0.5)
    ap.add_argument("--sites", type=int, default=4)
    args = ap.parse_args()
    stats = profile(compile_kernel(args.arch, args.dtype, args.cv, args.sites))
    print(f"sm_{args.arch} {args.dtype} cv={args.cv:g} n={args.sites}; GROUPS={qsd_cuda.GROUPS} "
          f"WARPS={qsd_cuda.WARPS} (triton {triton.__version__})")
    for name, value in stats.items():
        print(f"  {name:20s} {value}")


if __name__ == "__main__":
    main()
