"""The tables that carry the verdicts and the numbers the reports quote: table1 (recipe rates), table3
(best-vs-best and matched mask statistics), the published anchors and table2 (cost), each drawn from the
collected files in ``results/<scale>/`` alone by ``render_<id>(res, scale)``.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import NamedTuple

from . import recipes
from .compare import Arm, arm, compare, read_collected, read_runs, recipe_comparison
from .gate import RULE
from .select import (MATCHED, REGS, absent_reason, is_default_qsd, loso_picks, main_runs, matched_runs, on_grid,
                     ordered, recipe_runs, validation_best)
from .stats import mean_ci
from .tables import fmt, group, read_csv, write_missing, write_table


EXPERIMENT_NAMES = {"mlp_mnist": "MLP / MNIST (error %)", "cnn_mnist": "CNN / MNIST (error %)",
                    "cnn_fashion": "CNN / Fashion-MNIST (error %)",
                    "cnn_fashion_extra": "CNN+BN+WD+aug / Fashion-MNIST (error %)",
                    "wrn_cifar10": "WRN / CIFAR-10 (error %)", "lstm_ptb": "LSTM LM / PTB (test perplexity)",
                    "lstm_imdb": "LSTM / IMDB (error %)", "lstm_rt": "LSTM / Rotten Tomatoes (error %)"}



GAINS = ["dropout's further gain", "QSD's further gain"]  # each arm's convergence test, as table1 and table3 show it


def _comparison_cells(c: dict) -> dict[str, str]:
    return {"QSD - dropout": f"{fmt(c['qsd_minus_dropout'])} ({c['n_pairs']} pairs)",
            "paired t 95% CI": f"[{fmt(c['t_lo'])}, {fmt(c['t_hi'])}]",
            "bootstrap 95% CI": f"[{fmt(c['boot_lo'])}, {fmt(c['boot_hi'])}]",
            GAINS[0]: c["dropout_gain"], GAINS[1]: c["qsd_gain"], "verdict": c["verdict"]}


def render_table1_summary(res: Path, scale: str) -> None:
    runs, curves, longer = read_collected(res)
    rows = []
    for e, label in EXPERIMENT_NAMES.items():
        if not recipe_runs(runs, e):
            rows.append({"experiment": label, "verdict": absent_reason(e, scale)})
            continue
        c = recipe_comparison(runs, curves, longer, e, recipes.SEEDS[scale])
        row = {"experiment": label, **{reg: c["arms"][reg].cell() for reg in ordered(c["arms"])}}
        if "qsd_minus_dropout" in c:
            row.update(_comparison_cells(c))
        else:
            row["verdict"] = c["verdict"]
        rows.append(row)
    if not rows:
        return write_missing(res, "table1_summary", scale, "any experiment")
    keys = ["experiment", *ordered({k for r in rows for k in r if k in REGS}), "QSD - dropout", "paired t 95% CI",
            "bootstrap 95% CI", *GAINS, "verdict"]
    write_table(res, "table1_summary", [{k: r.get(k, "") for k in keys} for r in rows], scale,
                "Final test metric per regulariser at the recipe's rates (mean ± sd over seeds; lost seeds counted) "
                "and the paired QSD - dropout difference (negative = QSD better; verdict from the paired t interval). "
                + RULE)


# experiment -> (row label, the rate slot that names a point of its grid)
TUNED = {"mlp_mnist": ("MLP / MNIST (error %)", "hidden"), "cnn_fashion": ("CNN / Fashion-MNIST (error %)", "hidden"),
         "lstm_imdb": ("LSTM / IMDB (error %)", "output"), "lstm_rt": ("LSTM / Rotten Tomatoes (error %)", "output")}


class Tuned(NamedTuple):
    """One regulariser tuned on a rate grid (table3 b): ``arm``, each seed at its own validation-best rate
    (what is compared and tested), ``rates``, those rates by seed, and ``gated``, each seed at the rate the
    *other* seeds' validation picks (``loso_picks``: what the gate reads, never a value selected for being low)."""

    arm: Arm
    rates: dict[int, float]
    gated: Arm


