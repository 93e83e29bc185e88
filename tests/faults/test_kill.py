"""Kill -9 at many points of a run and of results collection: every rerun ends with exactly the
metrics of an uninterrupted run, and no half-written file is ever read."""
import json
import os
import random
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


def train(env, runs, kill_write=0, timeout=120):
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
def reference(env, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    p = train(env, runs)
    assert p.wait(timeout=120) == 0, p.stdout.read()
    return outcome(runs)


def _kill_and_resume(env, runs, kill_write=0, delay=None):
    p = train(env, runs, kill_write)
    if delay is not None:
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
    code = p.wait(timeout=120)
    assert code in (-signal.SIGKILL, 0), p.stdout.read()
    again = train(env, runs)
    assert again.wait(timeout=120) == 0, again.stdout.read()
    return code


@pytest.mark.parametrize("k", range(1, WRITES_PER_RUN + 1))
def test_kill_during_the_kth_file_write(env, reference, tmp_path, k):
    assert _kill_and_resume(env, tmp_path, kill_write=k) == -signal.SIGKILL
    assert outcome(tmp_path) == reference
    assert not list(tmp_path.rglob(".*.tmp")), "a killed writer's temp file survived the rerun"


@pytest.mark.parametrize("delay", [round(random.Random(i).uniform(1.5, 5.0), 2) for i in range(10)])
def test_kill_at_a_random_time(env, reference, tmp_path, delay):
    _kill_and_resume(env, tmp_path, delay=delay)
    assert outcome(tmp_path) == reference


@pytest.mark.parametrize("k", [1, 3, 5])
def test_kill_during_collection(env, reference, tmp_path, k):
    runs = tmp_path / "runs"
    assert train(env, runs).wait(timeout=120) == 0
    cmd = [sys.executable, "-m", "tests.faults.killer", "collect", str(runs), "cpu", str(tmp_path / "out")]
    killed = subprocess.run(cmd, env={**env, "QSD_KILL_WRITE": str(k)}, cwd=ROOT, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    subprocess.run(cmd, env=env, cwd=ROOT, check=True)
    clean = tmp_path / "clean"
    subprocess.run(cmd[:-1] + [str(clean)], env=env, cwd=ROOT, check=True)
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
