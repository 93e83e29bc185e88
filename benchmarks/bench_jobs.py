"""Suite throughput: runs per hour of the smoke MLP runs of figures 2-3 through ``qsd-reproduce``'s
queue with JOBS=1 vs JOBS=2 (one thread per run), each on a fresh runs root.

    python benchmarks/bench_jobs.py [--jobs 1 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qsd.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=Path("results/bench/jobs.json"))
    args = ap.parse_args()
    report = {"benchmark": "suite throughput (smoke MLP runs of fig2-3)", "cores": os.cpu_count(), "jobs": {}}
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "QSD_RUNS_ROOT": tmp}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "qsd.reproduce", "--scale", "smoke", "--jobs", str(jobs), "--only",
                            "fig2_mlp_curves", "fig3_mlp_rates", "--results", str(Path(tmp) / "results")],
                           env=env, cwd=ROOT, check=True, capture_output=True)
            wall = time.perf_counter() - t0
            runs = len(list((Path(tmp) / "smoke").glob("*/*/summary.json")))
        report["jobs"][jobs] = {"wall_s": wall, "runs": runs, "runs_per_hour": 3600 * runs / wall}
    base = report["jobs"][args.jobs[0]]["runs_per_hour"]
    write_json(args.out, report)
    for jobs, r in report["jobs"].items():
        print(f"JOBS={jobs}: {r['runs']} runs in {r['wall_s']:.0f} s = {r['runs_per_hour']:.0f} runs/hour "
              f"({r['runs_per_hour'] / base:.2f} x JOBS={args.jobs[0]})")


if __name__ == "__main__":
    main()
