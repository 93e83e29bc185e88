"""Statistics and collection: known answers, and collection that tolerates runs in progress."""
import json
import math

import pytest
from scipy import stats as sst

from qsd.report.collect import collect
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


def test_collect_flattens_runs_and_skips_in_progress(tmp_path):
    _fake_run(tmp_path / "runs", "dropout-seed0-aaaa", "dropout", 0)
    _fake_run(tmp_path / "runs", "qsd-seed0-bbbb", "qsd", 0, error=1.5)
    _fake_run(tmp_path / "runs", "qsd-seed1-cccc", "qsd", 1, status=None)  # still training
    counts = collect(tmp_path / "runs", "cpu", tmp_path / "out")
    assert counts == {"finished": 2, "in_progress": 1}
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert {(r["regulariser"], r["test_metric"], r["rate_hidden"]) for r in runs} == {("dropout", 2.0, 0.5), ("qsd", 1.5, 0.5)}
    assert len(read_csv(tmp_path / "out" / "curves.csv")) == 4
    assert read_csv(tmp_path / "out" / "sparsity.csv")[0]["hoyer"] == 0.4
