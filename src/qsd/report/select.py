"""Which collected runs a figure or table reads: the recipe's rates, default QSD settings, a rate grid's
points, and why an experiment has no runs at a scale."""
from __future__ import annotations

import math

from ..data import store as data_store
from . import recipes

REGS = ["none", "dropout", "gaussian", "qsd"]  # the built-in regularisers, in display order


def is_default_qsd(r: dict) -> bool:
    """A run that is not QSD, or QSD at the default n, CV, alpha and mapping."""
    return r["regulariser"] != "qsd" or all(r.get(k) == v for k, v in recipes.default_qsd().items())


def recipe_runs(rows: list[dict], experiment: str) -> list[dict]:
    """Runs of ``experiment`` at its recipe's rates with default QSD settings, whatever their status."""
    rates = recipes.recipe_rates(experiment)
    return [r for r in rows if r["experiment"] == experiment and all(r.get(k) == v for k, v in rates.items())
            and is_default_qsd(r)]


MATCHED = {"failure": "equal P(m=0)", "variance": "equal Var(m)"}  # QSD mappings that match a dropout statistic


def matched_runs(rows: list[dict], experiment: str, mapping: str) -> list[dict]:
    """QSD runs of ``experiment`` at its recipe's rates with ``mapping`` (one of MATCHED: table3 c), whatever
    their status."""
    rates = recipes.recipe_rates(experiment)
    return [r for r in rows if r["experiment"] == experiment and r["regulariser"] == "qsd" and r.get("mapping") == mapping
            and all(r.get(k) == v for k, v in rates.items())]


def main_runs(rows: list[dict], experiment: str) -> list[dict]:
    """The completed ``recipe_runs``."""
    return [r for r in recipe_runs(rows, experiment) if r["status"] == "completed"]


def not_testable(experiment: str, scale: str) -> str | None:
    """Why ``experiment`` is not run at ``scale`` (a manifest's ``not_testable``), or None."""
    for m in recipes.manifests().values():
        reason = (m.get("not_testable") or {}).get(experiment, {}).get(scale)
        if reason:
            return reason
    return None


def by_reg(rows: list[dict], value: str) -> dict[str, dict[int, float]]:
    """regulariser -> seed -> value."""
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        if r.get(value, "") != "":
            out.setdefault(r["regulariser"], {})[r["seed"]] = float(r[value])
    return out


def ordered(regs) -> list[str]:
    """Regularisers in the order figures show them (none, dropout, gaussian, qsd), then any others."""
    return [g for g in REGS if g in regs] + sorted(set(regs) - set(REGS))


def validation_best(valid: list[float | None]) -> int:
    """The grid point a seed is tuned to (table3 b): the index of the lowest final validation metric, ties
    to the earlier point (the lower rate: every manifest lists its grid in ascending order); None or NaN
    marks a point without one (diverged, failed), which is never picked unless every point is one."""
    score = lambda v: v if v is not None and math.isfinite(v) else math.inf
    return min(range(len(valid)), key=lambda i: (score(valid[i]), i))


def loso_picks(valid: dict[int, list[float | None]]) -> dict[int, int]:
    """The grid point each seed is given for the gate (table3 b): seed -> ``validation_best`` of the mean
    final validation metric over the *other* seeds (leave one seed out), so that the gate, reading that
    seed's values there, reads values its own noise did not pick. ``valid``: seed -> the final validation
    metric per grid point, None (or NaN) where the run diverged or failed, which rules the point out for
    every other seed (the seed whose run was lost there may still be given it, and is then a lost seed).
    A lone seed is given its own best point (a smoke suite's single seed: there are no others)."""
    inf = lambda v: v if v is not None and math.isfinite(v) else math.inf
    out = {}
    for seed in valid:
        others = [v for s, v in valid.items() if s != seed] or [valid[seed]]
        out[seed] = validation_best([sum(inf(v[i]) for v in others) / len(others) for i in range(len(valid[seed]))])
    return out


def on_grid(r: dict, grid: list[dict[str, float]]) -> dict[str, float] | None:
    """The grid point ``r`` was run at (its rates agree on every slot the point names), or None."""
    return next((g for g in grid if all(r.get(k) == v for k, v in g.items())), None)


def absent_reason(experiment: str, scale: str) -> str:
    """Why ``experiment`` has no finished runs: not testable at this scale (and why), its data set must be
    supplied by the user, or it has not been run yet."""
    if reason := not_testable(experiment, scale):
        return f"not testable at {scale} scale: {reason}"
    data = recipes.experiment_data(experiment)
    if data_store.spec(data).obtain is None:
        return f"not run yet: its {data} data must be supplied by the user (it cannot be fetched here; see docs/usage.md: data)"
    return "not run yet at this scale"
