"""One pool of ``jobs`` workers for the suite's runs. Each worker is a long-lived process
(``qsd.worker``) that trains one job after another, writing its output to the runs' ``train.log``: a job
is one run, or with ``stack`` several compatible runs trained as one stacked model (``stack.py``).
The terminal gets a progress bar (or, without a terminal, one line per finished run) with an ETA.
A failed run is recorded and the queue goes on; Ctrl-C stops every run at once, and the same
command later continues where it stopped."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from . import runstore
from .suite import Run
from .worker import DONE

GUESS_S = {"smoke": 1.5, "cpu": 120.0, "paper": 300.0}  # a run's wall time when none was recorded (a guess),
                                                         # for the fewest epochs its experiment's runs here train
NO_GUESS = {("paper", "cpu")}  # (scale, device kind) with no one guess: a paper run on a CPU takes minutes (the
                               # MLP) to days (the WRN), so one not timed there is left out of every estimate
START_S = 4.0  # a process's start-up (Python, torch, Hydra) beside the recorded training time
GIB_PER_RUN = 2  # memory one run may need, for JOBS=auto


def auto_jobs() -> int:
    """One run per core (each trains on one thread, ``train.threads``' default), and no more than the
    memory holds at GIB_PER_RUN each; on a GPU machine they all share the GPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(cores, int(mem_gib // GIB_PER_RUN)))


def estimates(finished: dict[str, Path], device: str, jobs: int) -> dict[str, float]:
    """Seconds per epoch of each experiment on ``device``'s kind (``cpu``, ``cuda``) with ``jobs`` runs side
    by side: the mean over its finished runs that trained on that kind of the recorded wall time over the
    epochs trained (the gate's longer runs train more epochs than the others). A pace measured on a GPU
    says nothing of a CPU's. Runs side by side share one GPU, so on ``cuda`` a pace recorded with ``w``
    runs at once is stretched by ``jobs / w`` where ``jobs`` is wider (the GPU taken as saturated at ``w``:
    the paper CNNs finished 3.5-3.8 runs a minute at 5 and at 16), and kept where it is narrower (an
    over-estimate, the safe side for a time budget); a run that did not record ``w`` is taken as is. On a
    CPU each run has its own core(s) (``auto_jobs``). A run trained in a stack of G counts 1/G of its wall
    time (its share of the stack's)."""
    kind = device.split(":")[0]
    per_epoch: dict[str, list[float]] = {}
    for key, path in finished.items():
        s = runstore.read_summary(path) or {}
        wall, epochs, width = s.get("wall_s"), runstore.epochs_trained(s), s.get("jobs")
        if isinstance(wall, (int, float)) and isinstance(s.get("stack"), int) and s["stack"] > 1:
            wall /= s["stack"]  # a stack's members share its wall time: each run's share
        if str(s.get("device", "")).split(":")[0] == kind and isinstance(wall, (int, float)) \
                and isinstance(epochs, int) and epochs > 0:
            stretch = max(1.0, jobs / width) if kind == "cuda" and isinstance(width, int) and width > 0 else 1.0
            per_epoch.setdefault(key.split("/")[0], []).append(wall / epochs * stretch)
    return {exp: mean(w) for exp, w in per_epoch.items()}


def clock(seconds: float) -> str:
    """``1 h 05 min``, ``7 min``, ``42 s``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min"


MEMBER_AXIS = ("seed", "regulariser", "rates")  # what runs of one stack may differ in (and regulariser.*, rates.*)
MAX_STACK = 64  # the most runs one auto stack takes
FIRST_STACK = 2  # an auto stack on CUDA of an experiment whose memory per run was never measured (it measures it)
CONTEXT_MIB = 1024  # a worker's CUDA context and allocator slack, beside what its stack reserves


def stack_group(run: Run) -> tuple:
    """Runs with the same value here may train as one stack: the same overrides but for seed,
    regulariser and rates (``train.stack_key`` checks the composed configs again)."""
    return tuple(sorted(o for o in run.overrides if o.split("=", 1)[0].split(".")[0] not in MEMBER_AXIS))


def stacked_experiments(finished: dict[str, Path]) -> set[str]:
    """The experiments some finished run of which was trained in a stack (their pace is a stack's share)."""
    return {key.split("/")[0] for key, path in finished.items()
            if ((runstore.read_summary(path) or {}).get("stack") or 1) > 1}


def memory_per_run(finished: dict[str, Path]) -> dict[str, float]:
    """The most CUDA memory (MiB) one run of each experiment reserved in a stack, from the finished runs'
    summaries (``peak_mib``: the stack's peak reserved memory over its members)."""
    peak: dict[str, float] = {}
    for key, path in finished.items():
        mib = (runstore.read_summary(path) or {}).get("peak_mib")
        if isinstance(mib, (int, float)):
            exp = key.split("/")[0]
            peak[exp] = max(peak.get(exp, 0.0), float(mib))
    return peak


@dataclass
class Outcome:
    run: Run
    status: str  # completed | diverged | failed | locked | stopped
    text: str    # e.g. "completed, test error 1.6"
    wall_s: float


class Queue:
    """Run ``todo`` (runs not yet finished) with ``jobs`` workers in ``root`` (the runs folder of
    ``scale``), each with the overrides ``settings`` added (how it trains: ``suite.SETTINGS``);
    ``done`` runs were finished before. ``stack``: runs a job trains as one model, N or ``auto`` (``stack_size``);
    ``memory``: MiB of CUDA memory per run of each experiment, as measured (``memory_per_run``); ``stacked``: the
    experiments whose pace was recorded in stacks (``stacked_experiments``)."""

    def __init__(self, todo: list[Run], done: int, jobs: int, root: Path, scale: str,
                 estimate: dict[str, float], verbose: bool = False, budget_s: float | None = None,
                 settings: Sequence[str] = (), device: str = "cpu", stack: int | str = 1,
                 memory: dict[str, float] | None = None, stacked: set[str] | None = None):
        self.todo, self.done, self.jobs, self.root, self.scale = todo, done, jobs, root, scale
        self.stack, self.memory, self.stacked = stack, dict(memory or {}), set(stacked or ())
        self.gpu_mib: float | None = None  # the GPU's memory, read when a stack is first sized by it
        self.device = device if device.startswith("cuda") else "cuda"
        self.shrunk: dict[str, int] = {}  # experiments whose stack failed whole: the most runs a stack takes now
        self.kind = device.split(":")[0]  # the kind of device ``estimate``'s paces were recorded on
        self.settings = [*settings, "train.progress=off"]
        self.estimate = {**estimate}
        self.verbose, self.budget_s = verbose, budget_s
        self.workers: set[subprocess.Popen] = set()
        self.slot = threading.local()
        self.lock, self.stopping = threading.Lock(), False
        self.total, self.keys = done + len(todo), {r.key for r in todo}
        self.released: set[str] = set()  # the runs that joined while the queue ran (``run``'s ``release``)
        self.fewest_epochs: dict[str, int] = {}
        for r in todo:
            self.fewest_epochs[r.experiment] = min(r.epochs, self.fewest_epochs.get(r.experiment, r.epochs))

    def seconds(self, run: Run) -> float | None:
        """``run``'s expected wall time: start-up and the epochs it has left (a stopped run resumes) at its
        experiment's recorded pace, or where none is recorded the guess, scaled by those epochs (so that the
        gate's longer runs are guessed longer); None where there is neither (``NO_GUESS``). A longer run with a
        head start (``suite.Run``) has the epochs after it left where the run it lengthens is in this queue (it
        waits for it: ``suite.split_by_need``) or is ``runstore.continuable`` here."""
        left = max(0, run.epochs - self.start(run))
        if run.experiment in self.estimate:
            return START_S + self.estimate[run.experiment] * left
        if (self.scale, self.kind) in NO_GUESS:
            return None
        return GUESS_S[self.scale] * left / self.fewest_epochs.get(run.experiment, run.epochs)

    def start(self, run: Run) -> int:
        """The epoch ``run`` will start from: its own last checkpoint's, or where it has a head start (``seconds``),
        the end of the run it lengthens."""
        queued = run.standard in self.keys and not runstore.is_finished(self.root / run.standard)
        head = run.head_start if run.head_start and (
            queued or runstore.continuable(self.root / run.standard, self.kind)) else 0
        return max(head, runstore.epochs_logged(self.root / run.key))

    def left_s(self, runs: list[Run]) -> tuple[float, int]:
        """Wall time the timed ones of ``runs`` need on ``jobs`` workers (at least the longest run), and how
        many have no time (``seconds`` is None)."""
        times = [self.seconds(r) for r in runs]
        work = [s for s in times if s is not None]
        return max(sum(work) / self.jobs, max(work, default=0.0)), len(times) - len(work)

    def time_left(self, runs: list[Run]) -> str:
        """``left_s`` in words, saying how many of ``runs`` it guesses and how many it cannot count."""
        seconds, untimed = self.left_s(runs)
        guessed = sum(r.experiment not in self.estimate for r in runs) - untimed
        span = f"at {self.scale} scale a run on {self.kind} takes minutes to days"
        if runs and untimed == len(runs):
            return f"time left unknown (none of the {untimed} runs' experiments was timed on {self.kind} yet; {span})"
        text = f"about {clock(seconds)} left on {self.jobs} parallel run(s)"
        if guessed:
            text += f" ({guessed} of them a guess: no run of their experiment was timed on {self.kind} yet)"
        if untimed:
            text += f", not counting {untimed} whose experiment was not timed on {self.kind} yet ({span})"
        return text

    def order(self, runs: list[Run] | None = None) -> list[Run]:
        """``runs`` (all of ``todo`` if None) longest first, so that no worker waits at the tail on one long run
        (one with no time counts as the longest); among runs as long, seed by seed, so that a slice stopped
        part-way leaves whole seeds (every regulariser's) to pair. Runs released while the queue ran come after
        the others: they fill the slots the others leave, never taking a time budget from them."""
        return sorted(self.todo if runs is None else runs,
                      key=lambda r: (r.key in self.released,
                                     -(s if (s := self.seconds(r)) is not None else float("inf")), r.seed))

    def stack_size(self, run: Run) -> int:
        """How many runs a job with ``run`` first trains as one stack: ``stack`` if a number; ``auto``: on a
        CPU 1 (one core is busy with one run's arithmetic: a stack measured slower there, docs/speed.md);
        on CUDA as many as the GPU's memory holds (its share per worker of 80%, less ``CONTEXT_MIB``) at the
        memory a run of the experiment was measured to reserve in a stack, or ``FIRST_STACK`` to measure it;
        after a stack failed whole (out of memory, say), at most half as many as it had."""
        if self.stack != "auto":
            return int(self.stack)
        if self.kind != "cuda":
            return 1
        cap = self.shrunk.get(run.experiment, MAX_STACK)
        if run.experiment not in self.memory:
            return min(cap, FIRST_STACK)
        if self.gpu_mib is None:
            import torch

            self.gpu_mib = torch.cuda.get_device_properties(torch.device(self.device)).total_memory / 2**20
        share = self.gpu_mib * 0.8 / self.jobs - CONTEXT_MIB
        return max(1, min(cap, int(share // max(self.memory[run.experiment], 1.0))))

    def next_job(self, pending: list[Run]) -> list[Run]:
        """The next job: the first pending run and, up to its ``stack_size``, the next pending runs that
        stack with it (``stack_group``), taken out of ``pending``."""
        first = pending.pop(0)
        size, group, job = self.stack_size(first), stack_group(first), [first]
        for r in [r for r in pending if stack_group(r) == group][: size - 1]:
            pending.remove(r)
            job.append(r)
        return job

    def run(self, release: Callable[[list[Run]], list[Run]] | None = None) -> list[Outcome]:
        """Train ``todo``; ``release`` (e.g. ``suite.Waiting.release``), called with each job's runs as it ends
        (and with none once the queue has drained), gives runs that may train now, which join the queue."""
        start, outcomes = time.time(), []
        pending = self.order()
        bar = self._bar()
        with ThreadPoolExecutor(self.jobs) as pool:
            running: dict[Future, list[Run]] = {}
            try:
                while True:  # until nothing is pending or running, and ``release`` has nothing more
                    while pending and len(running) < self.jobs:
                        job = self.next_job(pending)
                        if self.budget_s is not None and (why := self._over_budget(job, time.time() - start)):
                            outcomes += [Outcome(run, "stopped", f"not started: {why}", 0.0) for run in job]
                            continue
                        running[pool.submit(self._train, job)] = job
                    if not running:
                        if release is not None and (ready := release([])):
                            pending = self.order(self._add(ready, bar))
                            continue
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in finished:
                        job = running.pop(f)
                        results = f.result()
                        if len(job) > 1 and all(o.status == "failed" for o in results):  # e.g. out of memory
                            self.shrunk[job[0].experiment] = max(1, len(job) // 2)
                        if release is not None and (ready := release(job)):
                            pending = self.order(pending + self._add(ready, bar))
                        for out in results:
                            outcomes.append(out)
                            self._finished(out, bar, pending + [r for job in running.values() for r in job])
            except KeyboardInterrupt:
                self.stop()
                self._print(bar, f"stopped: {self.done} of {self.total} runs finished; run the same command "
                                 "again to continue (a stopped run resumes from its last epoch)")
                raise
            finally:
                if bar is not None:
                    bar.close()
                for p in self.workers:
                    with contextlib.suppress(BrokenPipeError):
                        p.stdin.close()
        for p in self.workers:
            p.wait()
        return outcomes

    def _add(self, runs: list[Run], bar) -> list[Run]:
        """Take ``runs`` into the queue (counted in its total) and return them."""
        self.todo = [*self.todo, *runs]
        self.keys |= {r.key for r in runs}
        self.released |= {r.key for r in runs}
        self.total += len(runs)
        if bar is not None:
            bar.total = self.total
        return runs

    def _finished(self, out: Outcome, bar, left: list[Run]) -> None:
        """Count a finished run, learn its pace (and memory), and show it with the ETA of ``left``."""
        run = out.run
        self.done += 1
        s = runstore.read_summary(self.root / run.key) or {}
        if out.status in runstore.FINISHED and runstore.epochs_trained(s) > 0:  # learn the pace as runs finish
            self.estimate[run.experiment] = s["wall_s"] / runstore.epochs_trained(s) / max(1, s.get("stack") or 1)
        if (s.get("stack") or 1) > 1:
            self.stacked.add(run.experiment)
        if isinstance(s.get("peak_mib"), (int, float)):
            self.memory[run.experiment] = max(self.memory.get(run.experiment, 0.0), s["peak_mib"])
        seconds, untimed = self.left_s(left)
        eta = time.strftime("%H:%M", time.localtime(time.time() + seconds))
        if untimed:
            eta += f" and {untimed} untimed"
        self._print(bar, f"[{self.done}/{self.total}] {run.label}: {out.text} ({clock(out.wall_s)}, ETA {eta})")
        if bar is not None:
            bar.set_postfix_str(f"ETA {eta}", refresh=False)
            bar.update(1)

    def _over_budget(self, job: list[Run], elapsed: float) -> str:
        """Why ``job``, started ``elapsed`` seconds into the budget, would not finish within it ('' if it
        would). A stack takes its runs' shares together, except on CUDA where its experiment's pace was only
        recorded one run a process: there as long as its longest run (what a stack costs while the GPU has
        room for it: an assumption until a stack of the experiment has finished; on a CPU a stack takes at
        least the sum), and runs starting from different epochs (``start``) as that many stacks one after
        the other (``train.fit_group``)."""
        times = [self.seconds(r) for r in job]
        if any(t is None for t in times):
            return f"no pace recorded on {self.kind} yet, so maybe over the time budget"
        if self.kind == "cuda" and job[0].experiment not in self.stacked:
            longest: dict[int, float] = {}
            for start, t in zip(map(self.start, job), times):
                longest[start] = max(t, longest.get(start, 0.0))
            took = sum(longest.values())
        else:
            took = sum(times)
        return "over the time budget" if elapsed + took > self.budget_s else ""

    def stop(self) -> None:
        """Stop every running run: each keeps its last checkpoint and releases its lock. Ctrl-C on a
        terminal reaches the workers too; one that has not stopped after a moment gets SIGTERM from here,
        which a worker takes as Ctrl-C (SIGINT would not do: a queue started in the background, `cmd &`,
        starts its workers with SIGINT ignored)."""
        with self.lock:
            self.stopping = True
            workers = [p for p in self.workers if p.poll() is None]
        for signum, grace in ((None, 2.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            for p in workers:
                if signum is not None and p.poll() is None:
                    p.send_signal(signum)
            deadline = time.time() + grace
            for p in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(max(0.0, deadline - time.time()))

    def _worker(self, threads: int) -> subprocess.Popen:
        """This slot's long-lived ``qsd.worker`` process (a new one if it has none or it died)."""
        proc = getattr(self.slot, "worker", None)
        if proc is None or proc.poll() is not None:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "QSD_JOBS": str(self.jobs)}  # recorded in each summary: how many runs shared the machine
            proc = subprocess.Popen([sys.executable, "-m", "qsd.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env=env)
            self.slot.worker = proc
            self.workers.add(proc)
        return proc

    def _train(self, job: list[Run]) -> list[Outcome]:
        """Train ``job`` (one run, or a stack) on this slot's worker; one outcome per run."""
        paths = [self.root / run.key for run in job]
        t0, rc = time.time(), None
        logs = []
        with contextlib.ExitStack() as files:
            for run, path in zip(job, paths):
                path.mkdir(parents=True, exist_ok=True)
                logs.append(files.enter_context(open(path / "train.log", "a")))
                logs[-1].write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} qsd-train "
                               f"{' '.join([*run.overrides, *self.settings])}"
                               + (f"  (one stack of {len(job)} runs)\n" if len(job) > 1 else "\n"))
            with self.lock:
                if self.stopping:
                    return [Outcome(run, "stopped", "stopped", 0.0) for run in job]
                proc = self._worker(max(run.threads for run in job))
            overrides = [[*run.overrides, *self.settings] for run in job]
            try:
                proc.stdin.write(json.dumps(overrides[0] if len(job) == 1 else overrides) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:  # it died since it was last asked
                pass
            for line in proc.stdout:
                if line.startswith(DONE):
                    rc = int(line[len(DONE):])
                    break
                for log in logs:
                    log.write(line)
                if self.verbose:
                    sys.stdout.write(line)
        if rc is None:  # the worker died (killed, out of memory): the next job gets a new one
            rc = proc.wait()
        wall = time.time() - t0
        return [self._outcome(run, path, rc, wall) for run, path in zip(job, paths)]

    def _outcome(self, run: Run, path: Path, rc: int, wall: float) -> Outcome:
        s = runstore.read_summary(path) or {}
        status = s.get("status", "failed")
        if status == "failed" or (rc != 0 and status not in runstore.FINISHED):
            return Outcome(run, "failed", f"FAILED (exit {rc}; see {path / 'train.log'})", wall)
        if status not in runstore.FINISHED:
            return Outcome(run, "locked", "skipped: another process is training it", wall)
        metric = s.get("metric", "")
        value = s.get(f"test_{metric}")
        return Outcome(run, status, f"{status}, test {metric} {value:.4g}" if value is not None else status, wall)

    def _bar(self):
        if self.verbose or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=self.total, initial=self.done, unit="run", dynamic_ncols=True)

    def _print(self, bar, line: str) -> None:
        if bar is None:
            print(line, flush=True)
        else:
            bar.write(line)
