"""Trainer overhead: qsd's training loop against (a) a minimal hand-written loop over the same
in-memory tensors with the same model, and (b) the common torchvision-dataset + per-sample
transforms + DataLoader pattern (as in the PyTorch MNIST example). Real MNIST, dropout, batch 128.

    python benchmarks/bench_trainer.py [--steps 300] [--models mlp cnn]

Each variant runs ``--steps`` SGD steps after a warm-up, interleaved in rounds; ratios of medians are
printed last and written to results/bench/trainer.json. Needs `qsd-data fetch mnist`.
"""
from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from qsd.data import load
from qsd.io import write_json
from qsd.tasks import build_task
from qsd.train import build_model_from, build_optimiser, run_epoch

CFG = {"mlp": {"name": "mlp", "widths": [1024, 1024]}, "cnn": {"name": "cnn", "channels": [32, 64, 128], "fc": 256,
                                                              "batch_norm": False}}


def config(model: str, steps: int):
    return OmegaConf.create({
        "name": "bench", "seed": 0, "device": "cpu", "rates": {"input": 0.2, "hidden": 0.5, "conv": 0.25},
        "regulariser": {"name": "dropout", "granularity": "unit"}, "model": CFG[model],
        "data": {"name": "mnist", "limit_train": None, "limit_eval": 1000, "augment": False, "crop_pad": 4},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                  "schedule": "constant", "milestones": [], "gamma": 0.1, "decay_start": 6, "decay": 1.2, "clip": None},
        "train": {"epochs": 1, "batch_size": 128, "eval_batch_size": 1000, "max_steps": steps, "amp": False}})


def suite_loop(cfg, task, model, opt) -> float:
    t0 = time.perf_counter()
    run_epoch(model, task, "train", cfg, torch.device("cpu"), opt)
    return time.perf_counter() - t0


def hand_loop(x: torch.Tensor, y: torch.Tensor, model, opt, steps: int, bs: int) -> float:
    """The minimal loop: shuffle indices, slice, normalise, step."""
    t0 = time.perf_counter()
    model.train()
    order = torch.randperm(len(y))
    for i in range(steps):
        idx = order[i * bs:(i + 1) * bs]
        xb = x[idx].float().div_(255).sub_(0.1307).div_(0.3081)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def torchvision_root(x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write the same images as torchvision's MNIST raw IDX files (so no download is needed)."""
    root = Path(tempfile.mkdtemp()) / "MNIST" / "raw"
    root.mkdir(parents=True)
    for name, arr, dims in (("train-images-idx3-ubyte", x[:, 0].numpy(), (len(x), 28, 28)),
                            ("train-labels-idx1-ubyte", y.to(torch.uint8).numpy(), (len(y),)),
                            ("t10k-images-idx3-ubyte", x[:10, 0].numpy(), (10, 28, 28)),
                            ("t10k-labels-idx1-ubyte", y[:10].to(torch.uint8).numpy(), (10,))):
        header = struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
        (root / name).write_bytes(header + arr.tobytes())
    return root.parent.parent


def dataloader_loop(root: Path, model, opt, steps: int, bs: int) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    loader = torch.utils.data.DataLoader(datasets.MNIST(str(root), train=True, download=False, transform=tf),
                                         batch_size=bs, shuffle=True)
    t0 = time.perf_counter()
    model.train()
    for i, (xb, yb) in enumerate(loader):
        if i == steps:
            break
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--out", type=Path, default=Path("results/bench/trainer.json"))
    args = ap.parse_args()
    raw = load("mnist", "train")
    x, y = raw["x"], raw["y"]
    tv_root = torchvision_root(x, y)
    report = {"benchmark": "trainer overhead", "steps": args.steps, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "models": {}}
    for name in args.models:
        cfg = config(name, args.steps)
        torch.manual_seed(0)
        task = build_task(cfg.data, cfg.train, 0, torch.device("cpu"), None)
        times = {"qsd": [], "hand": [], "dataloader": []}
        for r in range(args.rounds + 1):
            for variant in times:
                torch.manual_seed(0)
                model = build_model_from(cfg, task.dims)
                opt, _ = build_optimiser(cfg, model)
                if variant == "qsd":
                    t = suite_loop(cfg, task, model, opt)
                elif variant == "hand":
                    t = hand_loop(x, y, model, opt, args.steps, 128)
                else:
                    t = dataloader_loop(tv_root, model, opt, args.steps, 128)
                if r > 0:  # round 0 warms up
                    times[variant].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        report["models"][name] = {"seconds": med, "qsd_vs_hand": med["qsd"] / med["hand"],
                                  "dataloader_vs_qsd": med["dataloader"] / med["qsd"]}
    write_json(args.out, report)
    for name, m in report["models"].items():
        s = m["seconds"]
        print(f"{name}: {args.steps} steps  qsd {s['qsd']:.2f} s  hand loop {s['hand']:.2f} s  "
              f"DataLoader {s['dataloader']:.2f} s | qsd/hand {m['qsd_vs_hand']:.3f}  "
              f"DataLoader/qsd {m['dataloader_vs_qsd']:.2f}x")


if __name__ == "__main__":
    main()
