"""Where the fused QSD kernel's time goes on a GPU: the shipped kernel timed beside copies of it with
one part taken out, each as a multiple of torch dropout's forward+backward on the same tensor.

    python benchmarks/ablate_qsd_kernel.py [--shapes 16384x4096,65536x4096 --dtypes float32,bfloat16]
    git show 2fcb7c1:src/qsd/regularisers/qsd_cuda.py > /tmp/old.py
    python benchmarks/ablate_qsd_kernel.py --compare 2fcb7c1=/tmp/old.py   # another version beside them

The copies are text edits of ``qsd_cuda.py`` (an edit that no longer applies fails loudly). Only
``kernel`` (and a --compare) computes QSD's mask; the others compute other masks, so they bound the
cost of a part rather than offer a replacement:

  kernel            the shipped kernel
  round0            without the rejected-proposal tiles: round 0's proposal is kept where it was rejected
  round0_bare       round0 without the queue (the count's atomics and the ring's stores); then nothing
                    reads the acceptance, and the compiler drops it with the Philox block of acceptance
                    uniforms: a floor below any exact sampler of this function, not round 0's cost
  no_exact          round0 with the acceptance test cut to its squeeze (no two logs per element)
  philox7           round0 with 7 Philox rounds instead of 10 (a different random function)
  philox7_no_exact  both

A variant's time is ``qsd_scale`` on x and then on the gradient (what the forward and backward
passes launch), without the autograd and module overhead that ``bench_regularisers.py`` includes;
dropout runs through autograd as usual. Variants are timed round-robin in one process. Prints the
device and absolute medians, checks each variant's output against the kernel's (the fraction of
elements that differ), and writes results/bench/qsd_kernel_ablation_cuda.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import tempfile
from pathlib import Path

import torch
from bench_regularisers import time_case

from qsd.io import write_json
from qsd.provenance import device_name
from qsd.regularisers import build

KERNEL = Path(__file__).resolve().parents[1] / "src/qsd/regularisers/qsd_cuda.py"
QUEUE = "        if not FIXED_QUANTA:\n            last = blk >= n_blocks"
BOOKKEEPING = re.compile(r"\n {16}rejected = tl\.sum\(.*?mask=has\)", re.S)
ACCEPT = "    return d * v, positive & (squeeze | exact)"
SAME_AT_CV0 = ("round0", "round0_bare", "no_exact", "philox7_no_exact")  # the fixed-quanta path has no Gamma


def _edit(src: str, old: str | re.Pattern, new: str) -> str:
    out, n = (old.subn(new, src) if isinstance(old, re.Pattern) else (src.replace(old, new), src.count(old)))
    if n == 0:
        raise SystemExit(f"ablate_qsd_kernel.py: the kernel's source no longer has {getattr(old, 'pattern', old)!r}; "
                         "update this benchmark's edits")
    return out


def round0(src: str) -> str:
    return _edit(src, QUEUE, "        if False:\n            last = blk >= n_blocks")


def bare(src: str) -> str:
    return _edit(round0(src), BOOKKEEPING, "")


def no_exact(src: str) -> str:
    return _edit(src, ACCEPT, "    return d * v, positive & squeeze")


def philox7(src: str) -> str:
    return _edit(src, re.compile(r"tl\.philox\(([^()]*)\)"), r"tl.philox(\1, n_rounds=7)")


def variants(src: str) -> dict[str, str]:
    return {"kernel": src, "round0": round0(src), "round0_bare": bare(src), "no_exact": no_exact(round0(src)),
            "philox7": philox7(round0(src)), "philox7_no_exact": philox7(no_exact(round0(src)))}


def load(name: str, src: str, folder: Path):
    """Import a kernel source as a module (Triton reads a jitted function's source from its file)."""
    path = folder / f"qsd_cuda_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"qsd_cuda_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4096x1024,16384x4096,65536x4096", help="comma-separated ROWSxCOLS")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--cvs", default="0.5,0", help="quantal-size CVs (0: the fixed-quanta path, timed for kernel, philox7)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                    help="also time another version of qsd_cuda.py (e.g. an earlier commit's)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--inner", type=int, default=5, help="forward+backward steps per sample")
    ap.add_argument("--out", type=Path, default=Path("results/bench/qsd_kernel_ablation_cuda.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("ablate_qsd_kernel.py needs a CUDA GPU")
    device = torch.device("cuda")
    sources = variants(KERNEL.read_text())
    for spec in args.compare:
        name, _, path = spec.partition("=")
        sources[name] = Path(path).read_text()
    with tempfile.TemporaryDirectory() as folder:
        modules = {name: load(name, src, Path(folder)) for name, src in sources.items()}
        name = device_name(device)
        print(f"device: {name}; torch {torch.__version__}; median of {args.repeats} samples of {args.inner} steps")
        qsd = build("qsd", rate=0.5).to(device)
        key = torch.tensor([1234567], dtype=torch.int64, device=device)
        differ = {}
        for cv in (0.5, 2.0, 0.0):
            x = torch.randn(16384, 4096, device=device)
            ref = modules["kernel"].qsd_scale(x, key, qsd.thresholds, cv, qsd._scale)
            differ[str(cv)] = {k: (m.qsd_scale(x, key, qsd.thresholds, cv, qsd._scale) != ref).float().mean().item()
                               for k, m in modules.items() if k != "kernel"}
            print(f"cv {cv}: fraction of elements that differ from kernel's: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in differ[str(cv)].items()))
        dropout = build("dropout", rate=0.5).train()
        results = []
        for shape in (tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")):
            for dtype in args.dtypes.split(","):
                for cv in (float(c) for c in args.cvs.split(",")):
                    results.append(_time(shape, getattr(torch, dtype), cv, modules, dropout, qsd, key, args))
                    r = results[-1]
                    print(f"{'x'.join(map(str, shape))} {dtype} cv={cv}: dropout {r['ms']['dropout']:.3f} ms; " +
                          ", ".join(f"{k} {v:.3f} ({r['ratio'][k]:.2f}x)" for k, v in r["ms"].items() if k != "dropout"),
                          flush=True)
    write_json(args.out, {"benchmark": "QSD kernel ablation, forward+backward", "device_name": name,
                          "torch": torch.__version__, "repeats": args.repeats, "inner": args.inner,
                          "fraction_differing": differ, "results": results})
    print(f"\nwrote {args.out}")


def _time(shape, dtype, cv, modules, dropout, qsd, key, args) -> dict:
    device = key.device
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.ones_like(x)

    def kernel_steps(module):
        def sample(inner: int) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                module.qsd_scale(x.detach(), key, qsd.thresholds, cv, qsd._scale)
                module.qsd_scale(grad, key, qsd.thresholds, cv, qsd._scale)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / inner
        return sample

    names = [k for k in modules if cv or k not in SAME_AT_CV0]
    cases = {"dropout": lambda inner: 1e3 * time_case(dropout, x, grad, device, inner),
             **{k: kernel_steps(modules[k]) for k in names}}
    for sample in cases.values():
        sample(2)  # compiles, warms up
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, sample in cases.items():
            times[k].append(sample(args.inner))
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": list(shape), "dtype": str(dtype).removeprefix("torch."), "cv": cv, "ms": ms,
            "ratio": {k: v / ms["dropout"] for k, v in ms.items()}}


if __name__ == "__main__":
    main()
