"""``qsd-reproduce``: train every run the figures and tables of one scale ask for (``experiments/*.yaml``)
through one queue of parallel runs, collect them, render every figure and table, print the verdicts.

    qsd-reproduce --scale cpu                     # what `make reproduce-all SCALE=cpu` runs
    qsd-reproduce --scale cpu --dry-run           # what it would train, and about how long it takes
    qsd-reproduce --scale cpu --render-only       # what `make figures` runs
    qsd-reproduce --scale cpu --replicate         # the same runs on fresh seeds, into results/cpu/replication/
    QSD_RUNS_ROOT=/slice/runs qsd-reproduce --scale paper --collect-only   # runs trained elsewhere

Finished runs are found in the runs root (``$QSD_RUNS_ROOT``, default the checkout's ``runs/``) or
among the committed ones (``results/<scale>/runs/``, ``results/<scale>/replication/runs/``) and are
never trained again.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import torch

from . import data, runstore, suite
from .io import atomic_write, write_text
from .provenance import git_commit
from .paths import ROOT
from .report import figures, findings, recipes, result_tables
from .report.collect import collect
from .report.compare import WITHHELD
from .report.replication import TABLES, render_replication
from .runqueue import Queue, auto_jobs, clock, estimates, memory_per_run, stacked_experiments
from .train import ConfigError

log = logging.getLogger("qsd.reproduce")
BENCH_REPEATS = {"smoke": 3, "cpu": 30, "paper": 100}
RENDERERS = figures.RENDERERS | result_tables.RENDERERS  # a manifest's `render` -> its function


def manifests() -> list[dict]:
    """Every figure/table manifest, in file-name order; each must name a known renderer."""
    out = list(recipes.manifests().values())
    for m in out:
        if m.get("render") not in RENDERERS:
            raise ValueError(f"experiments/{m['id']}.yaml: render must be one of {sorted(RENDERERS)}, got {m.get('render')!r}")
    return out


def benchmarks(only: list[str] | None, experiments: list[str] | None) -> list[dict]:
    """The manifests whose measurement (``bench``) this command makes: those named in ``--only``, or every
    one for the whole suite. A slice by ``--experiments`` alone is for training runs: it measures nothing
    (at paper scale the cost table's models include the WRN, minutes of timing on a CPU)."""
    if not only and experiments:
        return []
    return [m for m in manifests() if "bench" in m and (not only or m["id"] in only)]


def render(out: Path, scale: str, only: list[str] | None = None, replication_of: Path | None = None) -> list[str]:
    """Draw every figure and table (or those in ``only``) from the collected files in ``out``
    (``results/<scale>/``); for a replication (``replication_of``: the main results' folder), also the
    table of its verdicts beside the main ones, after redrawing the tables that one reads."""
    if replication_of and only:
        only = [*only, *TABLES]  # replication.md reads them: never a stale one
    drawn = []
    for m in manifests():
        if not only or m["id"] in only:
            RENDERERS[m["render"]](out, scale)
            drawn.append(m["id"])
    if replication_of:
        render_replication(replication_of, out, scale)
        drawn.append("replication")
    return drawn


def rendered(results: Path) -> dict[Path, bytes]:
    """Every file a render writes in one scale's ``results`` folder (its replication's included, the runs'
    files and ``drawn_at.md`` not), with its content."""
    return {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and "runs" not in p.relative_to(results).parts
            and p.name != "drawn_at.md"}


def publish(results: Path, scale: str, before: dict[Path, bytes]) -> None:
    """After a render of one scale (``results``: ``results/<scale>/``): its REPORT.md; the cpu-vs-paper
    comparison beside it and, for the checkout's own results, the README's verdict table; and, where any
    rendered file changed (``before``: ``rendered`` before the render), ``drawn_at.md`` naming the code's
    commit. A render that changes nothing leaves every file as it was (and a clean checkout clean)."""
    findings.write_report(results, scale)
    if scale in findings.SCALES:
        own = results.parent.resolve() == (ROOT / "results").resolve()
        findings.write_overview(results.parent, ROOT / "README.md" if own else None)
    if rendered(results) != before:
        write_text(results / "drawn_at.md", f"The figures, tables and REPORT.md in this folder were last changed by a "
                   f"render at code commit {git_commit()} (the last commit that changed src/, configs/, experiments/, "
                   f"benchmarks/ or pyproject.toml; +dirty: with uncommitted changes to them). The runs' own commits "
                   f"are in each figure's footer and table's title.\n")


def stack_arg(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {value!r}")
    return int(value)


def jobs_arg(value: str) -> int:
    if value == "auto":
        return auto_jobs()
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {value!r}")
    return int(value)


def verdicts(out: Path) -> str:
    """table1's verdict per experiment, one line each, with the paired difference where the gate let a
    verdict through (a withheld one shows only its reason)."""
    with open(out / "table1_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    width = max((len(r["experiment"]) for r in rows), default=0)
    given = lambda r: r.get("QSD - dropout") and not r["verdict"].startswith((*WITHHELD, "not testable"))
    return "\n".join(f"  {r['experiment']:{width}s}  {r['verdict']}" + (f"  (QSD - dropout {r['QSD - dropout']}, "
                     f"95% CI {r['paired t 95% CI']})" if given(r) else "") for r in rows)


def replicated(out: Path) -> str:
    """How many comparisons replicate, do not, or were not tested, and which did not."""
    with open(out / "replication.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    counts = Counter(r["outcome"].split(" (")[0] for r in rows)
    missed = [f"  does not replicate: {r['experiment']} {r['comparison']}" for r in rows if r["outcome"] == "does not replicate"]
    return "\n".join([f"  {', '.join(f'{n} {o}' for o, n in sorted(counts.items()))}", *missed])


def gather(planned: list[suite.Run], runs_root: Path, results: Path, seeds: range) -> dict[Path, dict[str, str]]:
    """The finished folder of each planned run (the runs root first: it has the weights), each also
    committed to ``results/runs/`` (small files only) if it is not there yet, with the columns ``collect``
    adds to its row: the ids of the figures and tables that ask for it, and the run it lengthens. Folders
    of the planned ``seeds`` that are not planned runs are counted in the log."""
    archive, paths = results / "runs", {}
    for run in planned:
        path = suite.locate(run, [runs_root, archive])
        if path is None:
            continue
        if path.parent.parent == runs_root and not runstore.is_finished(archive / run.key):
            runstore.archive(path, archive / run.key)
        paths[path] = {"figures": " ".join(sorted(run.figures)), "lengthens": run.lengthens}
    keys, names = {r.key for r in planned}, tuple(f"-seed{s}-" for s in seeds)
    for root in (runs_root, archive):  # e.g. runs of an edited config, or of an older QSD sampler
        ignored = sum(1 for p in root.glob("*/*") if p.is_dir() and f"{p.parent.name}/{p.name}" not in keys
                      and any(n in p.name for n in names))
        if ignored:
            log.info("ignored %d run folder(s) in %s that are not runs of this suite", ignored, root)
    return paths


def recollect_replication(main: Path, scale: str, runs_root: Path) -> None:
    """Collect the fresh seeds' runs into ``main``/replication again and redraw what it holds, with
    replication.md beside the main verdicts just drawn: a recipe changed since the fresh seeds were last collected
    (a length, a grid) leaves runs there that the plan no longer asks for, whose verdicts must not stand beside
    the new main ones."""
    out = main / "replication"
    collect(gather(suite.plan(scale, replicate=True), runs_root, out, suite.seeds(scale, replicate=True)), out)
    render(out, scale, [m["id"] for m in manifests() if (out / f"{m['id']}.md").exists()], replication_of=main)


def pack(results: Path, out: Path, dest: Path) -> Path:
    """Write ``dest``, a .tar.gz of what a machine lent for a slice brings back: ``out``'s committed runs
    (small files only) and weights_ks.csv (the KS rows of weights that stay there), named from
    ``results``' parent, so that ``tar xzf`` in a checkout puts them in place for ``--collect-only``."""
    def write(f) -> None:
        with tarfile.open(fileobj=f, mode="w:gz") as tar:
            for path in (out / "runs", out / "weights_ks.csv"):
                if path.exists():
                    tar.add(path, arcname=str(path.relative_to(results.parent)))
    return atomic_write(dest, write)


def _restrict(overrides: list[str], experiments: list[str]) -> list[str]:
    """A sweep's overrides with its ``experiment=`` values cut to ``experiments``; [] when none is left."""
    out = []
    for o in overrides:
        if o.startswith("experiment="):
            kept = [e for e in o.split("=", 1)[1].split(",") if e in experiments]
            if not kept:
                return []
            o = "experiment=" + ",".join(kept)
        out.append(o)
    return out


def absent_data(runs: list[suite.Run], named: list[str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """The data sets ``runs`` read that are not prepared here, each with what to do, split in two: those
    whose runs are set aside (user-supplied sets, e.g. CIFAR-10, unless an experiment reading one was
    ``named`` with --experiments) and those that stop the command (sets it can fetch, or named ones)."""
    aside, blocking = {}, {}
    for name in sorted({r.data for r in runs}):
        if hint := data.missing(name):
            asked = any(r.data == name and r.experiment in (named or []) for r in runs)
            (blocking if data.SPECS[name].obtain or asked else aside)[name] = hint
    return aside, blocking


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qsd-reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(suite.SEEDS), default="cpu")
    ap.add_argument("--jobs", type=jobs_arg, default="auto",
                    help="parallel runs, 'auto' (default: as many as the cores and memory hold, 1 thread each) or N")
    ap.add_argument("--stack", type=stack_arg, default=1,
                    help="runs a worker trains as one stacked model (same experiment and schedule, any seed, "
                         "regulariser and rates): 1 (default, one run a process), N, or 'auto' (on CUDA as many as "
                         "the GPU's memory holds, measured; on a CPU 1: a stack measured slower there)")
    ap.add_argument("--only", nargs="*", help="figure/table ids to run and render (default: all; --list shows them)")
    ap.add_argument("--experiments", nargs="*", metavar="NAME",
                    help="only the runs of these experiments (e.g. mlp_mnist), within --only's figures")
    ap.add_argument("--list", action="store_true", help="list the figure/table ids and stop")
    ap.add_argument("--render-only", action="store_true",
                    help="render from results/<scale>/ alone (no training, no collecting): the figures and tables "
                         "already there (all, the first time), or --only's")
    ap.add_argument("--collect-only", action="store_true",
                    help="train nothing: commit the finished runs found in the runs root, collect and render")
    ap.add_argument("--dry-run", action="store_true", help="print the runnable sweep commands, run counts and time left; train nothing")
    ap.add_argument("--time-budget", type=float, metavar="MIN",
                    help="start no run that would not finish within MIN minutes (by the recorded times)")
    ap.add_argument("--replicate", action="store_true",
                    help="the same runs on fresh seeds (5-9 at cpu and paper scale), into results/<scale>/replication/, "
                         "with each verdict beside the main one (replication.md)")
    ap.add_argument("--verbose", action="store_true", help="show every run's own output (it always goes to its train.log)")
    ap.add_argument("--pack", type=Path, metavar="FILE",
                    help="at the end, also after a stop, write FILE (.tar.gz): the committed runs' small files and "
                         "weights_ks.csv, what a machine lent for a slice brings back (`tar xzf FILE` in a checkout, "
                         "then --collect-only)")
    ap.add_argument("--set", nargs="*", default=[], type=setting, metavar="KEY=VALUE", dest="settings",
                    help=f"train every run with these settings, which leave its results and folder alone (KEY one of "
                         f"{', '.join(suite.SETTINGS)}), e.g. --set train.cuda_graphs=false, or device=cuda:1")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(ap, args)
    except BrokenPipeError:  # the reader stopped early (`qsd-reproduce --dry-run | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def setting(text: str) -> str:
    """A ``--set`` argument: ``KEY=VALUE`` with KEY one of ``suite.SETTINGS`` (its value is checked with the runs)."""
    if text.split("=", 1)[0] not in suite.SETTINGS or "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE with KEY one of {', '.join(suite.SETTINGS)} (how "
                                         "runs train: the settings that leave a run's results and folder alone)")
    return text


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    ids = [m["id"] for m in manifests()]
    if args.list:
        print("\n".join(f"{m['id']:18s} {m['title']}" for m in manifests()))
        return 0
    unknown = sorted(set(args.only or []) - set(ids))
    if unknown:
        ap.error(f"unknown id(s) {unknown} in --only; choose from {ids}")
    main_out = args.results / args.scale
    out, replication_of = (main_out / "replication", main_out) if args.replicate else (main_out, None)
    if args.render_only:
        if not (out / "runs.csv").exists():
            print(f"no collected runs for scale {args.scale} ({out / 'runs.csv'} does not exist): "
                  f"run `qsd-reproduce --scale {args.scale}{' --replicate' * args.replicate}` first", file=sys.stderr)
            return 1
        there = [i for i in ids if (out / f"{i}.md").exists()]  # a replication collected with --only has a few
        before = rendered(main_out)
        print(f"rendered {', '.join(render(out, args.scale, args.only or there or None, replication_of))} in {out}/")
        publish(main_out, args.scale, before)
        return 0

    runs_root = Path(os.environ.get("QSD_RUNS_ROOT", ROOT / "runs")).resolve() / args.scale
    try:
        planned = suite.plan(args.scale, args.replicate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.experiments or []) - {r.experiment for r in planned})
    if unknown:
        ap.error(f"unknown experiment(s) {unknown} in --experiments; choose from {sorted({r.experiment for r in planned})}")
    wanted = [r for r in planned if (not args.only or r.figures & set(args.only))
              and (not args.experiments or r.experiment in args.experiments)]
    roots = [runs_root, out / "runs"]
    finished = {r.key: p for r in planned if (p := suite.locate(r, roots))}
    todo, waiting, spare = suite.split_by_need([r for r in wanted if r.key not in finished], finished)
    aside, blocking = ({}, {}) if args.collect_only else absent_data(todo + waiting, args.experiments)
    if blocking and not args.dry_run:
        for name, hint in blocking.items():
            print(f"error: data set {name!r}, which {sum(r.data == name for r in todo + waiting)} run(s) read, is not "
                  f"prepared here; {hint}", file=sys.stderr)
        return 2
    for name, hint in aside.items():
        print(f"set aside: the {sum(r.data == name for r in todo + waiting)} run(s) that read {name}, which is not "
              f"prepared ({hint}); the rest of the suite goes on without them")
    keep = lambda runs: [r for r in runs if r.key in finished or r.data not in aside]
    wanted, todo, waiting, spare = keep(wanted), keep(todo), keep(waiting), keep(spare)
    try:
        suite.check_settings([] if args.collect_only else todo + waiting, args.settings)
        device = suite.device(args.settings)  # the one its runs resolve
    except ConfigError as e:
        print(f"error: --set: {e}", file=sys.stderr)
        return 2
    on_grid, after_standard = [r for r in waiting if r.grid], [r for r in waiting if not r.grid]
    picked = [r for r in on_grid if next(k for k in r.grid if f"-seed{r.seed}-" in k).endswith("/" + r.lengthens)]
    # (one a seed and grid, as many as will train: for the estimate)
    to_train = todo + picked + after_standard
    timed = {**{f"{p.parent.name}/{p.name}": p for p in (main_out / "runs").glob("*/*")}, **finished} \
        if args.replicate else finished  # the fresh seeds' runs take as long as the main ones
    budget_s = None if args.time_budget is None else args.time_budget * 60
    side_by_side = max(1, min(args.jobs, len(to_train)))
    queue = Queue(todo, len(wanted) - len(todo) - len(waiting) - len(spare), args.jobs, runs_root, args.scale,
                  estimates(timed, device, side_by_side), args.verbose, budget_s, args.settings, device, args.stack,
                  memory_per_run(timed), stacked_experiments(timed))
    print(f"{args.scale} scale{' (replication: fresh seeds)' * args.replicate}: {len(wanted)} runs, {queue.done} "
          f"already finished, {queue.time_left(to_train)}; {max((r.threads for r in wanted), default=1)} CPU "
          f"thread(s) each, on {device}")
    if spare or on_grid:
        parts = [f"{len(spare)} not needed (their seed is given another rate)"] * bool(spare) + \
                [f"{len(on_grid)} wait for their seed's grid, of which {len(picked)} will train"] * bool(on_grid)
        print(f"the gate's longer runs on a rate grid train only at the rate each seed is given on the other seeds' "
              f"validation: "
              f"{'; '.join(parts)}")
    if after_standard:
        print(f"{len(after_standard)} of the gate's longer runs train after the run each lengthens, on from its end "
              f"(their schedule is not cosine)")
    if args.scale == "paper" and todo and not args.collect_only and not torch.cuda.is_available():
        print("warning: no CUDA device here; the paper scale's full protocols (the CNNs, WRN for 200 epochs, the "
              "medium LSTM for 39) take hours to days a run on a CPU")
    if args.dry_run:
        print_sweeps(args, ids, wanted, to_train, aside, blocking, queue)
        return 0

    t0, seeds = time.time(), suite.seeds(args.scale, replicate=args.replicate)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the runs as Ctrl-C does
    try:
        # the waiting runs join the queue as their seeds' grids finish (the rates they picked), or the runs they
        # lengthen, which leave their ends
        later = suite.Waiting(waiting, finished, runs_root, queue.kind)
        outcomes = [] if args.collect_only else queue.run(later.release)
        if held := ([] if args.collect_only else later.held()):
            print(f"{len(held)} of the gate's longer runs wait for the run each lengthens, which did not complete "
                  f"here: run the command again")
        finished.update({r.key: p for r in planned if r.key not in finished and (p := suite.locate(r, roots))})
    except KeyboardInterrupt:
        kept = len(gather(planned, runs_root, out, seeds))  # what finished before the stop is committed
        print(f"{kept} finished run(s) are committed in {out / 'runs'}")
        if args.pack:  # weights_ks.csv as last collected: the stopped slice's weights are not compared
            print(f"packed them in {pack(args.results, out, args.pack)}")
        return 130
    failed = [f"qsd-train {shlex.join(o.run.overrides)}  # {o.text}" for o in outcomes if o.status == "failed"]
    for why, over in Counter(o.text for o in outcomes if o.status == "stopped").items():
        print(f"{over} run(s) {why}")
    if not (args.collect_only or args.replicate):  # the cost is measured on the main seeds only
        failed += run_benchmarks(args, out)
    paths = gather(planned, runs_root, out, seeds)
    before = rendered(main_out)
    collect(paths, out)
    drawn = render(out, args.scale, args.only, replication_of)
    if not args.replicate and (out / "replication" / "runs.csv").exists():  # it sets each main verdict beside its own
        recollect_replication(out, args.scale, runs_root)
        drawn.append("replication/")
    publish(main_out, args.scale, before)
    drawn.append("REPORT")
    unneeded = sum(r.key not in finished and suite.needed(r, finished) is False for r in planned)
    print(f"\n{len(paths)} of {len(planned)} runs collected" + f" ({unneeded} not needed)" * bool(unneeded) +
          f"; {clock(time.time() - t0)} for training, benchmarks and collection.")
    shown = f"results/{args.scale}" + "/replication" * args.replicate
    if "table1_summary" in drawn:
        print(f"Verdicts ({shown}/table1_summary.md):\n{verdicts(out)}")
    if replication_of:
        print(f"Replication of the main verdicts ({shown}/replication.md):\n{replicated(out)}")
    print(f"Figures and tables ({', '.join(drawn)}) are in {out}/")
    if args.pack:
        print(f"packed the committed runs and weights_ks.csv in {pack(args.results, out, args.pack)}")
    (out / "FAILED_RUNS.txt").unlink(missing_ok=True)
    if failed:
        write_text(out / "FAILED_RUNS.txt", "\n".join(failed) + "\n")
        print(f"{len(failed)} run(s) failed; see {out / 'FAILED_RUNS.txt'} (rerun the same command to retry them)",
              file=sys.stderr)
        return 1
    return 0


def print_sweeps(args: argparse.Namespace, ids: list[str], wanted: list[suite.Run], left_runs: list[suite.Run],
                 aside: dict[str, str], blocking: dict[str, str], queue: Queue) -> None:
    """``--dry-run``: the runnable sweeps of ``wanted``'s experiments, the data the runs left read, and per
    figure the runs ``left_runs`` and their time on ``queue``'s width."""
    shown = sorted({r.experiment for r in wanted if r.data not in aside})  # set-aside experiments: no sweeps
    sweeps = list(dict.fromkeys(tuple(o) for s in suite.sweeps(args.scale, args.replicate)
                                if (not args.only or s.figure in args.only)
                                and (o := _restrict(s.overrides, shown))))  # a shared sweep once
    for sweep in sweeps:
        print(f"# {len(suite.expand(list(sweep)))} runs\nqsd-train -m {shlex.join([*sweep, *args.settings])}")
    print(f"# {len(wanted)} distinct runs in {len(sweeps)} sweeps; finished runs are skipped when they run, "
          "and qsd-reproduce trains a longer run on a grid only at the rate its seed is given")
    print(f"# data sets the runs left read: {', '.join(sorted({r.data for r in left_runs})) or 'none'}")
    for name, hint in blocking.items():
        print(f"# not prepared here: {name}: {hint}")
    for figure in [i for i in ids if not args.only or i in args.only]:  # a slice's cost; shared runs count in each
        left = [r for r in left_runs if figure in r.figures]
        if left:
            print(f"# {figure}: {len(left)} run(s) to train, {queue.time_left(left)}")


def run_benchmarks(args: argparse.Namespace, out: Path) -> list[str]:
    """Measure the benchmarks ``--only`` and ``--experiments`` ask for (table2's step cost) into ``out``,
    each once (a measured one is kept, like a finished run); the commands that failed."""
    failed = []
    for m in benchmarks(args.only, args.experiments):
        measured = out / m["bench_out"]
        if measured.exists():  # like a finished run: kept, not measured again
            print(f"benchmark: {measured} exists (delete it to measure again)")
            continue
        cmd = [sys.executable, *(a.format(repeats=BENCH_REPEATS[args.scale], out=measured) for a in m["bench"])]
        print(f"benchmark: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, cwd=ROOT, capture_output=not args.verbose).returncode != 0:
            failed.append(" ".join(cmd[1:]))
    return failed


if __name__ == "__main__":
    sys.exit(main())
