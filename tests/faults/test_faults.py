"""Corrupt checkpoints, full disks, concurrent sweeps and stale locks: nothing lost, nothing doubled."""
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qsd import io as qio
from qsd import runstore
from qsd.train import fit
from tests.test_train import SMALL, config, interrupt_after_checkpoint

ROOT = Path(__file__).resolve().parents[2]
THREE = ["model.widths=[16]", "train.epochs=3", "train.max_steps=null"]


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(tiny_root, tmp_path, monkeypatch, caplog):
    reference = fit(config(tiny_root, tmp_path / "ref", *SMALL, *THREE))
    cfg = config(tiny_root, tmp_path / "run", *SMALL, *THREE)
    interrupt_after_checkpoint(cfg, 2, monkeypatch)
    last = runstore.run_dir(cfg) / "ckpt-last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    resumed = fit(cfg)
    assert "resuming from the older checkpoint ckpt-prev.pt" in caplog.text
    strip = lambda s: {k: v for k, v in s.items() if k != "wall_s"}
    assert strip(resumed) == strip(reference)


def test_both_checkpoints_corrupt_starts_clean_and_says_so(tiny_root, tmp_path, caplog):
    cfg = config(tiny_root, tmp_path, *SMALL)
    path = runstore.run_dir(cfg)
    path.mkdir(parents=True)
    for name in ("ckpt-last.pt", "ckpt-prev.pt"):
        (path / name).write_bytes(b"\x80\x02garbage")
    assert fit(cfg)["status"] == "completed"
    assert "starting this run from scratch" in caplog.text


def test_disk_full_gives_a_clear_error_and_keeps_the_previous_state(tiny_root, tmp_path, monkeypatch):
    cfg = config(tiny_root, tmp_path, *SMALL, *THREE)
    real_write = qio.os.fdopen
    state = {"n": 0}

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fdopen(fd, mode="r", *a, **k):
        f = real_write(fd, mode, *a, **k)
        state["n"] += 1
        return FullFile(f) if state["n"] == 5 else f  # config, metrics, ckpt, metrics, ckpt (epoch 2)

    monkeypatch.setattr(qio.os, "fdopen", fdopen)
    with pytest.raises(qio.DiskFullError, match="no space left on device while writing .*ckpt-new.pt; files already on disk are unchanged"):
        fit(cfg)
    path = runstore.run_dir(cfg)
    assert not list(path.glob(".*.tmp"))
    assert torch.load(path / "ckpt-last.pt", weights_only=True)["epoch"] == 1
    assert not (path / "ckpt-new.pt").exists() and not (path / "ckpt-prev.pt").exists()
    monkeypatch.undo()
    assert fit(cfg)["epochs_done"] == 3  # the rerun resumes from the intact checkpoint


def test_a_locked_run_is_skipped_and_a_stale_lock_taken_over(tiny_root, tmp_path):
    cfg = config(tiny_root, tmp_path, *SMALL)
    path = runstore.run_dir(cfg)
    path.mkdir(parents=True)
    holder = runstore.RunLock(path)
    assert holder.acquire()
    assert fit(cfg)["status"] == "locked"
    assert not (path / "summary.json").exists()
    # a lock whose owner died on this host is stale
    (path / "run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345, "time": 0}))
    holder.held = False
    assert fit(cfg)["status"] == "completed"
    assert not (path / "run.lock").exists()


def test_only_one_of_two_contenders_takes_a_stale_lock(tmp_path):
    (tmp_path / "run.lock").write_text("{half-writ")  # unreadable owner: stale
    a, b = runstore.RunLock(tmp_path), runstore.RunLock(tmp_path)
    assert a.acquire() is True and b.acquire() is False
    fresh = (tmp_path / "run.lock").read_text()
    b._move_stale_aside()  # b judged the old lock stale before a replaced it: a's lock must stay
    assert (tmp_path / "run.lock").read_text() == fresh and b.acquire() is False


def test_a_taker_that_died_mid_takeover_is_outwaited(tmp_path):
    (tmp_path / "run.lock").write_text("{half-writ")
    token = tmp_path / "run.lock.takeover"
    token.touch()
    assert runstore.RunLock(tmp_path).acquire() is False  # a taker is at work: wait for it
    os.utime(token, (time.time() - 120, time.time() - 120))
    assert runstore.RunLock(tmp_path).acquire() is True and not token.exists()


def test_two_sweeps_at_once_train_each_run_once(tiny_root, tmp_path):
    env = {**os.environ, "QSD_DATA_ROOT": str(tiny_root), "QSD_RUNS_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qsd.train", "-m", "experiment=mlp_mnist", "regulariser=none,dropout,qsd",
           "seed=0,1", "model.widths=[64,64]", "train.epochs=3", "device=cpu", "train.progress=off"]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    summaries = list(tmp_path.rglob("summary.json"))
    assert len(summaries) == 6 and all(json.loads(s.read_text())["status"] == "completed" for s in summaries)
    for s in summaries:  # each run's final line was produced by exactly one process
        final = f"{s.parent.name} epoch 3/3"
        assert sum(log.count(final) for log in logs) == 1, s.parent.name
    assert not list(tmp_path.rglob("run.lock"))
