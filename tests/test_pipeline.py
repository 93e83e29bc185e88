"""End to end at smoke scale on tiny generated data: every run of every manifest goes through one
queue, results are collected (suite runs only) and committed under results/<scale>/runs/, every
figure and table is rendered; a second invocation trains nothing, even without the runs root;
``--render-only`` needs only results/."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from qsd import suite
from qsd.reproduce import manifests

from .conftest import write_tiny_caches


def test_manifests_name_existing_renderers_and_experiments():
    ids = {m["id"] for m in manifests()}
    assert {f"fig{i}" for i in range(1, 10)} <= {i.split("_")[0] for i in ids}
    assert {"table1_summary", "table2_cost", "table3_tuned", "anchors", "compute"} <= ids
    compute = next(m for m in manifests() if m["id"] == "compute")  # its caption names every training manifest's runs
    assert set(compute["uses"]) == {m["id"] for m in manifests() if m["sweeps"]}
    for figure, sweep, _ in suite.sweeps("paper"):
        assert figure in ids and sweep[0] == "scale=paper" and sweep[1].startswith("seed=0")


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
    planned = suite.plan("smoke")
    finished = {r.key: out / "runs" / r.key for r in planned if (out / "runs" / r.key / "summary.json").exists()}
    assert all(suite.needed(r, finished) for r in planned if r.key in finished)  # no longer run the gate ignores
    assert all(r.key in finished or suite.needed(r, finished) is False for r in planned)  # every other run
    assert any(not suite.needed(r, finished) for r in planned)
    continued = [r for r in planned if r.head_start and r.key in finished]  # the sentiment LSTMs' longer runs
    assert continued and all(json.loads((finished[r.key] / "summary.json").read_text())["continued_from"]["run"]
                             == r.lengthens for r in continued)
    assert len(rows) == len(finished) and {r["status"] for r in rows} <= {"completed", "diverged"}
    assert {r["threads"] for r in rows} == {"1"} and {r["jobs"] for r in rows} == {"2"}
    assert all(re.fullmatch(r".*CPU.* \([^)]+\), 1 thread\(s\)", r["device_name"]) for r in rows)  # e.g. AMD EPYC CPU (AVX512)
    assert "SMOKE" in (out / "table1_summary.md").read_text()
    sparsity = (out / "fig4_sparsity_diff.md").read_text()  # also where QSD matches dropout's P(m=0) or Var(m)
    assert all(c in sparsity for c in ("(a) recipe rate", "(c) QSD at equal P(m=0)", "(c) QSD at equal Var(m)"))
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"smoke scale: {len(planned)} runs, 0 already finished, about ")
    assert sum(line.startswith("[") for line in lines) == len(rows) and f"[{len(rows)}/{len(rows)}] " in run.stdout
    assert "epoch 1/" not in run.stdout and "Verdicts (results/smoke/table1_summary.md):" in run.stdout
    assert len(list((out / "runs").glob("*/*/summary.json"))) == len(rows)  # committed: small files only
    assert not list((out / "runs").rglob("*.pt"))


def test_second_invocation_trains_nothing(smoke):
    base, env, cmd, _, first_s = smoke
    kept = [*(base / "runs").rglob("summary.json"), base / "results" / "smoke" / "cost.json"]  # runs, measurement
    before = {p: p.stat().st_mtime_ns for p in kept}
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "cost.json exists (delete it to measure again)" in again.stdout
    assert before == {p: p.stat().st_mtime_ns for p in kept}


def test_committed_runs_are_enough_and_stray_runs_never_reach_a_figure(smoke, tmp_path):
    base, env, cmd, _, _ = smoke
    out = base / "results" / "smoke"
    before = {name: (out / name).read_text() for name in ("runs.csv", "weights_ks.csv")}
    stray = base / "runs" / "smoke" / "mlp_mnist" / "dropout-seed0-0000dead"  # e.g. qsd-train ... train.epochs=1
    shutil.copytree(next((base / "runs" / "smoke" / "mlp_mnist").glob("dropout-seed0-*")), stray)
    one = [*cmd, "--only", "fig2_mlp_curves"]  # collection reads every run; one figure is enough to render
    again = subprocess.run(one, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "ignored 1 run folder(s)" in again.stdout + again.stderr
    assert {name: (out / name).read_text() for name in before} == before
    # a fresh clone has no runs/: the committed runs (and the KS rows of their weights) stand in for it
    fresh = subprocess.run(one, env={**env, "QSD_RUNS_ROOT": str(tmp_path / "empty")}, capture_output=True, text=True)
    assert fresh.returncode == 0 and ", 0 already finished" not in fresh.stdout and "[1/" not in fresh.stdout
    assert {name: (out / name).read_text() for name in before} == before and before["weights_ks.csv"].count("\n") > 2


def test_collect_only_commits_runs_trained_elsewhere_and_trains_nothing(smoke, tmp_path):
    """A slice trained on another machine: its runs root alone (no committed runs here) is collected
    into a fresh results folder, giving the same runs.csv, and nothing is trained. What ``--pack``
    writes there (committed runs, KS rows; no weights), unpacked in another checkout, is all that
    checkout's --collect-only needs for the same runs.csv and KS rows."""
    base, env, _, _, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in (base / "runs").rglob("*") if p.is_file()}
    packed, collect = tmp_path / "slice.tgz", [sys.executable, "-m", "qsd.reproduce", "--scale", "smoke", "--collect-only"]
    run = subprocess.run([*collect, "--results", str(tmp_path / "results"), "--pack", str(packed)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[1/" not in run.stdout and before == {p: p.stat().st_mtime_ns for p in (base / "runs").rglob("*") if p.is_file()}
    fresh, built = tmp_path / "results" / "smoke", base / "results" / "smoke"
    assert (fresh / "runs.csv").read_text() == (built / "runs.csv").read_text()
    assert len(list((fresh / "runs").glob("*/*/summary.json"))) == len(list((built / "runs").glob("*/*/summary.json")))
    with tarfile.open(packed) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "checkout", filter="data")
    assert "results/smoke/weights_ks.csv" in names and not any(n.endswith((".pt", ".lock", ".log")) for n in names)
    elsewhere = subprocess.run([*collect, "--only", "fig1_masks", "--results", str(tmp_path / "checkout" / "results")],
                               env={**env, "QSD_RUNS_ROOT": str(tmp_path / "no-runs")}, capture_output=True, text=True)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    for name in ("runs.csv", "weights_ks.csv"):
        assert (tmp_path / "checkout" / "results" / "smoke" / name).read_text() == (built / name).read_text()


def test_replicate_trains_fresh_seeds_and_sets_each_verdict_beside_the_main_one(smoke):
    base, env, cmd, _, _ = smoke
    out = base / "results" / "smoke"
    before = {p: p.read_text() for p in out.glob("*.csv")}
    run = subprocess.run([*cmd, "--replicate", "--only", "fig2_mlp_curves"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = out / "replication"
    rows = list(csv.DictReader(open(fresh / "runs.csv")))
    assert {r["seed"] for r in rows} == {"2", "3"} and len(rows) == 10  # fig2's none, dropout, qsd, 1.5x dropout and QSD
    assert len(list((fresh / "runs").glob("*/*/summary.json"))) == 10
    assert {p: p.read_text() for p in out.glob("*.csv")} == before  # the main results are untouched
    table = list(csv.DictReader(open(fresh / "replication.csv")))
    assert "MLP / MNIST (error %)" in {r["experiment"] for r in table}  # table1 and table3 redrawn for it
    assert (fresh / "table3_tuned.csv").exists() and (fresh / "table1_summary.csv").exists()
    assert all(r["outcome"].startswith(("replicates", "does not replicate", "not tested (")) for r in table)
    assert "Replication of the main verdicts" in run.stdout and "(seeds 2-3)" in (fresh / "fig2_mlp_curves.md").read_text()
    drawn = {p: p.stat().st_mtime_ns for p in fresh.glob("*.*")}
    again = subprocess.run([*cmd, "--replicate", "--render-only"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]  # (make figures) redraws what is there, and adds nothing
    assert set(fresh.glob("*.*")) == set(drawn) and (fresh / "fig2_mlp_curves.png").stat().st_mtime_ns > drawn[fresh / "fig2_mlp_curves.png"]
    collected = (fresh / "runs.csv").read_text()
    (fresh / "runs.csv").write_text("".join(collected.splitlines(keepends=True)[:-1]))  # collected under other configs
    main = subprocess.run([*cmd, "--only", "fig2_mlp_curves"], env=env, capture_output=True, text=True)
    assert main.returncode == 0, main.stderr[-3000:]  # new main verdicts: the fresh seeds collected again beside them
    assert (fresh / "replication.md").stat().st_mtime_ns > drawn[fresh / "replication.md"]
    assert (fresh / "runs.csv").read_text() == collected


def test_render_only_needs_only_results(smoke):
    base, env, _, _, _ = smoke
    env = {**env, "QSD_RUNS_ROOT": str(base / "no-runs-here")}
    png = base / "results" / "smoke" / "fig2_mlp_curves.png"
    png.unlink()
    run = subprocess.run([sys.executable, "-m", "qsd.reproduce", "--scale", "smoke", "--render-only",
                          "--results", str(base / "results")], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and png.exists()
    none = subprocess.run([sys.executable, "-m", "qsd.reproduce", "--scale", "paper", "--render-only",
                           "--results", str(base / "results")], env=env, capture_output=True, text=True)
    assert none.returncode == 1 and "no collected runs for scale paper" in none.stderr
    assert not (base / "results" / "paper").exists()


def test_unknown_only_id_fails_listing_the_ids_and_dry_run_counts_runs(tmp_path, capsys):
    from qsd.reproduce import main

    failed = tmp_path / "smoke" / "FAILED_RUNS.txt"
    failed.parent.mkdir()
    failed.write_text("qsd-train a run\n")
    with pytest.raises(SystemExit) as err:
        main(["--scale", "smoke", "--only", "fig2", "--results", str(tmp_path)])
    assert err.value.code == 2 and "fig2_mlp_curves" in capsys.readouterr().err
    assert main(["--scale", "smoke", "--dry-run", "--only", "fig2_mlp_curves", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "qsd-train -m scale=smoke seed=0,1 experiment=mlp_mnist" in out and "# 10 distinct runs in 3 sweeps" in out
    assert "qsd-train -m scale=smoke seed=0,1 experiment=mlp_mnist regulariser=dropout train.epochs=" in out  # the gate's
    assert "qsd-train -m scale=smoke seed=0,1 experiment=mlp_mnist regulariser=qsd train.epochs=" in out  # on both arms
    assert out.startswith("smoke scale: 10 runs, 0 already finished, about ")
    assert "\n# fig2_mlp_curves: 10 run(s) to train, about " in out and "# fig3_mlp_rates" not in out  # a slice's cost
    assert failed.exists()  # a dry run leaves the record of failed runs alone


def test_experiments_narrows_the_runs_and_the_sweeps_it_prints(tmp_path, capsys):
    """A slice of one model (e.g. the MLP's runs on a machine lent for minutes): --experiments keeps the
    runs of those experiments, and a printed sweep over several experiments is cut to them."""
    from qsd.reproduce import main

    with pytest.raises(SystemExit) as err:
        main(["--scale", "smoke", "--experiments", "mlp", "--results", str(tmp_path)])
    assert err.value.code == 2 and "mlp_mnist" in capsys.readouterr().err
    args = ["--scale", "smoke", "--dry-run", "--only", "table3_tuned", "--experiments", "cnn_fashion"]
    assert main([*args, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smoke scale: 8 runs, 0 already finished") and "# 8 distinct runs in 2 sweeps" in out
    assert "experiment=cnn_fashion regulariser=qsd regulariser.mapping=failure,variance" in out and "mlp" not in out


def test_only_the_whole_suite_or_a_named_table_measures_the_cost():
    """table2's step-time benchmark runs with the whole suite or when --only names it, never in a slice
    by --experiments alone (a paper-scale slice on a CPU once spent minutes timing the WRN)."""
    from qsd.reproduce import benchmarks

    assert [m["id"] for m in benchmarks(None, None)] == ["table2_cost"]
    assert [m["id"] for m in benchmarks(["table2_cost", "fig2_mlp_curves"], ["mlp_mnist"])] == ["table2_cost"]
    assert benchmarks(None, ["lstm_rt"]) == [] and benchmarks(["fig2_mlp_curves"], None) == []


def test_set_takes_only_settings_outside_a_runs_identity_and_checks_them_before_training(tiny_root, tmp_path, capsys,
                                                                                          monkeypatch):
    """--set says how every run trains (device, CUDA graphs, compile): a key that would change the
    results is refused, a value is checked with every run it would train before any trains, the
    printed sweeps carry it."""
    from qsd.reproduce import main

    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))  # the data check passes, so the settings' check is what stops
    monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path / "runs"))
    base = ["--scale", "smoke", "--only", "fig2_mlp_curves", "--results", str(tmp_path)]
    with pytest.raises(SystemExit) as err:
        main([*base, "--set", "train.epochs=3"])
    assert err.value.code == 2 and "'train.epochs=3' is not KEY=VALUE with KEY one of device, train.cuda_graphs, " \
        "train.compile" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--set", "train.cuda_graphs=true"]) == 2
        assert "train.cuda_graphs=true needs a CUDA device; device=auto gave cpu" in capsys.readouterr().err
    assert not (tmp_path / "smoke" / "runs").exists() and not (tmp_path / "runs").exists()
    assert main([*base, "--dry-run", "--set", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "qsd-train -m scale=smoke seed=0,1 experiment=mlp_mnist regulariser=none,dropout,qsd device=cpu" in out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # only the checks ask; nothing trains
    only = lambda figure: ["--scale", "smoke", "--only", figure, "--dry-run", "--results", str(tmp_path)]
    assert main([*only("fig2_mlp_curves"), "--set", "train.cuda_graphs=true"]) == 0  # images can be captured,
    assert main([*only("fig7_lstm_lm"), "--set", "train.cuda_graphs=true"]) == 0  # and language models
    capsys.readouterr()
    assert main([*only("fig8_sentiment"), "--set", "train.cuda_graphs=true"]) == 2  # the length-bucketed reviews not
    assert "is 'text': train it with train.cuda_graphs=false" in capsys.readouterr().err


def test_data_not_prepared_stops_before_training_and_user_supplied_data_sets_its_runs_aside(tmp_path, capsys,
                                                                                           monkeypatch):
    """A data set the suite can fetch but nobody did stops it at once, saying how to fetch it; one only a user
    can supply (CIFAR-10) sets its runs aside, unless an experiment reading it was named."""
    from qsd.reproduce import absent_data, main

    root, runs_root = tmp_path / "data", tmp_path / "runs"
    write_tiny_caches(root)
    for name in ("rt", "cifar10"):
        shutil.rmtree(root / "cache" / name)
    monkeypatch.setenv("QSD_DATA_ROOT", str(root))
    monkeypatch.setenv("QSD_RUNS_ROOT", str(runs_root))
    assert main(["--scale", "smoke", "--only", "fig8_sentiment", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "data set 'rt'" in err and "qsd-data fetch rt" in err and "imdb" not in err and not runs_root.exists()
    runs = [suite.Run((), f"{e}/r", e, "none", 0, 1, d, 1) for e, d in (("wrn_cifar10", "cifar10"), ("mlp_mnist", "mnist"))]
    aside, blocking = absent_data(runs, None)
    assert list(aside) == ["cifar10"] and "cifar-10-batches-py/" in aside["cifar10"] and not blocking
    assert absent_data(runs, ["wrn_cifar10"]) == ({}, aside)
    assert main(["--scale", "paper", "--only", "fig6_cnn", "--dry-run", "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out  # the set-aside runs get no sweep to copy either
    assert "set aside: the " in out and "experiment=cnn_mnist" in out and "wrn_cifar10" not in out.split("set aside")[1]
