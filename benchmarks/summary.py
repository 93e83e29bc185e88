"""Render ``results/bench/summary.md`` from the benchmarks' JSON files, one section per file, so that a
number quoted about speed is read from the measurement that made it, never typed (``make bench`` runs it
last; a test checks the committed page against a fresh render).

    python benchmarks/summary.py [--bench results/bench]

A file of a shape it does not know is listed with its benchmark's name and a pointer to the file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from qsd.io import write_text

ROOT = Path(__file__).resolve().parents[1]


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(x) for x in row) + " |" for row in rows), ""]


def _regularisers(d: dict) -> list[str]:
    """Forward + backward of each regulariser on one tensor: median ms and its ratio to dropout."""
    rows = [[f"{'x'.join(map(str, r['shape']))} {r['dtype']}", case, f"{ms:.3f}", f"{r['ratio_to_dropout'][case]:.2f}x"]
            for r in d["results"] for case, ms in r["median_ms"].items()]
    return [f"Rate {d['rate']}, median of {d['repeats']} samples of {d['inner']} step(s).", "",
            *_table(["tensor", "case", "median ms", "x dropout"], rows)]


def _step(d: dict) -> list[str]:
    """One training step per regulariser: time and saved-activation memory relative to dropout."""
    rows = [[model, reg, f"{v['step_ms']:.2f}", f"{v['time_vs_dropout']:.2f}x", f"{v['saved_MB']:.1f}",
             f"{v['memory_vs_dropout']:.2f}x"] for model, regs in d["models"].items() for reg, v in regs.items()]
    return [f"Batch {d['batch']}, median of {d['repeats']} steps.", "",
            *_table(["model", "regulariser", "step ms", "time x dropout", "saved MB", "memory x dropout"], rows)]


def _trainer(d: dict) -> list[str]:
    """``qsd-train``'s loop against a hand-written loop and the torchvision DataLoader pattern."""
    rows = [[model, f"{v['seconds']['qsd']:.2f}", f"{v['seconds']['hand']:.2f}", f"{v['seconds']['dataloader']:.2f}",
             f"{v['qsd_vs_hand']:.3f}x", f"{v['dataloader_vs_qsd']:.2f}x"] for model, v in d["models"].items()]
    return [f"{d['steps']} steps, {d['rounds']} rounds, {d['threads']} threads.", "",
            *_table(["model", "qsd-train s", "hand loop s", "DataLoader s", "qsd-train / hand", "DataLoader / qsd-train"],
                    rows)]


def _jobs(d: dict) -> list[str]:
    """The suite's throughput by JOBS."""
    rows = [[jobs, v["runs"], f"{v['wall_s']:.1f}", f"{v['runs_per_hour']:.0f}"] for jobs, v in d["jobs"].items()]
    return [f"{d['cores']} cores.", "", *_table(["JOBS", "runs", "wall s", "runs an hour"], rows)]


def _graphs(d: dict) -> list[str]:
    """CUDA graphs against eager, ms per batch of a pass."""
    rows = [[e, reg, p, v["batch"], f"{v['eager_ms']:.2f}", f"{v['graphs_ms']:.2f}", f"{v['eager_vs_graphs']:.2f}x"]
            for e, regs in d["experiments"].items() for reg, passes in regs.items() for p, v in passes.items()]
    return _table(["experiment", "regulariser", "pass", "batch", "eager ms", "captured ms", "eager / captured"], rows)


def _stack(d: dict) -> list[str]:
    """Stacked training against the same runs one after another."""
    memory = any("peak_mib_per_member" in r for r in d["rows"])
    rows = [[r["experiment"], r["members"], f"{r['one_by_one_s']:.2f}", f"{r['stacked_s']:.2f}", f"{r['speedup']:.2f}x",
             *([f"{r['peak_mib_per_member']:.0f}"] if memory else [])] for r in d["rows"]]
    return [f"Scale {d['scale']}, {d['steps']} timed training steps a run, {d['threads']} thread(s).", "",
            *_table(["experiment", "runs", "one by one s", "stacked s", "speed-up",
                     *(["peak MiB a run"] if memory else [])], rows)]


def _stack_suite(d: dict) -> list[str]:
    """A suite's figure trained stacked and one run a process: wall times and how far the runs agree."""
    rows = [[stack, d["runs"], d["jobs"], f"{wall:.0f}", f"{d['wall_s']['1'] / wall:.2f}x"] for stack, wall in d["wall_s"].items()]
    a = d["agreement"]
    return [f"`{d['command']}` ({d['date']}); stacks made: {d['stacks_made']}.", "",
            *_table(["STACK", "runs", "JOBS", "wall s", "speed-up"], rows),
            f"Agreement: {a['values_compared']} per-epoch losses within {a['max_relative_difference']:.1e} (relative); "
            f"{a['test_errors_equal']} test errors equal; table1: {a['table1_mlp']}.", ""]


SHAPES = {"regulariser forward+backward": _regularisers, "training step per regulariser": _step,
          "trainer overhead": _trainer, "suite throughput (smoke MLP runs of fig2-3)": _jobs,
          "CUDA graphs vs eager, ms per batch of a pass": _graphs,
          "stacked training against one run at a time": _stack,
          "suite stacked against one run a process": _stack_suite}


def render(bench: Path) -> str:
    out = ["# Benchmarks, as last measured", "",
           "Rendered by `benchmarks/summary.py` (run by `make bench`) from the JSON files in this folder; do not edit. "
           "Each section is one file: its device, torch version and settings are the file's own. How to read them: "
           "[docs/speed.md](../../docs/speed.md).", ""]
    for path in sorted(bench.glob("*.json")):
        d = json.loads(path.read_text())
        where = ", ".join(str(d[k]) for k in ("device_name", "device") if k in d)[:80] or "device not recorded"
        out += [f"## {path.name}", "", f"{d.get('benchmark', 'benchmark')}: {where}; torch {d.get('torch', 'n/a')}.", ""]
        shape = SHAPES.get(d.get("benchmark", ""))
        out += shape(d) if shape else [f"Not tabulated here: see [{path.name}]({path.name}) and the kernel's page, "
                                       "[qsd_cuda_kernel.md](qsd_cuda_kernel.md).", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=ROOT / "results" / "bench")
    args = ap.parse_args()
    write_text(args.bench / "summary.md", render(args.bench))
    print(f"wrote {args.bench / 'summary.md'}")


if __name__ == "__main__":
    main()
