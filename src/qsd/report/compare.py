"""QSD against dropout on a set of runs: per-regulariser seed values, the baseline-sanity gate on both
arms, the paired difference and the verdict, in one place for every table that gives one."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .gate import LONGER, beats_none, convergence, gain_cell
from .select import recipe_runs
from .stats import mean_ci, paired_difference, verdict
from .tables import fmt, group, read_csv

LOST = ("diverged", "failed")  # a run's status that loses its seed (a NaN metric does too: ``arm``)
WITHHELD = ("not comparable", "incomplete")  # how a verdict cell that gives no verdict begins


@dataclass
class Arm:
    """One regulariser's runs: test metric and validation curve per completed seed, and the seeds lost
    (diverged, failed, or completed with a NaN metric: a result, not a missing value); ``longer`` and
    ``longer_lost``: the same for the seeds' runs trained LONGER x the epochs (the gate's convergence test),
    where they were run."""

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


def _finite(r: dict, curve: list[float]) -> bool:
    """A completed run whose test metric and final validation metric (each where logged) are numbers, not NaN
    or inf."""
    return (r.get("test_metric", "") == "" or math.isfinite(float(r["test_metric"]))) and \
        (not curve or math.isfinite(curve[-1]))


def arm(runs: list[dict], curves: dict[str, list[float]], longer: dict[tuple[str, str], dict] | None = None) -> Arm:
    """An Arm from runs.csv rows (one per seed), ``valid_curves`` and ``longer_runs``. A completed run with a
    NaN (or inf) test or final validation metric is a lost seed (``NaN``), as a diverged one is."""
    a = Arm()
    for r in runs:
        curve = curves.get(r["run"], [])
        if r["status"] == "completed" and r.get("test_metric", "") == "":
            continue  # no test metric recorded: not a result
        if r["status"] == "completed" and _finite(r, curve):
            a.test[r["seed"]] = float(r["test_metric"])
            a.valid[r["seed"]] = curve
            twin = (longer or {}).get((r["experiment"], r["run"]))
            twin_curve = curves.get(twin["run"], []) if twin else []
            if twin and twin["status"] == "completed" and twin_curve and _finite(twin, twin_curve):
                a.longer[r["seed"]] = twin_curve
            elif twin and (twin["status"] in LOST or twin["status"] == "completed" and twin_curve):
                a.longer_lost[r["seed"]] = twin["status"] if twin["status"] in LOST else "NaN"
        elif r["status"] in LOST or r["status"] == "completed":
            a.lost[r["seed"]] = r["status"] if r["status"] in LOST else "NaN"
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


def missing_inputs(dropout: Arm, qsd: Arm, none: Arm | None, planned: int,
                   gated: tuple[Arm, Arm] | None = None) -> str | None:
    """Why the comparison is not complete yet, or None: a seed with a result in one arm only, fewer than
    ``planned`` seeds in both, ``none``'s runs not all there, a compared seed without its run where the gate
    reads (``gated``, else the compared arms), a completed run (compared, gated or none) without its
    validation curve, or a seed of an arm the gate reads without its run trained LONGER x the epochs (planned
    for every such seed of both arms)."""
    gaps = [g.removeprefix("incomplete: ") for g in [unpaired(dropout, qsd, planned)] if g]
    if none is None or len(result_seeds(none)) < planned:
        gaps.append(f"none has finished {0 if none is None else len(result_seeds(none))} of {planned} seeds")
    seeds = lambda s: ", ".join(map(str, sorted(s)))
    g_dropout, g_qsd = gated or (dropout, qsd)
    for name, a, g in (("dropout", dropout, g_dropout), ("QSD", qsd, g_qsd), ("none", none or Arm(), none or Arm())):
        if unread := result_seeds(a) - result_seeds(g):
            gaps.append(f"{name} at the rate the other seeds pick has no result for seed(s) {seeds(unread)}")
        if blind := {s for x in (a, g) for s in x.test if not x.valid.get(s)}:
            gaps.append(f"{name}'s validation curves missing for seed(s) {seeds(blind)}")
        if name != "none" and (without := set(g.test) - set(g.longer) - set(g.longer_lost)):
            gaps.append(f"{name}'s {LONGER:g}x-epoch runs missing for seed(s) {seeds(without)}")
    return "incomplete: " + "; ".join(gaps) if gaps else None


def _lost(name: str, a: Arm, where: str = "") -> str | None:
    """'<name><where> failed, diverged or gave NaN in k of n seeds', or None where ``a`` lost no seed."""
    if a.lost:
        return f"{name}{where} failed, diverged or gave NaN in {len(a.lost)} of {len(result_seeds(a))} seeds"
    return None


def gate(dropout: Arm, qsd: Arm, none: Arm | None, gated: tuple[Arm, Arm] | None = None) -> str | None:
    """The baseline-sanity gate on what is there: why no verdict is given (every failing test, '; '-joined),
    or None. Dropout and none must have lost no seed, dropout must beat none on validation, and both arms must
    have converged; a seed lost in a run the gate reads (``gated``) withholds too, whichever arm, since the
    gate cannot read it. (A lost seed of the compared QSD runs is a result: it counts against QSD,
    ``compare``.) ``gated``: the dropout and QSD arms the gate reads where they are not the compared ones (a
    tuned comparison's runs at the rates the other seeds pick)."""
    g_dropout, g_qsd = gated or (dropout, qsd)
    at = " at the rates the other seeds pick"
    if lost := [r for r in (_lost("dropout", dropout), gated and _lost("dropout", g_dropout, at),
                            gated and _lost("QSD", g_qsd, at), none and _lost("none", none)) if r]:
        return "; ".join(lost)
    valid = {s: c for s, c in g_dropout.valid.items() if c}
    if not valid:
        return "no completed dropout runs"
    none_valid = {s: c for s, c in none.valid.items() if c} if none else {}
    if none and not none_valid:
        return "no completed none run to compare dropout with on validation"
    reasons = [(none_valid and beats_none(valid, none_valid)) or None,  # every test that fails, not the first
               convergence("dropout", valid, g_dropout.longer, len(g_dropout.longer_lost)),
               convergence("QSD", {s: c for s, c in g_qsd.valid.items() if c}, g_qsd.longer, len(g_qsd.longer_lost))]
    return "; ".join(r for r in reasons if r) or None


def compare(dropout: Arm, qsd: Arm, planned: int, none: Arm | None = None,
            gated: tuple[Arm, Arm] | None = None) -> dict[str, object]:
    """Paired QSD - dropout difference (lower is better) and its verdict, or why none is given: while a
    planned input is missing (``missing_inputs``: a seed, the ``none`` runs, an arm's longer runs), what is
    missing, with the gate's reason on what is there after it (provisional); else the gate's reason.
    ``gated``: the arms the gate reads, where they are not the compared ones (``gate``)."""
    g_dropout, g_qsd = gated or (dropout, qsd)
    d = paired_difference(dropout.test, qsd.test)
    out = {"qsd_minus_dropout": d["diff"], "n_pairs": d["n_pairs"], "t_lo": d["t_lo"], "t_hi": d["t_hi"],
           "boot_lo": d["lo"], "boot_hi": d["hi"],
           **{f"{key}_gain": gain_cell({s: c for s, c in a.valid.items() if c}, a.longer, len(a.longer_lost))
              for key, a in (("dropout", g_dropout), ("qsd", g_qsd))}}
    reason, gap = gate(dropout, qsd, none, gated), missing_inputs(dropout, qsd, none, planned, gated)
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
    # an arm with no run collected yet is an empty one: its seeds read as missing inputs (incomplete)
    return {"arms": a, **compare(a.get("dropout", Arm()), a.get("qsd", Arm()), planned, a.get("none"))}
