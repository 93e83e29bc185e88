"""The suite's plan (every manifest run, composed once, named by its folder) and the queue that
trains it: persistent workers, results independent of the number of parallel runs, failures recorded."""
import dataclasses
import json

import pytest
from hydra import compose, initialize_config_dir

from qsd import runstore, suite
from qsd.runqueue import START_S, Queue, auto_jobs, clock, stack_group
from qsd.train import CONFIG_DIR

TINY = ["scale=smoke", "model.widths=[16]", "train.epochs=2", "device=cpu"]


def _runs(*override_lists: list[str]) -> list[suite.Run]:
    runs = []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for overrides in override_lists:
            cfg = compose("train", overrides=overrides)
            runs.append(suite.Run(tuple(overrides), runstore.run_key(cfg), cfg.name, cfg.regulariser.name, cfg.seed, 1,
                                  cfg.data.name, cfg.train.epochs))
    return runs


def test_fast_composition_equals_hydras():
    runs = suite.plan("smoke")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for run in runs[::5]:
            assert runstore.run_key(compose("train", overrides=list(run.overrides))) == run.key, run.label


def test_plan_lists_each_run_once_with_the_manifests_seeds():
    runs = suite.plan("paper")
    assert len({r.key for r in runs}) == len(runs)
    assert [r.seed for r in runs if r.experiment == "lstm_ptb_small"] == [0]  # the published anchor: one seed
    assert {r.seed for r in runs if r.experiment == "mlp_mnist"} == set(range(suite.SEEDS["paper"]))
    shared = next(r for r in runs if r.label == "mlp_mnist dropout seed 0")  # the recipe run: one run, many figures
    assert {"fig2_mlp_curves", "fig3_mlp_rates", "fig4_sparsity", "table3_tuned"} <= shared.figures


def test_the_replication_is_the_same_runs_on_fresh_seeds():
    main, fresh = suite.plan("smoke"), suite.plan("smoke", replicate=True)
    n = suite.SEEDS["smoke"]
    assert list(suite.seeds("smoke", replicate=True)) == list(range(n, 2 * n)) and list(suite.seeds("smoke", 1)) == [0]
    assert {r.seed for r in fresh} == set(range(n, 2 * n)) and not {r.key for r in main} & {r.key for r in fresh}
    shift = lambda r: tuple(f"seed={r.seed + n}" if o.startswith("seed=") else o for o in r.overrides)
    assert sorted(shift(r) for r in main) == sorted(r.overrides for r in fresh)


