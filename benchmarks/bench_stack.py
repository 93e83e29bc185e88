"""Stacked training against one run at a time: the time G runs' training steps take as one stacked model
(``stack.py``) over the time the same G runs take one after another, per experiment, on real data.

    python benchmarks/bench_stack.py [--scale cpu] [--members 1 5 15] [--steps 40] [--out results/bench/stack.json]

Each member is a run of the experiment (seeds 0.., regularisers none / dropout / QSD in turn) built as the
trainer builds it; ``--steps`` training steps (forward, backward, update) of each are timed after a few
untimed ones, through the trainer's own ``run_epoch``. One CPU thread (``train.threads``' default) unless
``--threads``. On CUDA it also prints the peak memory per member. Prints ratios last and writes JSON.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from qsd.data import data_root
from qsd.io import write_json
from qsd.provenance import device_name
from qsd.stack import Members, stack_model
from qsd.tasks import StackedTask, build_task
from qsd.train import CONFIG_DIR, build_model_from, build_optimiser, run_epoch, use_cuda_graphs

EXPERIMENTS = ["mlp_mnist", "cnn_fashion", "lstm_ptb_small"]
REGS = ["none", "dropout", "qsd"]


def members(experiment: str, scale: str, count: int, steps: int, device: str) -> list:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return [compose("train", overrides=[f"experiment={experiment}", f"scale={scale}", f"seed={g}",
                                            f"regulariser={REGS[g % len(REGS)]}", f"train.max_steps={steps}",
                                            f"device={device}"]) for g in range(count)]


def timed(cfgs: list, device: torch.device, stacked: bool, warmup: int) -> float:
    """Seconds the members' timed steps take: as one stack, or one after another; each as the trainer
    would train it (on CUDA captured in a CUDA graph where ``train.cuda_graphs`` says so)."""
    root = str(data_root(cfgs[0].paths.data))
    built = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        task = build_task(cfg.data, cfg.train, cfg.seed, device, root)
        built.append((task, build_model_from(cfg, task.dims).to(device), torch.get_rng_state()))
    jobs = [(StackedTask([t for t, _, _ in built]), stack_model([m for _, m, _ in built],
             Members([r for _, _, r in built] if device.type == "cpu" else None)))] if stacked \
        else [(t, m) for t, m, _ in built]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    graphs = use_cuda_graphs(cfgs[0], device)
    total = 0.0
    for task, model in jobs:
        opt, _ = build_optimiser(cfgs[0], model, capturable=graphs)
        warm = cfgs[0].copy()
        warm.train.max_steps = warmup
        run_epoch(model, task, "train", warm, device, opt, graphs=graphs)
        sync()
        t0 = time.perf_counter()
        run_epoch(model, task, "train", cfgs[0], device, opt, graphs=graphs)
        sync()
        total += time.perf_counter() - t0
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--experiments", nargs="*", default=EXPERIMENTS)
    ap.add_argument("--members", nargs="*", type=int, default=[5, 15])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None, help="default results/bench/stack.json (stack_cuda.json on CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    args.out = args.out or Path("results/bench", "stack_cuda.json" if dev.type == "cuda" else "stack.json")
    print(f"device: {device_name(dev)}; torch {torch.__version__}; {args.threads} thread(s); scale {args.scale}; "
          f"{args.steps} timed steps a run")
    rows = []
    for experiment in args.experiments:
        for g in args.members:
            cfgs = members(experiment, args.scale, g, args.steps, args.device)
            one_by_one = timed(cfgs, dev, False, 3)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            stacked = timed(cfgs, dev, True, 3)  # its peak: the stack's, with the members' own models and data
            row = {"experiment": experiment, "members": g, "one_by_one_s": one_by_one, "stacked_s": stacked,
                   "speedup": one_by_one / stacked}
            if dev.type == "cuda":
                row["peak_mib_per_member"] = torch.cuda.max_memory_reserved(dev) / 2**20 / g
            rows.append(row)
            print(f"{experiment:16s} G={g:3d}  one by one {one_by_one:8.2f} s  stacked {stacked:8.2f} s  "
                  f"speed-up {row['speedup']:.2f}x", flush=True)
    write_json(args.out, {"benchmark": "stacked training against one run at a time", "device": str(dev),
                          "device_name": device_name(dev), "torch": torch.__version__, "threads": args.threads,
                          "scale": args.scale, "steps": args.steps, "rows": rows})
    print("\nspeed-up of a stack over the same runs one by one (>1: the stack is faster):")
    for r in rows:
        print(f"  {r['experiment']:16s} G={r['members']:3d}  {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
