"""Which collected runs a figure or table reads: the recipe's rates, default QSD settings, a rate grid's
points, and why an experiment has no runs at a scale."""
from __future__ import annotations

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
    """The grid point a seed is tuned to (table3 b): the index of the lowest final validation metric,
    ties to the earlier point (the lower rate: every manifest lists its grid in ascending order); None
    marks a point without one (diverged or failed). The first point when no point has one."""
    scored = [(v, i) for i, v in enumerate(valid) if v is not None]
    return min(scored)[1] if scored else 0


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