def test_every_gated_run_has_its_longer_twin():
    """The gate's convergence test, on both arms: each dropout and QSD run of a convergence_check sweep is
    also planned with 1.5x the epochs, named by the run it lengthens, and nothing else changes."""
    runs = suite.plan("cpu")
    by_name = {(r.experiment, r.key.split("/")[1]): r for r in runs}
    twins = [r for r in runs if r.lengthens]
    assert {r.experiment for r in twins} == {"mlp_mnist", "cnn_fashion", "cnn_fashion_extra", "lstm_imdb", "lstm_rt"}
    count = lambda reg: sum(r.regulariser == reg for r in twins)
    # MLP grid 5 x 5 (fig2's recipe-rate runs among them), CNN grid 5 x 5 and +BN+WD+aug 5, sentiment grids 7 x 5;
    # QSD's also table3 (c)'s failure and variance runs of the MLP and the CNN
    assert count("dropout") == 25 + 25 + 5 + 35 + 35 and count("qsd") == 25 + 10 + 25 + 10 + 5 + 35 + 35
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for twin in twins[::7]:
            standard = by_name[(twin.experiment, twin.lengthens)]
            assert twin.overrides[-1].startswith("train.epochs=") and not standard.lengthens
            long, short = (compose("train", overrides=list(r.overrides)) for r in (twin, standard))
            assert long.train.epochs == -(-3 * short.train.epochs // 2)
            long.train.epochs = short.train.epochs
            assert runstore.identity(long) == runstore.identity(short), twin.label
    # the sentiment LSTMs' schedule is constant: their longer runs train on from the end of the run they lengthen;
    # the MLP's and CNNs' is cosine, annealed over train.epochs: theirs start afresh
    for twin in twins:
        assert twin.head_start == (by_name[(twin.experiment, twin.lengthens)].epochs
                                   if twin.experiment.startswith("lstm") else 0), twin.label


def test_a_longer_run_with_a_head_start_waits_for_the_run_it_lengthens(tmp_path):
    standard = suite.Run((), "lstm_imdb/dropout-seed0-a", "lstm_imdb", "dropout", 0, 1, "imdb", 10)
    longer = suite.Run((), "lstm_imdb/dropout-seed0-b", "lstm_imdb", "dropout", 0, 1, "imdb", 15,
                       lengthens="dropout-seed0-a", head_start=10)
    afresh = dataclasses.replace(longer, key="lstm_imdb/dropout-seed0-c", head_start=0)  # a cosine schedule's
    assert suite.split_by_need([standard, longer, afresh], {}) == ([standard, afresh], [longer], [])
    assert suite.split_by_need([longer], {}) == ([longer], [], [])  # the run it lengthens finished (or is not asked for)
    queue = Queue([standard], 0, 1, tmp_path, "cpu", {"lstm_imdb": 2.0})
    assert queue.seconds(longer) == pytest.approx(START_S + 10.0)  # 5 epochs after the 10 it takes
    alone = Queue([], 0, 1, tmp_path, "cpu", {"lstm_imdb": 2.0})
    assert alone.seconds(longer) == pytest.approx(START_S + 30.0)  # nothing to take: it trains from scratch
    (tmp_path / standard.key).mkdir(parents=True)
    (tmp_path / standard.key / "ckpt-last.pt").write_bytes(b"")
    for status, device, seconds in (("failed", "cpu", 30.0), ("completed", "cuda:0", 30.0), ("completed", "cpu", 10.0)):
        runstore.write_summary(tmp_path / standard.key, {"status": status, "device": device})
        assert alone.seconds(longer) == pytest.approx(START_S + seconds), (status, device)
        # once its standard's job has ended: trained on from its end, else held for a rerun to resume that first
        waiting = suite.Waiting([longer], {}, tmp_path, "cpu")
        assert (waiting.release([]), waiting.held()) == (([longer], []) if seconds == 10.0 else ([], [longer]))


def test_a_waiting_run_joins_the_queue_as_soon_as_the_run_it_lengthens_completes(tiny_root, tmp_path, monkeypatch):
    """The gate's longer runs do not wait for the whole queue to drain (a GPU slot would idle at its tail):
    ``suite.Waiting`` releases each to the running queue once the run it lengthens has completed, behind the
    runs queued before it, and it trains on from that run's end."""
    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path))
    root, flat = tmp_path / "smoke", [*TINY, "optim.schedule=constant"]
    standard, other, longer, extra = _runs(["experiment=mlp_mnist", "seed=0", *flat],
                                           ["experiment=mlp_mnist", "seed=1", *flat],
                                           ["experiment=mlp_mnist", "seed=0", *flat, "train.epochs=3"],
                                           ["experiment=mlp_mnist", "seed=2", *flat])
    longer = dataclasses.replace(longer, lengthens=standard.key.split("/")[1], head_start=2)
    later = suite.Waiting([longer], {}, root, "cpu")
    calls = []

    def release(done):
        ready = later.release(done)
        calls.append(([r.key for r in done], [r.key for r in ready]))
        return ready

    queue = Queue([standard, other], 0, 1, root, "smoke", {})
    assert queue.order() == [standard, other] and queue.start(longer) == 2
    outcomes = queue.run(release)
    assert calls[0] == ([standard.key], [longer.key])  # released by the first job, while `other` still waited
    assert [o.run for o in outcomes] == [standard, other, longer] and not later.runs and not later.held()
    assert [o.status for o in outcomes] == ["completed"] * 3 and queue.total == 3
    assert json.loads((root / longer.key / "summary.json").read_text())["continued_from"]["run"] == standard.key.split("/")[1]
    assert later.finished.keys() == {standard.key, other.key, longer.key}
    held = suite.Waiting([dataclasses.replace(longer, key="mlp_mnist/x", lengthens="never-ran")], {}, root, "cpu")
    assert held.release([standard]) == [] and len(held.held()) == 1  # its standard did not complete here
    # a run ready once the queue has drained (nothing ended to release it) still joins
    once = iter([[extra]])
    assert [o.run for o in Queue([], 0, 1, root, "smoke", {}).run(lambda done: next(once, []))] == [extra]


