"""``qsd-reproduce``: run every sweep of ``experiments/*.yaml`` at one scale with Hydra's multirun
(joblib launcher, ``--jobs`` parallel runs sharing the cores), collect, and render every figure and table.

    qsd-reproduce --scale cpu --jobs 2            # what `make reproduce-all SCALE=cpu JOBS=2` runs
    qsd-reproduce --scale cpu --render-only       # what `make figures` runs
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .io import write_text
from .report import recipes
from .report.collect import collect
from .report.figures import RENDERERS

log = logging.getLogger("qsd.reproduce")
ROOT = recipes.ROOT
SEEDS = {"smoke": 2, "cpu": 5, "paper": 5}  # a sweep may ask for fewer (`seeds:`), e.g. a published anchor
BENCH_REPEATS = {"smoke": 3, "cpu": 30, "paper": 100}


def manifests() -> list[dict]:
    """Every figure/table manifest, in file-name order; each must name a known renderer."""
    out = list(recipes.manifests().values())
    for m in out:
        if m.get("render") not in RENDERERS:
            raise ValueError(f"experiments/{m['id']}.yaml: render must be one of {sorted(RENDERERS)}, got {m.get('render')!r}")
    return out


def sweep_commands(scale: str, jobs: int, only: list[str] | None = None) -> list[list[str]]:
    """One Hydra multirun command per distinct sweep (sweeps shared by figures run once)."""
    seen, cmds = set(), []
    for m in manifests():
        if only and m["id"] not in only:
            continue
        for sweep in m["sweeps"]:
            if "scales" in sweep and scale not in sweep["scales"]:
                continue
            seeds = ",".join(str(s) for s in range(min(SEEDS[scale], sweep.get("seeds", SEEDS[scale]))))
            key = (seeds, *sweep["overrides"])
            if key in seen:
                continue
            seen.add(key)
            cmds.append([sys.executable, "-m", "qsd.train", "-m", f"scale={scale}", f"seed={seeds}", *sweep["overrides"],
                         "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", "train.progress=off"])
    return cmds


def thread_env(jobs: int) -> dict[str, str]:
    """Split the cores among parallel runs instead of oversubscribing them."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def render(scale: str, results: Path, only: list[str] | None = None) -> None:
    """Draw every figure and table (or those in ``only``) from the collected files in ``results/<scale>/``."""
    out = results / scale
    for m in manifests():
        if not only or m["id"] in only:
            RENDERERS[m["render"]](out, scale)
            log.info("rendered %s", m["id"])


def run_count(cmd: list[str]) -> int:
    """How many runs a multirun command asks for (the product of its sweep lengths)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    count = 1
    for o in OverridesParser.create().parse_overrides([a for a in cmd if "=" in a and not a.startswith("hydra")]):
        if o.is_sweep_override():
            count *= len(list(o.sweep_string_iterator()))
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qsd-reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SEEDS), default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="parallel runs (threads are split among them)")
    ap.add_argument("--only", nargs="*", help="figure/table ids to run and render (default: all; --list shows them)")
    ap.add_argument("--list", action="store_true", help="list the figure/table ids and stop")
    ap.add_argument("--render-only", action="store_true", help="render from results/<scale>/ alone (no training, no collecting)")
    ap.add_argument("--dry-run", action="store_true", help="print the sweep commands and stop")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    ids = [m["id"] for m in manifests()]
    if args.list:
        print("\n".join(f"{m['id']:18s} {m['title']}" for m in manifests()))
        return 0
    unknown = sorted(set(args.only or []) - set(ids))
    if unknown:
        ap.error(f"unknown id(s) {unknown} in --only; choose from {ids}")
    runs_root = Path(os.environ.get("QSD_RUNS_ROOT", ROOT / "runs")).resolve()
    failed = []
    if args.dry_run:
        cmds = sweep_commands(args.scale, args.jobs, args.only)
        for cmd in cmds:
            print(f"# {run_count(cmd)} runs\nqsd-train {shlex.join(cmd[3:])}")
        print(f"# {sum(map(run_count, cmds))} runs in {len(cmds)} sweeps (finished runs are skipped when they run)")
        return 0
    if not args.render_only:
        (args.results / args.scale / "FAILED_SWEEPS.txt").unlink(missing_ok=True)
        for cmd in sweep_commands(args.scale, args.jobs, args.only):
            line = " ".join(cmd[2:])
            log.info("sweep: %s", line)
            t0 = time.time()
            if subprocess.run(cmd, env=thread_env(args.jobs), cwd=ROOT).returncode != 0:
                failed.append(line)
            log.info("sweep took %.0f s", time.time() - t0)
        for m in manifests():
            if "bench" in m and (not args.only or m["id"] in args.only):
                cmd = [sys.executable, *(a.format(repeats=BENCH_REPEATS[args.scale], results=args.results / args.scale)
                                         for a in m["bench"])]
                log.info("benchmark: %s", " ".join(cmd[1:]))
                if subprocess.run(cmd, cwd=ROOT).returncode != 0:
                    failed.append(" ".join(cmd[1:]))
    if not args.render_only:
        counts = collect(runs_root, args.scale, args.results / args.scale)
        log.info("collected %d finished runs (%d in progress)", counts["finished"], counts["in_progress"])
    render(args.scale, args.results, args.only)
    if failed:
        write_text(args.results / args.scale / "FAILED_SWEEPS.txt", "\n".join(failed) + "\n")
        log.error("%d sweep(s) failed; see %s", len(failed), args.results / args.scale / "FAILED_SWEEPS.txt")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
