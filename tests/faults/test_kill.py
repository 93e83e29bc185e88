"""Kill -9 at many points of a run and of results collection: every rerun ends with exactly the
metrics of an uninterrupted run, and no half-written file is ever read. The uninterrupted run is a
fresh process; the killed and resumed ones are forked from a process that has imported everything
(``killer serve``), so each costs its run's time, not Python's and torch's start-up."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["experiment=mlp_mnist", "regulariser=qsd", "model.widths=[32,32]", "train.epochs=3",
             "train.batch_size=50", "device=cpu", "train.progress=off"]
WRITES_PER_RUN = 10  # config, 3 x (metrics, checkpoint), model, metrics, summary


class Forker:
    """``killer serve`` in a subprocess: ``start`` forks a child running a killer command, ``wait`` its
    exit code (negative: the signal that ended it)."""

    def __init__(self, env: dict):
        self.server = subprocess.Popen([sys.executable, "-m", "tests.faults.killer", "serve"], env=env, cwd=ROOT,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, command: list[str], log: Path, **env: str) -> int:
        self.server.stdin.write(json.dumps({"command": command, "env": env, "log": str(log)}) + "\n")
        self.server.stdin.flush()
        return int(self._read())

    def wait(self) -> int:
        return int(self._read())

    def run(self, command: list[str], log: Path, **env: str) -> int:
        self.start(command, log, **env)
        return self.wait()

    def _read(self) -> str:
        line = self.server.stdout.readline()
        assert line, f"the fork server died (exit {self.server.poll()})"
        return line

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)


def train(env, runs, kill_write=0):
    env = {**env, "QSD_RUNS_ROOT": str(runs), **({"QSD_KILL_WRITE": str(kill_write)} if kill_write else {})}
    return subprocess.Popen([sys.executable, "-m", "tests.faults.killer", "train", *OVERRIDES], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outcome(runs: Path) -> tuple[list[dict], dict]:
    (run,) = [p for p in runs.rglob("summary.json")]
    summary = json.loads(run.read_text())
    rows = [json.loads(l) for l in (run.parent / "metrics.jsonl").read_text().splitlines()]
    drop = lambda d: {k: v for k, v in d.items() if k not in ("wall_s",)}
    return [drop(r) for r in rows], drop(summary)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.conftest import write_tiny_caches

    data = tmp_path_factory.mktemp("killdata")
    write_tiny_caches(data)
    return {**os.environ, "QSD_DATA_ROOT": str(data), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}


@pytest.fixture(scope="module")
def reference_runs(env, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    p = train(env, runs)
    assert p.wait(timeout=120) == 0, p.stdout.read()
    return runs


@pytest.fixture(scope="module")
def reference(reference_runs):
    return outcome(reference_runs)


@pytest.fixture(scope="module")
def window(reference_runs) -> float:
    """Seconds from the run's first file (its config) to its last (its summary), uninterrupted."""
    (first,), (last,) = reference_runs.rglob("config.yaml"), reference_runs.rglob("summary.json")
    return last.stat().st_mtime - first.stat().st_mtime


@pytest.fixture(scope="module")
def forker(env):
    f = Forker(env)
    yield f
    f.close()


def _kill_and_resume(forker, runs, kill_write=0, delay=None):
    """Train, killed at the ``kill_write``-th file write or ``delay`` s after the run's first file, then resume."""
    log = runs.parent / f"{runs.name}.log"
    kill = {"QSD_KILL_WRITE": str(kill_write)} if kill_write else {}
    pid = forker.start(["train", *OVERRIDES], log, QSD_RUNS_ROOT=str(runs), **kill)
    if delay is not None:
        deadline = time.time() + 60
        while not list(runs.rglob("config.yaml")) and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it had finished
            pass
    code = forker.wait()
    assert code in (-signal.SIGKILL, 0), log.read_text()[-3000:]
    assert forker.run(["train", *OVERRIDES], log, QSD_RUNS_ROOT=str(runs)) == 0, log.read_text()[-3000:]
    return code


@pytest.mark.parametrize("k", range(1, WRITES_PER_RUN + 1))
def test_kill_during_the_kth_file_write(forker, reference, tmp_path, k):
    assert _kill_and_resume(forker, tmp_path / "runs", kill_write=k) == -signal.SIGKILL
    assert outcome(tmp_path / "runs") == reference
    assert not list(tmp_path.rglob(".*.tmp")), "a killed writer's temp file survived the rerun"


@pytest.mark.parametrize("when", [round(random.Random(i).random(), 2) for i in range(10)])
def test_kill_at_a_random_time(forker, reference, window, tmp_path, when):
    """Killed ``when`` of the way through the uninterrupted run's writing, from its config to its summary."""
    _kill_and_resume(forker, tmp_path / "runs", delay=when * window)
    assert outcome(tmp_path / "runs") == reference


@pytest.mark.parametrize("k", [1, 3, 5])
def test_kill_during_collection(forker, reference_runs, tmp_path, k):
    runs, log = tmp_path / "runs", tmp_path / "collect.log"
    shutil.copytree(reference_runs, runs)
    cmd = ["collect", str(runs), "cpu", str(tmp_path / "out")]
    assert forker.run(cmd, log, QSD_KILL_WRITE=str(k)) == -signal.SIGKILL
    assert forker.run(cmd, log) == 0, log.read_text()[-3000:]
    clean = tmp_path / "clean"
    assert forker.run(cmd[:-1] + [str(clean)], log) == 0, log.read_text()[-3000:]
    assert list(clean.glob("*.csv"))
    for f in clean.glob("*.csv"):
        assert (tmp_path / "out" / f.name).read_text() == f.read_text()


def test_a_kill_to_the_whole_process_group_stops_a_worker_cleanly(env, tmp_path):
    """`timeout` and batch schedulers signal the whole process group, so the queue's workers get the
    kill too: a worker stops its run as on Ctrl-C, keeping the last checkpoint and releasing the lock."""
    p = subprocess.Popen([sys.executable, "-m", "qsd.worker"], env={**env, "QSD_RUNS_ROOT": str(tmp_path)}, cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    long_run = [o if not o.startswith("train.epochs=") else "train.epochs=500" for o in OVERRIDES]
    p.stdin.write(json.dumps(long_run) + "\n")
    p.stdin.flush()
    deadline = time.time() + 120
    while not list(tmp_path.rglob("ckpt-last.pt")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.rglob("run.lock")), "the run should be in flight"
    os.killpg(p.pid, signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 130, out[-3000:]
    assert not list(tmp_path.rglob("run.lock")) and list(tmp_path.rglob("ckpt-last.pt"))