def test_the_queue_starts_the_longest_runs_first_then_seed_by_seed(tmp_path):
    """Among runs as long, a slice stopped part-way should leave every regulariser of its first seeds
    finished (pairs to compare), not all the seeds of one regulariser."""
    runs = [r for r in suite.plan("paper") if r.experiment in ("mlp_sensitivity", "cnn_mnist") and not r.lengthens]
    order = Queue(runs, 0, 10, tmp_path, "paper", {"cnn_mnist": 5.0, "mlp_sensitivity": 1.0}).order()
    cnn = [r for r in order if r.experiment == "cnn_mnist"]
    assert order[:len(cnn)] == cnn  # 50 epochs at 5 s beat 100 at 1 s
    assert [r.seed for r in cnn] == sorted(r.seed for r in cnn)
    assert {r.regulariser for r in cnn if r.seed == 0} == {r.regulariser for r in cnn} == {"none", "dropout", "qsd"}
    untimed = [r for r in suite.plan("paper") if r.experiment == "cnn_mnist"]  # the gate's 75-epoch runs, guessed
    order = Queue(untimed, 0, 10, tmp_path, "paper", {}, device="cuda").order()
    assert [r.epochs for r in order] == [75] * 10 + [50] * 15 and [r.seed for r in order[:10]] == sorted([0, 1, 2, 3, 4] * 2)


def test_a_paper_run_never_timed_on_a_cpu_is_not_guessed(tmp_path):
    """A paper run takes minutes (the MLP) to days (the WRN) on a CPU, so one whose experiment has no CPU pace
    yet is left out of the time left, said to be, ordered first (as the longest), and not started under a
    time budget; on a GPU the same run is guessed."""
    runs = [r for r in suite.plan("paper") if r.experiment in ("mlp_sensitivity", "cnn_mnist") and not r.lengthens]
    cnn = [r for r in runs if r.experiment == "cnn_mnist"]
    queue = Queue(runs, 0, 2, tmp_path, "paper", {"mlp_sensitivity": 1.0}, budget_s=1e6, device="cpu")
    assert all(queue.seconds(r) is None for r in cnn) and queue.order()[:len(cnn)] == sorted(cnn, key=lambda r: r.seed)
    mlp = [r for r in runs if r.experiment == "mlp_sensitivity"]
    mlp_s = queue.left_s(mlp)[0]
    assert queue.left_s(runs) == (mlp_s, len(cnn)) and mlp_s > 0 and queue.left_s(mlp)[1] == 0
    text = queue.time_left(runs)
    assert text.startswith(f"about {clock(mlp_s)} left on 2 parallel run(s)")
    assert f"not counting {len(cnn)} whose experiment was not timed on cpu yet" in text
    assert queue.time_left(cnn).startswith(f"time left unknown (none of the {len(cnn)} runs' experiments")
    assert "no pace recorded on cpu" in queue._over_budget(cnn[:1], 0.0) and queue._over_budget(mlp[:1], 0.0) == ""
    gpu = Queue(runs, 0, 2, tmp_path, "paper", {}, device="cuda:0")
    assert gpu.seconds(cnn[0]) == pytest.approx(300.0) and "a guess" in gpu.time_left(runs)