def _tuned_arm(rows: list[dict], grid: list[dict], curves: dict[str, list[float]], slot: str,
               longer: dict[tuple[str, str], dict] | None = None) -> Tuned:
    """``Tuned`` from one regulariser's grid runs. A run that diverged or failed rules its point out of a pick;
    a seed without a finished run at every grid point is left out."""
    full: dict[int, list[dict]] = {}
    for seed, rr in group([r for r in rows if on_grid(r, grid)], lambda r: r["seed"]).items():
        at = {grid.index(on_grid(r, grid)): r for r in rr}
        if len(at) == len(grid):
            full[seed] = [at[i] for i in range(len(grid))]
    final = lambda r: float(r["valid_" + r["metric"]]) if r["status"] == "completed" and \
        r.get("valid_" + r["metric"], "") != "" else None
    valid = {seed: [final(r) for r in points] for seed, points in full.items()}
    own = {seed: full[seed][validation_best(v)] for seed, v in valid.items()}
    other = {seed: full[seed][i] for seed, i in loso_picks(valid).items()}
    return Tuned(arm(list(own.values()), curves, longer), {s: r["rate_" + slot] for s, r in own.items()},
                 arm(list(other.values()), curves, longer))


def _picks(picked: dict[int, float], grid: list[float]) -> str:
    """The rates picked, by seed, and how many lie on the grid's edge (the best rate may lie beyond it):
    ``0.1, 0.1, 0.3 (2 at the grid's lowest)``."""
    text = ", ".join(f"{picked[s]:g}" for s in sorted(picked))
    edges = [f"{n} at the grid's {side}" for side, edge in (("lowest", min(grid)), ("highest", max(grid)))
             if (n := sum(r == edge for r in picked.values()))]
    return text + (f" ({', '.join(edges)})" if edges else "")


def at_edge(picked: dict[int, float], grid: list[float]) -> float | None:
    """The grid's edge rate (lowest or highest) that most seeds were tuned to, or None: there the best rate
    may lie beyond the grid, so a best-vs-best comparison is not one until the grid is widened."""
    for edge in (min(grid), max(grid)):
        if 2 * sum(r == edge for r in picked.values()) > len(picked):
            return edge
    return None


def edge_verdict(verdict: str, picks: dict[str, dict[int, float]], grid: list[float]) -> str:
    """``verdict`` withheld where an arm's picks (name -> seed -> rate; empty for a recipe rate) lie on the
    grid's edge for most seeds (``at_edge``): 'not comparable: <name>'s best rate is at the grid's edge
    (<rate>)', with the gate's own reasons kept after it. An incomplete verdict stays as it is."""
    edges = [f"{name}'s best rate is at the grid's edge ({edge:g})" for name, picked in picks.items()
             if picked and (edge := at_edge(picked, grid)) is not None]
    if not edges or verdict.startswith("incomplete"):
        return verdict
    other = verdict.removeprefix("not comparable: ") if verdict.startswith("not comparable") else ""
    return "not comparable: " + "; ".join([*edges, *filter(None, [other])])


