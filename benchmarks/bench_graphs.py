"""CUDA graphs against eager training, per pass of the trainer's own loop (``train.run_epoch``), on the
paper-scale recipes: the MNIST MLP and CNN, and the medium LSTM on PTB (training windows, and its
one-stream validation windows). Needs CUDA and the data (`qsd-data fetch mnist ptb`).

    python benchmarks/bench_graphs.py [--steps 400] [--rounds 3] [--experiments mlp_mnist cnn_mnist lstm_ptb]

Each pass runs ``--steps`` batches (the capture included, as every epoch of a run pays it), eager and
captured alternating in rounds so that machine noise hits both; per experiment and regulariser the
median ms per batch of each, and the ratio eager / graphs, are printed with the GPU's name and written
to results/bench/graphs_cuda.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from qsd.data import data_root
from qsd.io import write_json
from qsd.provenance import device_name
from qsd.tasks import build_task
from qsd.train import CONFIG_DIR, build_model_from, build_optimiser, run_epoch


def timed_pass(cfg, task, split: str, graphs: bool, device) -> float:
    """Seconds a batch of one pass over ``split`` takes (training on it where it is "train")."""
    torch.manual_seed(0)
    model = build_model_from(cfg, task.dims).to(device)
    opt = build_optimiser(cfg, model, capturable=graphs)[0] if split == "train" else None
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.set_grad_enabled(split == "train"):
        run_epoch(model, task, split, cfg, device, opt, graphs=graphs)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / min(cfg.train.max_steps, len(task.splits[split]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400, help="batches a pass")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--experiments", nargs="+", default=["mlp_mnist", "cnn_mnist", "lstm_ptb"])
    ap.add_argument("--regularisers", nargs="+", default=["dropout", "qsd"])
    ap.add_argument("--out", type=Path, default=Path("results/bench/graphs_cuda.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_graphs.py needs a CUDA device: CUDA graphs do not exist on a CPU")
    device = torch.device("cuda")
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.steps} batches a pass, median of "
          f"{args.rounds} rounds")
    report = {"benchmark": "CUDA graphs vs eager, ms per batch of a pass", "device_name": device_name(device),
              "torch": torch.__version__, "steps": args.steps, "rounds": args.rounds, "experiments": {}}
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for experiment in args.experiments:
            for reg in args.regularisers:
                cfg = compose("train", overrides=[f"experiment={experiment}", f"regulariser={reg}", "scale=paper",
                                                  "device=cuda", f"train.max_steps={args.steps}"])
                task = build_task(cfg.data, cfg.train, 0, device, str(data_root(cfg.paths.data)))
                splits = ["train", "valid"] if task.kind == "lm" else ["train"]
                for split in splits:
                    times = {False: [], True: []}
                    for _ in range(args.rounds + 1):  # the first round warms up (cuDNN, cuBLAS, the allocator)
                        for graphs in times:
                            times[graphs].append(timed_pass(cfg, task, split, graphs, device))
                    eager, graphed = (1e3 * statistics.median(times[g][1:]) for g in (False, True))
                    row = {"eager_ms": eager, "graphs_ms": graphed, "eager_vs_graphs": eager / graphed,
                           "batch": cfg.train.batch_size if split == "train" else cfg.train.eval_batch_size}
                    report["experiments"].setdefault(experiment, {}).setdefault(reg, {})[split] = row
                    print(f"{experiment:10s} {reg:8s} {split:6s} batch {row['batch']:4d}: eager {eager:7.3f} ms, "
                          f"graphs {graphed:7.3f} ms a batch: {eager / graphed:5.2f}x", flush=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