def test_a_longer_run_on_a_grid_trains_only_at_the_rate_its_seed_is_given(tmp_path):
    """The gate reads a grid's longer run only at the point the seed is given on the other seeds' validation
    (table3 b, leave one seed out), so the queue trains none until every seed's grid has finished, then the
    given point's alone; the longer runs of the recipe's rate (fig2, off the grid) are always trained."""
    runs = suite.plan("cpu")
    longer = [r for r in runs if r.lengthens and r.experiment == "mlp_mnist" and r.regulariser == "dropout"]
    recipe = [r for r in longer if not r.grid]
    assert len(recipe) == 5 and all(suite.needed(r, {}) for r in recipe)  # fig2's: the recipe rate 0.5
    seed0 = [r for r in longer if r.grid and r.seed == 0]
    grid = seed0[0].grid
    own = [k for k in grid if "-seed0-" in k]
    assert len(seed0) == 4 and len(grid) == 25 and all(r.grid == grid and f"mlp_mnist/{r.lengthens}" in own
                                                       for r in seed0)
    assert {suite.needed(r, {}) for r in seed0} == {None}  # the grid has not run yet
    finished = {}
    for key in grid:  # seed 0's own best point is the fourth; the other seeds' is the second (a tie with the fourth)
        valid, status = ((2.9, 2.7, 2.8, 2.7, 3.5), ["completed"] * 4 + ["diverged"]) if "-seed0-" not in key else \
            ((2.9, 2.9, 2.9, 1.0, 2.9), ["completed"] * 5)
        point = [k for k in grid if k.split("-seed")[1][0] == key.split("-seed")[1][0]].index(key)
        (tmp_path / key).mkdir(parents=True)
        (tmp_path / key / "summary.json").write_text(json.dumps(
            {"status": status[point], "metric": "error", "final_valid": {"error": valid[point]}}))
        finished[key] = tmp_path / key
    del finished[grid[-1]]
    assert {suite.needed(r, finished) for r in seed0} == {None}  # another seed's point still running
    finished[grid[-1]] = tmp_path / grid[-1]
    picked = [r for r in seed0 if suite.needed(r, finished)]  # the others' 2.7 at the second and fourth: the lower rate
    assert [f"mlp_mnist/{r.lengthens}" for r in picked] == [own[1]]
    assert sum(suite.needed(r, finished) is False for r in seed0) == 3


def test_time_estimates_follow_each_runs_epochs(tmp_path):
    """A run's expected time is its experiment's recorded pace per epoch on the same kind of device times
    its own epochs, so a time-budgeted slice does not start a 1.5x-epochs run on a 1x estimate, nor plan
    a CPU's runs by a GPU's pace (or a GPU's by a CPU's, which would never start them in a slice), nor
    plan 16 runs on one GPU by the pace of 4 sharing it; a stopped run counts only the epochs it has left."""
    from qsd.runqueue import estimates

    for name, wall, epochs, device, width in (("dropout-seed0-a", 80.0, 40, "cpu", 2),
                                              ("dropout-seed1-b", 126.0, 60, "cpu", 2),
                                              ("dropout-seed2-c", 8.0, 40, "cuda:1", 4),
                                              ("dropout-seed3-d", 12.0, 40, "cuda", None)):
        (tmp_path / "mlp_mnist" / name).mkdir(parents=True)
        (tmp_path / "mlp_mnist" / name / "summary.json").write_text(
            json.dumps({"wall_s": wall, "epochs_done": epochs, "device": device, "jobs": width}))
    finished = {f"mlp_mnist/{p.name}": p for p in (tmp_path / "mlp_mnist").iterdir()}
    pace = estimates(finished, "cpu", 2)
    assert pace == {"mlp_mnist": 2.05} == estimates(finished, "cpu", 8)  # the GPU's runs say nothing of a CPU's
    assert estimates(finished, "cuda", 4) == estimates(finished, "cuda", 1) == {"mlp_mnist": pytest.approx(0.25)}
    # four times as many on the GPU: the run recorded at 4 wide takes four times as long; the one that
    # did not record its width is taken as it is
    assert estimates(finished, "cuda", 16) == {"mlp_mnist": pytest.approx((0.8 + 0.3) / 2)}
    assert estimates(finished, "mps", 1) == {}
    short, long = (suite.Run((), f"mlp_mnist/x{e}", "mlp_mnist", "dropout", 0, 1, "mnist", e) for e in (40, 60))
    queue = Queue([short, long], 0, 1, tmp_path, "cpu", pace)
    assert queue.seconds(short) == pytest.approx(START_S + 82.0) and queue.seconds(long) == pytest.approx(START_S + 123.0)
    (tmp_path / "mlp_mnist" / "x60").mkdir()  # stopped after 20 of its 60 epochs: it resumes with 40 left
    (tmp_path / "mlp_mnist" / "x60" / "metrics.jsonl").write_text('{"epoch": 1}\n' * 20)
    assert queue.seconds(long) == pytest.approx(START_S + 82.0)


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_results_do_not_depend_on_the_number_of_parallel_runs(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))
    runs = _runs(["experiment=mlp_mnist", "regulariser=dropout", "seed=0", *TINY],
                 ["experiment=mlp_mnist", "regulariser=qsd", "seed=0", *TINY],
                 ["experiment=mlp_mnist", "regulariser=qsd", "seed=1", *TINY])
    metrics = {}
    for jobs in (1, 2):
        monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path / f"jobs{jobs}"))
        root = tmp_path / f"jobs{jobs}" / "smoke"
        queue = Queue(runs, 0, jobs, root, "smoke", {})
        outcomes = queue.run()
        assert [o.status for o in outcomes] == ["completed"] * 3
        metrics[jobs] = {r.key: _metrics(root / r.key) for r in runs}
        summaries = [json.loads((root / r.key / "summary.json").read_text()) for r in runs]
        assert all(s["threads"] == 1 for s in summaries)
        last = json.loads((root / outcomes[-1].run.key / "summary.json").read_text())
        assert queue.estimate["mlp_mnist"] == last["wall_s"] / last["epochs_done"]  # the pace it learned
    assert metrics[1] == metrics[2]