def render_table3_tuned(res: Path, scale: str) -> None:
    runs, curves, longer = read_collected(res)
    rows = []
    for e, (label, slot) in TUNED.items():
        sel = [r for r in runs if r["experiment"] == e and is_default_qsd(r)]
        if not sel:
            continue
        grid = recipes.rate_grid("table3_tuned", e)
        none = arm([r for r in recipe_runs(runs, e) if r["regulariser"] == "none"], curves)
        tuned = {reg: _tuned_arm([r for r in sel if r["regulariser"] == reg], grid, curves, slot, longer)
                 for reg in ("dropout", "qsd")}
        gated = (tuned["dropout"].gated, tuned["qsd"].gated)
        recipe = recipe_comparison(runs, curves, longer, e, recipes.SEEDS[scale])["arms"]
        cases = []  # (comparison, dropout's and QSD's (Arm, picks), the arms the gate reads), or (comparison, why not)
        if all(t.arm.test or t.arm.lost for t in tuned.values()):
            cases.append(("(b) each at its validation-best rate",
                          ((tuned["dropout"].arm, tuned["dropout"].rates), (tuned["qsd"].arm, tuned["qsd"].rates)), gated))
        else:
            cases.append(("(b) each at its validation-best rate",
                          "not run yet: no seed has a finished run at every rate of the grid", None))
        if "dropout" in recipe and "qsd" in recipe:
            cases.append(("(a) recipe rate", ((recipe["dropout"], {}), (recipe["qsd"], {})), None))
        for mapping, what in MATCHED.items():
            comparison, matched = f"(c) recipe rate, QSD at {what} ({mapping} mapping)", matched_runs(runs, e, mapping)
            if matched and "dropout" in recipe:
                cases.append((comparison, ((recipe["dropout"], {}), (arm(matched, curves, longer), {})), None))
            elif mapping in recipes.swept("table3_tuned", e, "regulariser.mapping"):
                cases.append((comparison, f"not run yet: no finished QSD run with the {mapping} mapping", None))
        for comparison, arms, gate_reads in cases:
            if isinstance(arms, str):
                rows.append({"experiment": label, "comparison": comparison, "verdict": arms})
                continue
            (d_arm, d_rates), (q_arm, q_rates) = arms
            c = compare(d_arm, q_arm, recipes.SEEDS[scale], none if none.test or none.lost else None, gate_reads)
            c["verdict"] = edge_verdict(str(c["verdict"]), {"dropout": d_rates, "QSD": q_rates},
                                        [g["rate_" + slot] for g in grid])
            for reg, a, picked in (("dropout", d_arm, d_rates), ("qsd", q_arm, q_rates)):
                rows.append({"experiment": label, "comparison": comparison, "regulariser": reg,
                             "best_rate": _picks(picked, [g["rate_" + slot] for g in grid]) if picked else "recipe",
                             "test": a.cell(), **(_comparison_cells(c) if reg == "qsd" else
                                                  {k: "" for k in _comparison_cells(c)})})
    if not rows:
        return write_missing(res, "table3_tuned", scale, "the rate grids of " + " / ".join(TUNED))
    keys = ["experiment", "comparison", "regulariser", "best_rate", "test", "QSD - dropout", "paired t 95% CI",
            "bootstrap 95% CI", *GAINS, "verdict"]
    write_table(res, "table3_tuned", [{k: r.get(k, "") for k in keys} for r in rows], scale,
                "QSD vs dropout (a) at the recipe's rate, (b) each at its own validation-best rate (hidden for the MLP "
                "and CNN, embedding = output for the LSTMs; picked per seed from the grid; best_rate lists the picks by "
                "seed and how many lie on the grid's edge, where the best rate may lie beyond it), (c) QSD at dropout's "
                "P(m=0) or Var(m). The headline is (b). " + RULE)


ANCHORS = [  # (anchor, experiment, regulariser, published, unit, scales)
    ("zaremba_small_ptb_test_ppl", "lstm_ptb_small", "none", 114.5, "test perplexity", ("cpu", "paper")),
    ("zaremba_medium_ptb_test_ppl", "lstm_ptb", "dropout", 82.7, "test perplexity", ("paper",)),
]


def render_anchors(res: Path, scale: str) -> None:
    runs = read_runs(res)
    rows = []
    for anchor, e, reg, published, unit, scales in ANCHORS:
        if scale not in scales:
            continue
        done = [r for r in main_runs(runs, e) if r["regulariser"] == reg]
        s = mean_ci([r["test_metric"] for r in done])
        within = abs(s["mean"] - published) <= 0.03 * published if done else False
        rows.append({"anchor": anchor, "published": published, "measured": s["mean"] if done else "not run",
                     "unit": unit, "command": f"qsd-train experiment={e} regulariser={reg} scale={scale} seed=0"
                                              + (f"..{s['n'] - 1} (mean)" if s["n"] > 1 else ""),
                     "seeds": s["n"], "within_3pct": within})
    if not rows:
        return write_missing(res, "anchors", scale, "any published anchor")
    write_table(res, "anchors", rows, scale, "Published numbers the recipes' baselines must reach (within 3%)")


def render_table2_cost(res: Path, scale: str) -> None:
    path = res / "cost.json"
    if not path.exists():
        return write_missing(res, "table2_cost", scale, "cost benchmark (run `make reproduce-all` or benchmarks/bench_step.py)")
    cost = json.loads(path.read_text())
    rows = [{"model": m, "regulariser": reg, **v} for m, regs in cost["models"].items() for reg, v in regs.items()]
    write_table(res, "table2_cost", rows, scale,
                f"Training-step time and saved-activation memory relative to dropout ({cost['device']}, "
                f"{cost['threads']} threads, median of {cost['repeats']} steps)")


