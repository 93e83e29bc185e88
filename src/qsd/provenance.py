"""Which code and device produced a number: the git commit of this checkout (``unknown`` outside git)
and the device's name."""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import subprocess
from pathlib import Path

import torch


def short_commit(commit: str) -> str:
    """A full 40-digit hash as git's short one (7 digits); anything else as it is."""
    return commit[:7] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


CODE = ("src", "configs", "experiments", "benchmarks", "pyproject.toml")  # what a run's numbers depend on


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Short hash of the code's commit: the last one that changed what produces numbers (``CODE``: the
    package, configs, manifests, benchmarks and pins), with ``+dirty`` when those files differ from it.
    Committing results, or README and tests, changes no label. ``$QSD_COMMIT``, where
    set, is taken instead: for a copy of the checkout whose git metadata is not its own (a lent GPU
    machine receives the working tree of a given commit, with the history of another)."""
    if os.environ.get("QSD_COMMIT"):
        return short_commit(os.environ["QSD_COMMIT"])
    return checkout_commit(Path(__file__).parent)


def checkout_commit(where: Path) -> str:
    """The commit of the git checkout holding ``where``, as ``git_commit`` describes it; ``unknown``
    outside git."""
    try:
        run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=where, check=True).stdout.strip()
        code = ("--", *(f":(top){path}" for path in CODE))
        changed = run("status", "--porcelain", "--untracked-files=no", *code)
        return run("log", "-1", "--format=%h", *code) + ("+dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pair_commit(*commits: str) -> str:
    """The commits of runs whose outputs were combined (e.g. a dropout and a QSD run's weights), as one
    label: each once, sorted, joined by ``+``."""
    return "+".join(sorted(set(commits)))


def device_name(device) -> str:
    """What a run or timing ran on: the GPU's name, or the CPU, the instruction set its kernels use
    (``cpu_isa``) and the thread count."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    name = cpu_model()
    return f"{name}{'' if 'CPU' in name else ' CPU'} ({cpu_isa()}), {torch.get_num_threads()} thread(s)"


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The instruction set a CPU run's kernels dispatch on, which moves its last digits: ATen's
    (``AVX512``, ``AVX2``, ...), and oneDNN's cap where ``DNNL_MAX_CPU_ISA`` sets one (``nn.LSTM`` runs
    through oneDNN, whose AVX, AVX2 and AVX-512 paths round differently; docs/reliability.md)."""
    cap = os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA")
    return torch.backends.cpu.get_cpu_capability() + (f"; oneDNN at most {cap}" if cap else "")
