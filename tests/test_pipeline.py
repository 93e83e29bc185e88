"""End to end at smoke scale on tiny generated data: every sweep of every manifest runs through
Hydra's multirun (joblib launcher), results are collected, every figure and table is rendered;
a second invocation trains nothing; ``--render-only`` needs only results/."""
import csv
import os
import subprocess
import sys
import time

import pytest

from qsd.reproduce import manifests, sweep_commands

from .conftest import write_tiny_caches


def test_manifests_name_existing_renderers_and_experiments():
    ids = {m["id"] for m in manifests()}
    assert {f"fig{i}" for i in range(1, 10)} <= {i.split("_")[0] for i in ids}
    assert {"table1_summary", "table2_cost", "table3_tuned", "anchors"} <= ids
    asked = {" ".join(s["overrides"]): s.get("seeds", 5) for m in manifests() for s in m["sweeps"]}
    for cmd in sweep_commands("paper", 1):
        seeds = next(a for a in cmd if a.startswith("seed="))
        assert "scale=paper" in cmd and seeds == "seed=" + ",".join(map(str, range(asked[" ".join(cmd[6:-3])])))
    assert "seed=0" in {a for cmd in sweep_commands("paper", 1) for a in cmd}  # the published anchor: one seed


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    write_tiny_caches(base / "data")
    env = {**os.environ, "QSD_DATA_ROOT": str(base / "data"), "QSD_RUNS_ROOT": str(base / "runs"), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "qsd.reproduce", "--scale", "smoke", "--jobs", "2", "--results", str(base / "results")]
    t0 = time.time()
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return base, env, cmd, first, time.time() - t0


def test_smoke_suite_runs_end_to_end(smoke):
    base, _, _, run, _ = smoke
    assert run.returncode == 0, run.stderr[-3000:]
    out = base / "results" / "smoke"
    for m in manifests():
        assert (out / f"{m['id']}.csv").exists() and (out / f"{m['id']}.md").exists(), m["id"]
        if m["id"].startswith("fig"):
            assert (out / f"{m['id']}.png").stat().st_size > 1000 and (out / f"{m['id']}.pdf").exists()
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) >= 80 and {r["status"] for r in rows} <= {"completed", "diverged"}
    assert "SMOKE" in (out / "table1_summary.md").read_text()


def test_second_invocation_trains_nothing(smoke):
    base, env, cmd, _, first_s = smoke
    before = {p: p.stat().st_mtime_ns for p in (base / "runs").rglob("summary.json")}
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert before == {p: p.stat().st_mtime_ns for p in (base / "runs").rglob("summary.json")}


def test_render_only_needs_only_results(smoke):
    base, env, _, _, _ = smoke
    env = {**env, "QSD_RUNS_ROOT": str(base / "no-runs-here")}
    png = base / "results" / "smoke" / "fig2_mlp_curves.png"
    png.unlink()
    run = subprocess.run([sys.executable, "-m", "qsd.reproduce", "--scale", "smoke", "--render-only",
                          "--results", str(base / "results")], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and png.exists()


def test_unknown_only_id_fails_listing_the_ids_and_dry_run_counts_runs(tmp_path, capsys):
    from qsd.reproduce import main

    failed = tmp_path / "smoke" / "FAILED_SWEEPS.txt"
    failed.parent.mkdir()
    failed.write_text("a sweep\n")
    with pytest.raises(SystemExit) as err:
        main(["--scale", "smoke", "--only", "fig2", "--results", str(tmp_path)])
    assert err.value.code == 2 and "fig2_mlp_curves" in capsys.readouterr().err
    assert main(["--scale", "smoke", "--dry-run", "--only", "fig2_mlp_curves", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "qsd-train -m scale=smoke seed=0,1 experiment=mlp_mnist" in out and "# 6 runs in 1 sweeps" in out
    assert failed.exists()  # a dry run leaves the record of failed sweeps alone
