"""Statistics and collection: known answers, and collection that tolerates runs in progress."""
import json
import math

import pytest
import torch
import yaml
from scipy import stats as sst

from qsd.report.collect import _to_csv, collect
from qsd.report.recipes import CONFIGS
from qsd.report.stats import mean_ci, paired_difference, verdict
from qsd.report.tables import read_csv


def test_mean_ci_is_a_t_interval():
    s = mean_ci([1.0, 2.0, 3.0])
    half = sst.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert s["mean"] == 2.0 and s["sd"] == 1.0 and s["n"] == 3
    assert s["lo"] == pytest.approx(2 - half) and s["hi"] == pytest.approx(2 + half)
    assert math.isnan(mean_ci([5.0])["lo"]) and mean_ci([])["n"] == 0


def test_paired_difference_and_verdicts():
    dropout = {0: 2.0, 1: 2.2, 2: 1.9, 3: 2.1, 4: 2.0}
    better = {s: v - 0.5 + 0.01 * s for s, v in dropout.items()}
    d = paired_difference(dropout, better)
    assert d["diff"] == pytest.approx(-0.48) and d["n_pairs"] == 5
    assert d["lo"] <= d["diff"] <= d["hi"] and d["t_lo"] < d["diff"] < d["t_hi"] < 0
    assert verdict(d) == "QSD better"
    assert verdict(paired_difference(better, dropout)) == "QSD worse"
    noisy = {0: 1.0, 1: 3.0, 2: 2.0, 3: 2.4, 4: 1.4}
    assert verdict(paired_difference(dropout, noisy)) == "no detectable difference"
    assert verdict(paired_difference({0: 1.0}, {0: 2.0})) == "too few seeds to tell"
    assert verdict(d, lower_is_better=False) == "QSD worse"


def _fake_run(root, name, reg, seed, status="completed", error=2.0):
    path = root / "cpu" / "mlp_mnist" / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"name: mlp_mnist\nseed: {seed}\nmodel: {{name: mlp}}\ndata: {{name: mnist}}\ntrain: {{epochs: 2}}\n"
        f"rates: {{input: 0.2, hidden: 0.5}}\nregulariser: {{name: {reg}}}\n")
    (path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_error": error + 1}) + "\n" +
                                        json.dumps({"epoch": 2, "test_error": error}) + "\n")
    if status:
        (path / "summary.json").write_text(json.dumps({
            "status": status, "metric": "error", "test_error": error, "test_loss": 0.1, "epochs_done": 2,
            "sparsity": {"net.2": {"zero_frac_example": 0.5, "zero_frac_unit": 0.5, "hoyer": 0.4, "dead_frac": 0.0, "units": 8}},
            "weights": {"net.1": {"weight": {"mean": 0.0, "sd": 1.0, "n": 4, "hist_edges": [0, 1], "hist_counts": [4]}}}}))


