"""QSD against dropout on a set of runs: per-regulariser seed values, the baseline-sanity gate, the
paired difference and the verdict, in one place for every table that gives one."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .gate import baseline_gate, further_gain, percent
from .select import recipe_runs
from .stats import mean_ci, paired_difference, verdict
from .tables import fmt, group, read_csv

LOST = ("diverged", "failed")
WITHHELD = ("not comparable", "incomplete")  # how a verdict cell that gives no verdict begins


@dataclass
class Arm:
    """One regulariser's runs: test metric and validation curve per completed seed, and the seeds lost
    (diverged or failed: a result, not a missing value); ``longer`` and ``longer_lost``: the same for
    the seeds' runs trained LONGER x the epochs (the gate's convergence test), where they were run."""

    test: dict[int, float] = field(default_factory=dict)
    valid: dict[int, list[float]] = field(default_factory=dict)
    lost: dict[int, str] = field(default_factory=dict)
    longer: dict[int, list[float]] = field(default_factory=dict)
    longer_lost: dict[int, str] = field(default_factory=dict)

    def cell(self) -> str:
        """'mean ± sd (n=5)' with any lost seeds named: '(n=4; 1 diverged)'."""
        s = mean_ci(self.test.values())
        lost = "".join(f"; {n} {status}" for status, n in sorted(Counter(self.lost.values()).items()))
        return f"{fmt(s['mean'])} ± {fmt(s['sd'])} (n={s['n']}{lost})"


def read_runs(res: Path) -> list[dict]:
    """runs.csv's rows, less the gate's longer runs (``longer_runs``)."""
    return [r for r in read_csv(res / "runs.csv") if not r.get("lengthens")]


def longer_runs(res: Path) -> dict[tuple[str, str], dict]:
    """(experiment, run) -> the row of that run trained LONGER x the epochs (the gate's convergence test)."""
    return {(r["experiment"], r["lengthens"]): r for r in read_csv(res / "runs.csv") if r.get("lengthens")}


def valid_curves(curves: list[dict]) -> dict[str, list[float]]:
    """run -> validation metric per epoch (error or perplexity, whichever the run logged)."""
    out = {}
    for run, rows in group(curves, lambda c: c["run"]).items():
        rows = sorted(rows, key=lambda c: c["epoch"])
        key = "valid_error" if rows[0].get("valid_error", "") != "" else "valid_ppl"
        out[run] = [float(c[key]) for c in rows if c.get(key, "") != ""]
    return out


def arm(runs: list[dict], curves: dict[str, list[float]], longer: dict[tuple[str, str], dict] | None = None) -> Arm:
    """An Arm from runs.csv rows (one per seed), ``valid_curves`` and ``longer_runs``."""
    a = Arm()
    for r in runs:
        if r["status"] == "completed" and r.get("test_metric", "") != "":
            a.test[r["seed"]] = float(r["test_metric"])
            a.valid[r["seed"]] = curves.get(r["run"], [])
            twin = (longer or {}).get((r["experiment"], r["run"]))
            if twin and twin["status"] == "completed":
                a.longer[r["seed"]] = curves.get(twin["run"], [])
            elif twin and twin["status"] in LOST:
                a.longer_lost[r["seed"]] = twin["status"]
        elif r["status"] in LOST:
            a.lost[r["seed"]] = r["status"]
    return a


def result_seeds(a: Arm) -> set[int]:
    """The seeds with a result: completed, diverged or failed."""
    return set(a.test) | set(a.lost)


def unpaired(dropout: Arm, qsd: Arm, planned: int) -> str | None:
    """Why a suite still being run gives no verdict yet, else None: ``incomplete: <which> has not finished
    seed(s) <s>`` while a seed has a result in one arm only, or ``incomplete: <k> of <planned> seeds
    finished`` while fewer than the ``planned`` seeds (the scale's, ``SEEDS``) have a result in both."""
    missing = {"dropout": sorted(result_seeds(qsd) - result_seeds(dropout)),
               "QSD": sorted(result_seeds(dropout) - result_seeds(qsd))}
    if any(missing.values()):
        return "incomplete: " + "; ".join(f"{name} has not finished seed(s) {', '.join(map(str, seeds))}"
                                          for name, seeds in missing.items() if seeds)
    done = len(result_seeds(dropout))
    return f"incomplete: {done} of {planned} seeds finished" if done < planned else None


def compare(dropout: Arm, qsd: Arm, planned: int, none: Arm | None = None) -> dict[str, object]:
    """Paired QSD - dropout difference (lower is better) and its verdict, or why none is given: while the
    suite is still being run (``unpaired``: fewer than ``planned`` seeds), which seeds are missing, with the
    gate's reason on the seeds so far after it (provisional: more seeds, or the gate's longer runs, may
    clear it); else the gate's reason."""
    d = paired_difference(dropout.test, qsd.test)
    out = {"qsd_minus_dropout": d["diff"], "n_pairs": d["n_pairs"], "t_lo": d["t_lo"], "t_hi": d["t_hi"],
           "boot_lo": d["lo"], "boot_hi": d["hi"]}
    valid, longer = ({s: c for s, c in curves.items() if c} for curves in (dropout.valid, dropout.longer))
    gain = further_gain(valid, longer) if valid else None
    out["dropout_gain"] = f"{percent(gain[0])} {gain[1]}" if gain else ""
    reason = baseline_gate(valid, {s: c for s, c in none.valid.items() if c} if none else None,
                           failed=len(dropout.lost), longer=longer, longer_lost=len(dropout.longer_lost))
    gap = unpaired(dropout, qsd, planned)
    if gap:
        out["verdict"] = f"{gap} (so far: {reason})" if reason else gap
    elif reason:
        out["verdict"] = f"not comparable: {reason}"
    elif qsd.lost:
        out["verdict"] = f"QSD worse (lost {len(qsd.lost)} of {len(qsd.lost) + len(qsd.test)} seeds: " \
                         f"{', '.join(sorted(set(qsd.lost.values())))})"
    else:
        out["verdict"] = verdict(d)
    return out


def arms(rows: list[dict], curves: dict[str, list[float]], longer: dict[tuple[str, str], dict]) -> dict[str, Arm]:
    """regulariser -> Arm."""
    return {reg: arm(rr, curves, longer) for reg, rr in group(rows, lambda r: r["regulariser"]).items()}


def read_collected(res: Path) -> tuple[list[dict], dict[str, list[float]], dict[tuple[str, str], dict]]:
    """What a comparison reads from ``res``, read once: ``read_runs``, ``valid_curves``, ``longer_runs``."""
    return read_runs(res), valid_curves(read_csv(res / "curves.csv")), longer_runs(res)


def recipe_comparison(runs: list[dict], curves: dict[str, list[float]], longer: dict[tuple[str, str], dict],
                      experiment: str, planned: int) -> dict:
    """The recipe-rate comparison of ``experiment`` (from ``read_collected``; ``planned`` seeds): its arms and
    ``compare``'s result."""
    a = arms(recipe_runs(runs, experiment), curves, longer)
    out = {"arms": a}
    if "dropout" in a and "qsd" in a:
        out.update(compare(a["dropout"], a["qsd"], planned, a.get("none")))
    else:
        out["verdict"] = "not comparable: no dropout and QSD runs to compare"
    return out