def _device(run: dict) -> str:
    """The GPU's or CPU's name a run recorded, or its device kind where it recorded none."""
    return str(run.get("device_name") or f"{run.get('device') or 'unknown'} (name not recorded)")


def _time_row(name: str, runs: list[dict]) -> dict:
    """One figure's (or the suite's) training time: where and beside how many runs its runs trained."""
    wall = [float(r["wall_s"]) for r in runs]
    jobs = [r.get("jobs") for r in runs]
    unknown = sum(j in ("", None) for j in jobs)
    return {"figure": name, "runs": len(runs), "device": "; ".join(sorted({_device(r) for r in runs})),
            "jobs": ", ".join(str(j) for j in sorted({j for j in jobs if j not in ("", None)})) or "not recorded",
            "median minutes a run": round(statistics.median(wall) / 60, 1), "run hours": round(sum(wall) / 3600, 2),
            "machine hours": round(sum(w / int(j) / _stack(r) for w, j, r in zip(wall, jobs, runs)) / 3600, 2) if not unknown
            else f"n/a: jobs not recorded for {unknown} run(s)"}


def _stack(run: dict) -> int:
    """How many runs trained as one stacked model with ``run`` (1: one run a process)."""
    return int(float(run.get("stack") or 1))


def _pace_rows(runs: list[dict]) -> list[dict]:
    """How long one run took, per experiment, length, device, JOBS and stack: what a slice's time budget needs."""
    by_setting = group(runs, lambda r: (r["experiment"], int(float(r["epochs"])),
                                        int(float(r.get("continued_from") or 0)),  # epochs taken from a shorter twin
                                        _device(r), str(r.get("jobs") or "not recorded"), _stack(r)))
    rows = []
    for (experiment, epochs, head, device, jobs, stack), rs in sorted(by_setting.items()):
        minutes = sorted(float(r["wall_s"]) / 60 for r in rs)
        rows.append({"experiment": experiment, "epochs": f"{epochs} (on from {head})" if head else epochs,
                     "device": device, "jobs": jobs, "stack": stack,
                     "runs": len(rs),
                     "median minutes a run": round(statistics.median(minutes), 1),
                     "range": f"{minutes[0]:.1f}-{minutes[-1]:.1f}"})
    return rows


def render_compute(res: Path, scale: str) -> None:
    runs = [r for r in read_csv(res / "runs.csv") if r.get("wall_s") not in ("", None)]
    if not runs:
        write_missing(res, "compute_pace", scale, "any run")
        return write_missing(res, "compute", scale, "any run")
    by_figure = group([(f, r) for r in runs for f in str(r.get("figures") or "").split()], lambda fr: fr[0])
    rows = [_time_row(f, [r for _, r in pairs]) for f, pairs in sorted(by_figure.items())]
    write_table(res, "compute", [*rows, _time_row("all (each run once)", runs)], scale,
                "Training time of the collected runs: each run's wall time as its summary.json records it, the "
                "device it trained on and its queue's JOBS (how many runs trained side by side at most); machine "
                "hours = the sum of run time / (JOBS x stack), about the time the machine was held (less where a "
                "queue's tail ran fewer at once; a stack's runs share its wall time). A run that several figures use counts in each, and once in the last row; "
                "compute_pace.md gives the time of one run per experiment, device and JOBS")
    write_table(res, "compute_pace", _pace_rows(runs), scale,
                "Time of one run per experiment, length (epochs), device, JOBS (the most runs its queue trained "
                "side by side; a run's time also depends on what else the machine did) and stack (runs trained as "
                "one model, whose time is the stack's), from each run's recorded wall time (a resumed run's parts "
                "added up; `30 (on from 20)`: a run that took its first 20 epochs from its shorter twin's end and "
                "timed the other 10): the paces a slice's --time-budget plans with")


RENDERERS = {name[len("render_"):]: fn for name, fn in globals().items() if name.startswith("render_")}