def test_a_stacked_queue_trains_each_run_as_one_run_a_process_does(tiny_root, tmp_path, monkeypatch):
    """``--stack``: compatible runs go to one worker as one job; each run's folder, status and numbers are its
    single run's (to float rounding), with ``stack`` recorded; runs of another schedule form their own job."""
    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))
    runs = _runs(*[["experiment=mlp_mnist", f"regulariser={reg}", f"seed={seed}", *TINY]
                   for reg, seed in (("dropout", 0), ("qsd", 0), ("qsd", 1))],
                 ["experiment=mlp_mnist", "regulariser=qsd", "seed=0", *TINY, "train.epochs=3"])
    metrics = {}
    for stack in (1, 4):
        monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path / f"stack{stack}"))
        root = tmp_path / f"stack{stack}" / "smoke"
        queue = Queue(runs, 0, 1, root, "smoke", {}, stack=stack)
        assert sorted(o.status for o in queue.run()) == ["completed"] * 4
        metrics[stack] = {r.key: _metrics(root / r.key) for r in runs}
        assert [json.loads((root / r.key / "summary.json").read_text())["stack"] for r in runs] == \
            ([1] * 4 if stack == 1 else [3, 3, 3, 1])
    for key, rows in metrics[1].items():
        for row, want in zip(metrics[4][key], rows, strict=True):
            assert row.keys() == want.keys()
            assert all(row[k] == pytest.approx(v, rel=1e-5) for k, v in want.items())


def test_auto_stacks_fill_the_gpu_by_measured_memory_and_never_on_a_cpu(tmp_path):
    runs = [r for r in suite.plan("paper") if r.experiment == "mlp_mnist" and not r.lengthens and not r.grid]
    cpu = Queue(runs, 0, 2, tmp_path, "paper", {}, device="cpu", stack="auto")
    assert cpu.stack_size(runs[0]) == 1
    unmeasured = Queue(runs, 0, 2, tmp_path, "paper", {}, device="cuda", stack="auto")
    assert unmeasured.stack_size(runs[0]) == 2  # FIRST_STACK: it measures the memory a run takes
    gpu = Queue(runs, 0, 2, tmp_path, "paper", {}, device="cuda", stack="auto", memory={"mlp_mnist": 100.0})
    gpu.gpu_mib = 10_000.0  # 80% of it, shared by 2 workers, less a worker's context: 2,976 MiB, 29 runs at 100
    assert gpu.stack_size(runs[0]) == 29
    pending = gpu.order()
    job = gpu.next_job(pending)
    assert len(job) == min(29, len([r for r in runs if stack_group(r) == stack_group(job[0])]))
    assert len({stack_group(r) for r in job}) == 1 and not set(job) & set(pending)
    assert Queue(runs, 0, 1, tmp_path, "paper", {}, stack=3).next_job(list(runs)) == runs[:3]
    gpu.shrunk["mlp_mnist"] = 14  # a stack of 29 failed whole (out of memory, say): half as many from then on
    assert gpu.stack_size(runs[0]) == 14


