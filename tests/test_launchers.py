"""Sweeps through the launchers a user scales out with: joblib locally, and the submitit code path
(``hydra/launcher=local``, the same code as ``hydra/launcher=slurm``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("launcher", ["joblib", "local"])
def test_multirun_through_launcher(tiny_root, tmp_path, launcher):
    env = {**os.environ, "QSD_DATA_ROOT": str(tiny_root), "QSD_RUNS_ROOT": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qsd.train", "-m", f"hydra/launcher={launcher}", "experiment=mlp_mnist",
           "regulariser=dropout,qsd", "model.widths=[16]", "train.epochs=1", "device=cpu", "train.progress=off",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "runs").rglob("summary.json")]
    assert statuses == ["completed", "completed"]
