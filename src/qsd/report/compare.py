"""QSD against dropout on a set of runs: per-regulariser seed values, the baseline-sanity gate, the
paired difference and the verdict, in one place for every table that gives one."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .gate import baseline_gate
from .stats import mean_ci, paired_difference, verdict
from .tables import fmt, group

LOST = ("diverged", "failed")


@dataclass
class Arm:
    """One regulariser's runs: test metric and validation curve per completed seed, and the seeds lost
    (diverged or failed: a result, not a missing value)."""

    test: dict[int, float] = field(default_factory=dict)
    valid: dict[int, list[float]] = field(default_factory=dict)
    lost: dict[int, str] = field(default_factory=dict)

    def cell(self) -> str:
        """'mean ± sd (n=5)' with any lost seeds named: '(n=4; 1 diverged)'."""
        s = mean_ci(self.test.values())
        lost = "".join(f"; {n} {status}" for status, n in sorted(Counter(self.lost.values()).items()))
        return f"{fmt(s['mean'])} ± {fmt(s['sd'])} (n={s['n']}{lost})"


def valid_curves(curves: list[dict]) -> dict[str, list[float]]:
    """run -> validation metric per epoch (error or perplexity, whichever the run logged)."""
    out = {}
    for run, rows in group(curves, lambda c: c["run"]).items():
        rows = sorted(rows, key=lambda c: c["epoch"])
        key = "valid_error" if rows[0].get("valid_error", "") != "" else "valid_ppl"
        out[run] = [float(c[key]) for c in rows if c.get(key, "") != ""]
    return out


def arm(runs: list[dict], curves: dict[str, list[float]]) -> Arm:
    """An Arm from runs.csv rows (one per seed) and ``valid_curves``."""
    a = Arm()
    for r in runs:
        if r["status"] == "completed" and r.get("test_metric", "") != "":
            a.test[r["seed"]] = float(r["test_metric"])
            a.valid[r["seed"]] = curves.get(r["run"], [])
        elif r["status"] in LOST:
            a.lost[r["seed"]] = r["status"]
    return a


def compare(dropout: Arm, qsd: Arm, none: Arm | None = None) -> dict[str, object]:
    """Paired QSD - dropout difference (lower is better) and its verdict, or why none is given."""
    d = paired_difference(dropout.test, qsd.test)
    out = {"qsd_minus_dropout": d["diff"], "n_pairs": d["n_pairs"], "t_lo": d["t_lo"], "t_hi": d["t_hi"],
           "boot_lo": d["lo"], "boot_hi": d["hi"]}
    reason = baseline_gate({s: c for s, c in dropout.valid.items() if c},
                           {s: c for s, c in none.valid.items() if c} if none else None, failed=len(dropout.lost))
    if reason:
        out["verdict"] = f"not comparable: {reason}"
    elif qsd.lost:
        out["verdict"] = f"QSD worse (lost {len(qsd.lost)} of {len(qsd.lost) + len(qsd.test)} seeds: " \
                         f"{', '.join(sorted(set(qsd.lost.values())))})"
    else:
        out["verdict"] = verdict(d)
    return out
