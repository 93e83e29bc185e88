"""Training-step cost of each regulariser relative to dropout, on the paper's MLP and plain CNN.

    python benchmarks/bench_step.py [--repeats 30] [--out results/cpu/cost.json]

For each model, one SGD step (forward, backward, update) on a random batch is timed round-robin
across regularisers (same process, interleaved, so machine noise hits all alike); memory is the
bytes autograd saves for the backward pass (``saved_tensors_hooks``), which is where a mask lives.
Prints ratios last and writes JSON for table2_cost.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from qsd.io import write_json
from qsd.provenance import device_name
from qsd.models import CNN, MLP
from qsd.regularisers import build

REGS = ["none", "dropout", "gaussian", "qsd"]
RATES = {"input": 0.2, "hidden": 0.5, "conv": 0.25}


def make(model: str, reg: str) -> torch.nn.Module:
    factory = lambda slot, **kw: build(reg, rate=RATES[slot], **kw)
    if model == "mlp":
        return MLP(factory, 784, [1024, 1024], 10)
    return CNN(factory, 1, 28, 10)


def saved_bytes(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None, help="default results/bench/step.json (step_cuda.json on CUDA)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    args.out = args.out or Path("results/bench", "step_cuda.json" if dev.type == "cuda" else "step.json")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"device: {device_name(dev)}; torch {torch.__version__}; batch {args.batch}; median of {args.repeats} steps")
    report = {"benchmark": "training step per regulariser", "device": str(dev), "device_name": device_name(dev),
              "threads": torch.get_num_threads(),
              "repeats": args.repeats, "batch": args.batch, "torch": torch.__version__, "models": {}}
    for model in ("mlp", "cnn"):
        torch.manual_seed(0)
        x = torch.randn(args.batch, 1, 28, 28, device=dev)
        y = torch.randint(0, 10, (args.batch,), device=dev)
        nets = {r: make(model, r).to(dev).train() for r in REGS}
        opts = {r: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for r, n in nets.items()}
        times = {r: [] for r in REGS}
        for i in range(args.repeats + 3):
            for r in REGS:
                sync()
                t0 = time.perf_counter()
                opts[r].zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(nets[r](x), y).backward()
                opts[r].step()
                sync()
                if i >= 3:
                    times[r].append(time.perf_counter() - t0)
        med = {r: statistics.median(v) for r, v in times.items()}
        mem = {r: saved_bytes(nets[r], x, y) for r in REGS}
        report["models"][model] = {r: {"step_ms": 1e3 * med[r], "time_vs_dropout": med[r] / med["dropout"],
                                       "saved_MB": mem[r] / 2**20, "memory_vs_dropout": mem[r] / mem["dropout"]}
                                   for r in REGS}
    write_json(args.out, report)
    for model, regs in report["models"].items():
        for r, v in regs.items():
            print(f"{model:4s} {r:9s} {v['step_ms']:8.2f} ms  {v['time_vs_dropout']:5.2f} x dropout time  "
                  f"{v['saved_MB']:7.2f} MB saved  {v['memory_vs_dropout']:5.2f} x dropout memory")


if __name__ == "__main__":
    main()