def test_settings_reach_every_run_and_leave_its_folder_alone(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path))
    runs = _runs(["experiment=mlp_mnist", "seed=0", *TINY[:-1]])  # device left to the setting
    assert [o.status for o in Queue(runs, 0, 1, tmp_path / "smoke", "smoke", {}, settings=["device=cpu"]).run()] == ["completed"]
    path = tmp_path / "smoke" / runs[0].key
    assert json.loads((path / "summary.json").read_text())["device"] == "cpu"
    assert "device=cpu train.progress=off" in (path / "train.log").read_text().splitlines()[0]


def test_a_failed_run_is_recorded_and_the_queue_goes_on(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSD_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("QSD_RUNS_ROOT", str(tmp_path))
    bad, good = _runs(["experiment=mlp_mnist", "seed=0", f"paths.data={tmp_path / 'nowhere'}", *TINY],
                      ["experiment=mlp_mnist", "seed=1", *TINY])
    outcomes = Queue([bad, good], 0, 1, tmp_path / "smoke", "smoke", {}).run()
    assert [o.status for o in outcomes] == ["failed", "completed"]
    assert "qsd-data fetch mnist" in (tmp_path / "smoke" / bad.key / "train.log").read_text()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1/2] mlp_mnist dropout seed 0 [") and "FAILED (exit 2; see " in lines[0]
    assert lines[1].startswith("[2/2] mlp_mnist dropout seed 1") and "completed, test error" in lines[1] and "ETA" in lines[1]


def test_time_budget_starts_only_runs_that_fit(tmp_path):
    runs = _runs(["experiment=mlp_mnist", "seed=0", *TINY], ["experiment=lstm_ptb", "seed=0", "scale=smoke"])
    outcomes = Queue(runs, 0, 1, tmp_path, "smoke", {"mlp_mnist": 1e9, "lstm_ptb": 1e9}, budget_s=60).run()
    assert [o.status for o in outcomes] == ["stopped", "stopped"] and not any(tmp_path.iterdir())


def test_a_stack_of_runs_starting_from_different_epochs_is_budgeted_as_stacks_in_turn(tmp_path):
    """On CUDA, where a stack was never timed, a stack is budgeted as long as its longest run; but runs that
    start from different epochs (one stopped part-way) train as separate stacks, one after the other."""
    runs = [suite.Run((), f"mlp_mnist/dropout-seed{s}-x", "mlp_mnist", "dropout", s, 1, "mnist", 10) for s in (0, 1)]
    queue = Queue(runs, 0, 1, tmp_path, "paper", {"mlp_mnist": 6.0}, device="cuda", budget_s=80.0)
    assert queue._over_budget(runs, 10.0) == ""  # both from scratch: one stack of 64 s
    (tmp_path / runs[1].key).mkdir(parents=True)  # stopped after 5 of its 10 epochs
    (tmp_path / runs[1].key / "metrics.jsonl").write_text('{"epoch": 1}\n' * 5)
    assert queue.start(runs[1]) == 5 and queue._over_budget(runs, 0.0) == "over the time budget"  # 64 s, then 34 s


def test_jobs_auto_and_clock():
    assert auto_jobs() >= 1
    assert (clock(42), clock(420), clock(3900)) == ("42 s", "7 min", "1 h 05 min")


def test_stop_reaches_workers_that_ignore_sigint(tmp_path):
    """A queue started in the background (`cmd &`) starts its workers with SIGINT ignored: stop() must
    still end each run as Ctrl-C does (the worker's SIGTERM handler), not by SIGKILL."""
    import signal
    import subprocess
    import sys

    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, signal.default_int_handler)\n"
             "print('ready', flush=True)\n"
             "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(130)\n")
    queue = Queue([], 0, 1, tmp_path, "smoke", {})
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout.readline().strip() == "ready"
    queue.workers.add(proc)
    queue.stop()
    assert proc.wait(5) == 130