def test_collect_flattens_the_runs_it_is_given(tmp_path):
    _fake_run(tmp_path / "runs", "dropout-seed0-aaaa", "dropout", 0)
    _fake_run(tmp_path / "runs", "qsd-seed0-bbbb", "qsd", 0, error=1.5)
    _fake_run(tmp_path / "runs", "qsd-seed1-cccc", "qsd", 1, status=None)  # still training
    assert collect({p: {} for p in (tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*")}, tmp_path / "out") == 2
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert {(r["regulariser"], r["test_metric"], r["rate_hidden"]) for r in runs} == {("dropout", 2.0, 0.5), ("qsd", 1.5, 0.5)}
    assert len(read_csv(tmp_path / "out" / "curves.csv")) == 4
    assert read_csv(tmp_path / "out" / "sparsity.csv")[0]["hoyer"] == 0.4



def test_compute_table_gives_each_figures_training_time_and_machine_time(tmp_path):
    """Each run's wall time, device and JOBS from its summary.json; machine time = run time / JOBS; a run
    made before summaries recorded JOBS leaves the machine time unknown rather than guessed."""
    from qsd.report.result_tables import render_compute

    runs = {"dropout-seed0-aaaa": ("fig2_mlp_curves fig4_sparsity", 600.0, 4), "qsd-seed0-bbbb": ("fig2_mlp_curves", 1200.0, 4),
            "qsd-seed1-cccc": ("fig6_cnn", 360.0, None)}
    for name, (_, wall, jobs) in runs.items():
        _fake_run(tmp_path / "runs", name, name.split("-")[0], int(name.split("-")[1][4:]))
        summary = tmp_path / "runs" / "cpu" / "mlp_mnist" / name / "summary.json"
        recorded = {"device": "cuda", "wall_s": wall, "jobs": jobs} | ({"device_name": "NVIDIA H200"} if jobs else {})
        summary.write_text(json.dumps({**json.loads(summary.read_text()), **recorded}))
    out = tmp_path / "out"
    collect({tmp_path / "runs" / "cpu" / "mlp_mnist" / n: {"figures": f} for n, (f, _, _) in runs.items()}, out)
    render_compute(out, "cpu")
    rows = {r["figure"]: r for r in read_csv(out / "compute.csv")}
    assert rows["fig2_mlp_curves"] == {"figure": "fig2_mlp_curves", "runs": 2, "device": "NVIDIA H200", "jobs": 4,
                                       "median minutes a run": 15.0, "run hours": 0.5, "machine hours": 0.12}
    assert rows["fig4_sparsity"]["run hours"] == 0.17 and rows["fig6_cnn"]["device"] == "cuda (name not recorded)"
    assert rows["all (each run once)"]["runs"] == 3 and rows["all (each run once)"]["run hours"] == 0.6
    assert rows["all (each run once)"]["machine hours"] == "n/a: jobs not recorded for 1 run(s)"
    pace = read_csv(out / "compute_pace.csv")  # one row per experiment, length, device and JOBS: each run once
    assert [(r["device"], r["jobs"], r["runs"], r["median minutes a run"], r["range"]) for r in pace] == [
        ("NVIDIA H200", 4, 2, 15.0, "10.0-20.0"), ("cuda (name not recorded)", "not recorded", 1, 6.0, "6.0-6.0")]
    summary = tmp_path / "runs" / "cpu" / "mlp_mnist" / "qsd-seed0-bbbb" / "summary.json"  # trained on from a twin's epoch 1
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "continued_from": {"run": "x", "epochs": 1}}))
    collect({tmp_path / "runs" / "cpu" / "mlp_mnist" / n: {"figures": f} for n, (f, _, _) in runs.items()}, out)
    render_compute(out, "cpu")
    assert [r["epochs"] for r in read_csv(out / "compute_pace.csv")] == [2, 2, "2 (on from 1)"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: weights written from a GPU")
def test_weights_written_on_cuda_are_compared_on_the_cpu(tmp_path):
    """A run trained on a GPU before model.pt was written from CPU tensors: its KS rows are still computed."""
    qsd = yaml.safe_load((CONFIGS / "regulariser" / "qsd.yaml").read_text())
    for name, reg in (("dropout-seed0-aaaa", "dropout"), ("qsd-seed0-bbbb", "qsd")):
        _fake_run(tmp_path / "runs", name, reg, 0)
        path = tmp_path / "runs" / "cpu" / "mlp_mnist" / name
        if reg == "qsd":
            cfg = yaml.safe_load((path / "config.yaml").read_text())
            (path / "config.yaml").write_text(yaml.safe_dump({**cfg, "regulariser": qsd}))
        torch.save({"net.1.weight": torch.randn(8, 4, device="cuda")}, path / "model.pt")
    collect({p: {} for p in (tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*")}, tmp_path / "out")
    assert [r["param"] for r in read_csv(tmp_path / "out" / "weights_ks.csv")] == ["net.1.weight"]


def test_each_caption_names_the_seeds_and_commits_of_its_own_runs(tmp_path):
    from qsd.report.style import provenance, spans

    assert spans({0, 1, 2, 3, 4}) == "0-4" and spans({5, 6, 9}) == "5-6, 9" and spans({3}) == "3"
    for name, reg, seed, commit in (("dropout-seed0-aaaa", "dropout", 0, "aaa1111"), ("qsd-seed1-bbbb", "qsd", 1, "bbb2222" + "0" * 33)):
        _fake_run(tmp_path / "runs", name, reg, seed)
        summary = tmp_path / "runs" / "cpu" / "mlp_mnist" / name / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "versions": {"commit": commit}}))
    a, b = sorted((tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*"))
    out = tmp_path / "out"
    collect({a: {"figures": "fig2_mlp_curves"}, b: {"figures": "fig6_cnn"}}, out)
    assert provenance(out, "fig2_mlp_curves") == "runs (seed 0) at commit aaa1111"
    assert provenance(out, "table1_summary") == "runs (seeds 0-1) at commit aaa1111, bbb2222"  # uses fig2, fig6
    # (a full hash, as $QSD_COMMIT gave it on a lent machine, is shown short; the drawing code's commit is in
    # drawn_at.md, once per scale, so that a figure does not change with unrelated code)
    assert provenance(out, "fig1_masks") == ""  # no runs: sampling only
    assert provenance(out, "fig2_mlp_curves_extra") == "runs (seed 0) at commit aaa1111"  # a second table of fig2


def test_the_commit_names_the_code_not_the_results(tmp_path):
    """Collection rewrites results/, and results (or README, tests) are committed after the code: none of
    that changes the commit that runs and figures name, and only changed code makes it dirty."""
    import subprocess

    from qsd.provenance import checkout_commit

    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path,
                                    check=True, capture_output=True, text=True).stdout.strip()
    for f in ("results/runs.csv", "src/train.py", "configs/train.yaml", "README.md"):
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    head = git("rev-parse", "--short", "HEAD")
    for f in ("results/runs.csv", "README.md"):
        (tmp_path / f).write_text("b\n")
        assert checkout_commit(tmp_path / "src") == head
    git("commit", "-qam", "results and README")
    assert checkout_commit(tmp_path / "src") == head  # the code is still that commit's
    for f in ("src/train.py", "configs/train.yaml"):
        (tmp_path / f).write_text("b\n")
        assert checkout_commit(tmp_path / "src") == head + "+dirty"
    git("commit", "-qam", "code")
    assert checkout_commit(tmp_path / "src") == git("rev-parse", "--short", "HEAD") != head


def test_a_cpu_run_records_the_instruction_set_its_kernels_use(monkeypatch):
    """A CPU run's last digits depend on the instruction set its kernels dispatch on (nn.LSTM's oneDNN
    paths round differently), so its device name records it, with oneDNN's cap where one is set."""
    from qsd.provenance import device_name

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert f"({torch.backends.cpu.get_cpu_capability()})" in device_name("cpu")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert f"({torch.backends.cpu.get_cpu_capability()}; oneDNN at most AVX2), " in device_name("cpu")


def test_replication_judges_each_verdict_by_the_fixed_rule(tmp_path):
    from qsd.report.replication import outcome, render_replication
    from qsd.report.tables import write_table

    assert outcome("QSD better", "QSD better") == "replicates"
    assert outcome("no detectable difference", "no detectable difference") == "replicates"
    assert outcome("QSD worse (lost 1 of 5 seeds: diverged)", "QSD worse") == "replicates"
    assert outcome("QSD better", "no detectable difference") == "does not replicate"
    assert outcome("QSD better", "not comparable: dropout not converged") == "not tested (fresh seeds withheld)"
    assert outcome("not comparable: x", "") == "not tested (main seeds withheld, fresh seeds not run)"
    assert outcome("QSD worse", "not run at cpu scale: no seed has a finished run") == "not tested (fresh seeds not run)"
    main, fresh = tmp_path / "main", tmp_path / "main" / "replication"
    mlp, rt = "MLP / MNIST (error %)", "LSTM / Rotten Tomatoes (error %)"
    cell = {"QSD - dropout": "-0.3 (5 pairs)", "paired t 95% CI": "[-0.6, -0.1]"}
    for res, rt_verdict in ((main, "QSD better"), (fresh, "no detectable difference")):
        write_table(res, "table3_tuned", [
            {"experiment": mlp, "comparison": "(b) each at its validation-best rate", "regulariser": "dropout",
             "QSD - dropout": "", "paired t 95% CI": "", "verdict": ""},
            {"experiment": mlp, "comparison": "(b) each at its validation-best rate", "regulariser": "qsd", **cell,
             "verdict": "no detectable difference"},
            {"experiment": rt, "comparison": "(b) each at its validation-best rate", "regulariser": "qsd", **cell,
             "verdict": rt_verdict},
            {"experiment": mlp, "comparison": "(a) recipe rate", "regulariser": "qsd", **cell, "verdict": "QSD worse"}], "cpu", "t3")
        write_table(res, "table1_summary", [  # the MLP's recipe-rate comparison is table3's (a): given once
            {"experiment": mlp, **cell, "verdict": "QSD worse"},
            {"experiment": "LSTM LM / PTB (test perplexity)", "QSD - dropout": "", "paired t 95% CI": "",
             "verdict": "not testable at cpu scale: hours a run"},
            {"experiment": "CNN+BN+WD+aug / Fashion-MNIST (error %)", **cell, "verdict": "not comparable: dropout does not beat none"}],
            "cpu", "t1")
    rows = render_replication(main, fresh, "cpu")
    assert [(r["table"], r["experiment"][:4], r["comparison"][:3], r["outcome"][:14]) for r in rows] == [
        ("table3_tuned", "MLP ", "(b)", "replicates"), ("table3_tuned", "LSTM", "(b)", "does not repli"),
        ("table3_tuned", "MLP ", "(a)", "replicates"), ("table1_summary", "CNN+", "(a)", "not tested (ma")]
    assert rows[1]["main: QSD - dropout [95% CI]"] == "-0.3 (5 pairs) [-0.6, -0.1]"
    assert "fixed before any fresh seed trained" in (fresh / "replication.md").read_text()

def test_the_gates_longer_runs_reach_the_gate_and_nothing_else(tmp_path):
    from qsd.report.compare import arm, longer_runs, read_runs

    _fake_run(tmp_path / "runs", "dropout-seed0-aaaa", "dropout", 0)
    _fake_run(tmp_path / "runs", "dropout-seed0-bbbb", "dropout", 0, error=1.0)  # the same run, 1.5x the epochs
    _fake_run(tmp_path / "runs", "dropout-seed1-cccc", "dropout", 1)
    _fake_run(tmp_path / "runs", "dropout-seed1-dddd", "dropout", 1, status="diverged")
    twins = {"dropout-seed0-bbbb": "dropout-seed0-aaaa", "dropout-seed1-dddd": "dropout-seed1-cccc"}
    out = tmp_path / "out"
    collect({p: {"lengthens": twins.get(p.name, "")} for p in (tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*")}, out)
    assert sorted(r["run"] for r in read_runs(out)) == ["dropout-seed0-aaaa", "dropout-seed1-cccc"]
    longer = longer_runs(out)
    assert {k: r["run"] for k, r in longer.items()} == {("mlp_mnist", v): k for k, v in twins.items()}
    curves = {"dropout-seed0-aaaa": [3.0, 2.0], "dropout-seed0-bbbb": [3.0, 2.0, 1.5], "dropout-seed1-cccc": [3.0, 2.1]}
    a = arm(read_runs(out), curves, longer)
    assert a.test == {0: 2.0, 1: 2.0} and a.longer == {0: [3.0, 2.0, 1.5]} and a.longer_lost == {1: "diverged"}


def _row(reg, seed, hidden, valid, test, status="completed", run=None):
    return {"experiment": "mlp_mnist", "regulariser": reg, "seed": seed, "rate_input": 0.2, "rate_hidden": hidden,
            "status": status, "metric": "error", "valid_error": valid, "test_metric": test if status == "completed" else "",
            "run": run or f"{reg}-{seed}-{hidden}"}


def test_tuned_arm_picks_on_validation_never_on_test_and_gates_on_the_other_seeds_picks():
    """Each seed is compared at its own validation-best rate (seed 0: 0.5; seed 1: a tie at 0.3 and 0.5, the
    lower rate, 0.7 diverged), so seeds stay independent for the paired interval; the gate reads each seed at
    the rate the other seeds' validation picks (seed 0: a tie on seed 1's, 0.3; seed 1: seed 0's best, 0.5)."""
    from qsd.report.result_tables import _tuned_arm

    grid = [{"rate_input": 0.2, "rate_hidden": h} for h in (0.3, 0.5, 0.7)]
    rows = [_row("dropout", 0, 0.3, valid=2.0, test=1.0), _row("dropout", 0, 0.5, valid=1.5, test=3.0),
            _row("dropout", 0, 0.7, valid=1.9, test=0.5),
            _row("dropout", 1, 0.3, valid=1.0, test=2.2), _row("dropout", 1, 0.5, valid=1.0, test=2.1),
            _row("dropout", 1, 0.7, valid=0.1, test=0.1, status="diverged"),
            _row("dropout", 2, 0.9, valid=0.1, test=0.1)]  # off the grid: ignored
    tuned = _tuned_arm(rows, grid, {}, "hidden")
    assert tuned.rates == {0: 0.5, 1: 0.3} and tuned.arm.test == {0: 3.0, 1: 2.2} and not tuned.arm.lost  # compared
    assert tuned.gated.test == {0: 1.0, 1: 2.1}  # what the gate reads: seed 0 at 0.3, seed 1 at 0.5


def test_picks_on_the_grids_edge_are_counted():
    from qsd.report.result_tables import _picks

    assert _picks({0: 0.5, 1: 0.3}, [0.3, 0.5, 0.7]) == "0.5, 0.3 (1 at the grid's lowest)"
    assert _picks({0: 0.5, 1: 0.5}, [0.3, 0.5, 0.7]) == "0.5, 0.5"
    assert _picks({0: 0.7, 1: 0.3, 2: 0.7}, [0.3, 0.5, 0.7]) == "0.7, 0.3, 0.7 (1 at the grid's lowest, 2 at the grid's highest)"


def test_a_tuned_arm_on_its_grids_edge_for_most_seeds_is_withheld():
    """Rule 5, for either arm: most seeds on an edge withholds a verdict (the gate's reasons kept after it);
    half of them, a recipe rate or an incomplete comparison do not."""
    from qsd.report.result_tables import edge_verdict

    grid = [0.1, 0.3, 0.5, 0.7]
    low, mixed = {0: 0.1, 1: 0.1, 2: 0.1, 3: 0.3, 4: 0.5}, {0: 0.1, 1: 0.1, 2: 0.3, 3: 0.5}
    assert edge_verdict("QSD better", {"dropout": low, "QSD": mixed}, grid) == \
        "not comparable: dropout's best rate is at the grid's edge (0.1)"
    high = {s: 0.7 for s in range(5)}
    assert edge_verdict("not comparable: dropout not converged", {"dropout": mixed, "QSD": high}, grid) == \
        "not comparable: QSD's best rate is at the grid's edge (0.7); dropout not converged"
    assert edge_verdict("QSD worse", {"dropout": mixed, "QSD": {}}, grid) == "QSD worse"
    assert edge_verdict("incomplete: none has finished 4 of 5 seeds", {"dropout": low}, grid).startswith("incomplete")


def test_the_replication_prediction_interval():
    """main ± t(0.975, Welch-Satterthwaite df) sqrt(se_main^2 + se_fresh^2), each se from its paired t interval;
    equal errors on 5 pairs each give df 8."""
    from qsd.report.replication import prediction, welch_df

    half = sst.t.ppf(0.975, 4)  # a 5-pair interval of half-width t(0.975, 4) has se 1
    cell = lambda est, se: f"{est} (5 pairs) [{est - half * se}, {est + half * se}]"
    assert welch_df((1.0, 5), (1.0, 5)) == pytest.approx(8) and welch_df((1.0, 5), (3.0, 5)) == pytest.approx(4 * 100 / 82)
    q = sst.t.ppf(0.975, 8) * math.sqrt(2)
    assert prediction(cell(0.0, 1.0), cell(q - 0.01, 1.0)) == f"inside [{-q:+.3g}, {q:+.3g}]"
    assert prediction(cell(0.0, 1.0), cell(q + 0.01, 1.0)).startswith("outside")
    wide = sst.t.ppf(0.975, welch_df((1.0, 5), (3.0, 5))) * math.sqrt(10)
    assert prediction(cell(0.0, 1.0), cell(0.0, 3.0)) == f"inside [{-wide:+.3g}, {wide:+.3g}]"
    assert prediction(cell(0.0, 1.0), "-1.42 (1 pairs) [n/a, n/a]") == ""


def test_compare_counts_lost_seeds_and_gates():
    from qsd.report.compare import Arm, compare

    good = [10.0, 5.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.04, 2.03, 2.03]
    longer = {s: good + [2.03] * 5 for s in range(5)}
    dropout = Arm(test={s: 2.0 + 0.01 * s for s in range(5)}, valid={s: good for s in range(5)}, longer=longer)
    none = Arm(test={s: 2.5 for s in range(5)}, valid={s: [v + 1 for v in good] for s in range(5)})
    qsd = Arm(test={s: 1.5 + 0.02 * s for s in range(4)}, valid={s: good for s in range(4)}, lost={4: "diverged"},
              longer={s: longer[s] for s in range(4)})
    assert compare(dropout, qsd, 5, none)["verdict"] == "QSD worse (lost 1 of 5 seeds: diverged)"
    assert qsd.cell().endswith("(n=4; 1 diverged)")
    qsd.lost.clear()  # seed 4 not finished yet: no verdict on the pairs so far
    assert compare(dropout, qsd, 5, none)["verdict"] == "incomplete: QSD has not finished seed(s) 4"
    qsd.test[4], qsd.valid[4] = 1.58, good
    assert compare(dropout, qsd, 5, none)["verdict"] == "incomplete: QSD's 1.5x-epoch runs missing for seed(s) 4"
    qsd.longer[4] = longer[4]
    assert compare(dropout, qsd, 5, none)["verdict"] == "QSD better"
    assert compare(dropout, qsd, 6, none)["verdict"].startswith("incomplete: 5 of 6 seeds finished")  # a seed in neither arm
    worse_none = Arm(test=none.test, valid={s: [v - 1 for v in good] for s in range(5)})
    assert compare(dropout, qsd, 5, worse_none)["verdict"].startswith("not comparable: dropout does not beat none")
    assert compare(dropout, qsd, 6, worse_none)["verdict"].startswith(  # the gate on a partial suite: provisional
        "incomplete: 5 of 6 seeds finished; none has finished 5 of 6 seeds (so far: dropout does not beat none")
    assert compare(dropout, qsd, 5, none)["dropout_gain"] == "0.0% with 1.5x the epochs (15, not 10)"
    dropout.longer = {s: good + [1.9] * 5 for s in range(5)}  # 1.5x the epochs: 6.4% better
    c = compare(dropout, qsd, 5, none)
    assert c["dropout_gain"] == "6.4% with 1.5x the epochs (15, not 10)" and c["verdict"].startswith("not comparable: dropout not")


def test_ks_rows_name_the_commit_of_the_weights_they_compare(tmp_path):
    """KS rows computed here carry the runs' commits; kept rows (weights elsewhere) keep theirs, or get the
    runs' commits where they have none; fig5's caption names weights retrained at another commit, and
    only those (a pair trained at two commits is its own, and a hash of digits stays a hash)."""
    from qsd.report.figures import render_fig5_weights

    qsd = yaml.safe_load((CONFIGS / "regulariser" / "qsd.yaml").read_text())
    root = tmp_path / "runs" / "cpu" / "mlp_mnist"
    for name, reg, commit in (("dropout-seed0-aaaa", "dropout", "1234567"), ("qsd-seed0-bbbb", "qsd", "aaa1111")):
        _fake_run(tmp_path / "runs", name, reg, 0)
        summary = root / name / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "versions": {"commit": commit}}))
        if reg == "qsd":
            cfg = yaml.safe_load((root / name / "config.yaml").read_text())
            (root / name / "config.yaml").write_text(yaml.safe_dump({**cfg, "regulariser": qsd}))
        torch.save({"net.1.weight": torch.randn(8, 4)}, root / name / "model.pt")
    out, paths = tmp_path / "out", {p: {"figures": "fig5_weights"} for p in root.glob("*")}
    collect(paths, out)
    own = "1234567+aaa1111"
    assert [r["weights_commit"] for r in read_csv(out / "weights_ks.csv")] == [own]
    for p in paths:
        (p / "model.pt").unlink()  # the weights stay on the machine that trained them: the rows are kept
    for recorded, shown, caption in (("", own, False), ("ccc3333", "ccc3333", True)):
        rows = read_csv(out / "weights_ks.csv")
        (out / "weights_ks.csv").write_text(_to_csv([{**r, "weights_commit": recorded} for r in rows]))
        collect(paths, out)
        assert [r["weights_commit"] for r in read_csv(out / "weights_ks.csv")] == [shown]
        render_fig5_weights(out, "cpu")
        assert ("retrained" in (out / "fig5_weights.md").read_text()) == caption
    assert "retrained at commit ccc3333" in (out / "fig5_weights.md").read_text()


def test_a_figure_drawn_twice_is_the_same_bytes(tmp_path, monkeypatch):
    """Re-rendering committed results changes no figure file unless its content changed (a PDF would
    carry the time it was drawn: matplotlib reads it from $SOURCE_DATE_EPOCH where set)."""
    from qsd.report.style import plt, save

    files = []
    for i in range(2):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(1_700_000_000 + 3600 * i))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save(fig, tmp_path / str(i), "fig", "cpu")
        files.append([(tmp_path / str(i) / f"fig.{ext}").read_bytes() for ext in ("png", "pdf")])
    assert files[0] == files[1]


def test_estimate_panel_draws_points_on_an_axis_that_holds_every_seed_and_whisker():
    from qsd.report.figures import _estimate_panel
    from qsd.report.style import plt
    fig, ax = plt.subplots()
    values = {"none": {0: 5.5, 1: 5.7, 2: 5.9}, "dropout": {0: 6.0, 1: 6.02, 2: 6.09}, "qsd": {0: 5.45, 1: 5.6, 2: 5.9}}
    rows = _estimate_panel(ax, values, "test error (%)")
    assert not ax.patches  # no bars: a bar's length would claim a ratio to zero
    low, high = ax.get_ylim()
    assert low > 0 and all(low <= r["lo"] and r["hi"] <= high for r in rows)
    assert all(low <= v <= high for seeds in values.values() for v in seeds.values())
    plt.close(fig)


def test_tables_name_every_comparison_not_run_yet_and_why(tmp_path):
    """A table drawn while a scale is part-run lists what is missing with its reason (not run yet; data the
    user must supply), rather than leaving the row out."""
    from qsd.report.result_tables import render_table1_summary, render_table3_tuned

    for seed in (0, 1):
        for reg in ("dropout", "qsd"):
            _fake_run(tmp_path / "runs", f"{reg}-seed{seed}-aaaa", reg, seed)
    out = tmp_path / "out"
    collect({p: {} for p in (tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*")}, out)
    render_table1_summary(out, "paper")
    verdicts = {r["experiment"]: r["verdict"] for r in read_csv(out / "table1_summary.csv")}
    assert len(verdicts) == 8 and not verdicts["MLP / MNIST (error %)"].startswith("not run")
    assert verdicts["LSTM LM / PTB (test perplexity)"] == "not run yet at this scale"
    assert verdicts["WRN / CIFAR-10 (error %)"].startswith("not run yet: its cifar10 data must be supplied by the user")
    render_table3_tuned(out, "paper")
    mlp = {r["comparison"]: r["verdict"] for r in read_csv(out / "table3_tuned.csv") if r["experiment"].startswith("MLP")}
    assert mlp["(b) each at its validation-best rate"].startswith("not run yet: no seed has a finished run at every rate")
    assert mlp["(c) recipe rate, QSD at equal P(m=0) (failure mapping)"] == \
        "not run yet: no finished QSD run with the failure mapping"


def test_proportion_ci_is_a_wilson_interval_that_stays_in_0_1():
    from qsd.report.stats import proportion_ci

    none = proportion_ci(0, 2560)
    assert none["p"] == none["lo"] == 0 and 0 < none["hi"] < 0.002  # no dead unit still bounds how many there may be
    every = proportion_ci(7, 7)
    assert every["hi"] == 1 and 0 < every["lo"] < 1
    for k, n in [(0, 1), (1, 1), (1, 3), (3, 10), (1, 2560), (2559, 2560)]:
        s = proportion_ci(k, n)
        assert 0 <= s["lo"] <= s["p"] <= s["hi"] <= 1
        wilson = sst.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert (s["lo"], s["hi"]) == pytest.approx((wilson.low, wilson.high))
    assert math.isnan(proportion_ci(0, 0)["lo"])


def test_fig4_dead_units_pool_the_seeds_counts_and_the_other_measures_keep_the_t_interval():
    from qsd.report.figures import _sparsity_stats

    rows = [{"dead_frac": d / 512, "units": 512, "hoyer": h} for d, h in ((0, 0.5), (1, 0.6), (0, 0.7))]
    dead = _sparsity_stats(rows, "dead_frac")
    assert dead["mean"] == pytest.approx(1 / 1536) and dead["n"] == 3 and dead["interval"].startswith("Wilson: 1 of 1536")
    assert 0 < dead["lo"] < dead["mean"] < dead["hi"] < 1  # a t interval over 0, 1/512, 0 would cross zero
    assert _sparsity_stats([{**r, "dead_frac": 0.0} for r in rows], "dead_frac")["lo"] == 0
    hoyer = _sparsity_stats(rows, "hoyer")
    assert {k: hoyer[k] for k in ("mean", "lo", "hi")} == {k: mean_ci([0.5, 0.6, 0.7])[k] for k in ("mean", "lo", "hi")}


def _tick_label_gaps(fig, ax) -> list[float]:
    """Horizontal gaps (points) between neighbouring x tick labels of ``ax``; negative where they overlap."""
    fig.canvas.draw()
    boxes = [t.get_window_extent(fig.canvas.get_renderer()) for t in ax.get_xticklabels()]
    return [(b.x0 - a.x1) * 72 / fig.dpi for a, b in zip(boxes, boxes[1:])]


@pytest.mark.parametrize("panels", [1, 2, 3, 4])
def test_estimate_panels_tick_labels_do_not_overlap(panels):
    """fig6 and fig8 draw one estimate panel per data set, PANEL_W wide each (fig7 one panel a column wide)."""
    from qsd.report.figures import PANEL_W, _estimate_panel
    from qsd.report.style import COLUMN_W, plt

    values = {"none": {0: 5.5, 1: 5.7}, "dropout": {0: 6.0, 1: 6.1}, "qsd": {0: 5.4, 1: 5.9}}
    fig, axes = plt.subplots(1, panels, figsize=(max(COLUMN_W, PANEL_W * panels), 2.3), squeeze=False)
    for ax in axes[0]:
        _estimate_panel(ax, values, "test error (%)" if ax is axes[0][0] else "")
        ax.set_title("Fashion, +BN+WD+aug")
    assert all(gap > 2 for ax in axes[0] for gap in _tick_label_gaps(fig, ax))
    plt.close(fig)


def test_fig4_legend_covers_no_panel(tmp_path, monkeypatch):
    from qsd.report import figures

    for seed in (0, 1):
        for reg in ("none", "dropout"):
            _fake_run(tmp_path / "runs", f"{reg}-seed{seed}-aaaa", reg, seed)
    out = tmp_path / "out"
    collect({p: {} for p in (tmp_path / "runs" / "cpu" / "mlp_mnist").glob("*")}, out)
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, *args, **kw: drawn.append(fig))
    figures.render_fig4_sparsity(out, "cpu")
    (fig,) = drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["no dropout", "dropout"]
    assert not any(legend.get_window_extent(renderer).overlaps(ax.get_tightbbox(renderer)) for ax in fig.axes)
    dead = [r for r in read_csv(out / "fig4_sparsity.csv") if r["measure"] == "dead_frac"]
    assert dead and all(r["lo"] == 0 < r["hi"] and r["interval"] == "Wilson: 0 of 16 units, seeds pooled" for r in dead)
    figures.plt.close(fig)
