"""The baseline-sanity gate: when a QSD-vs-dropout comparison is fair enough to get a verdict.

A comparison with a weak baseline flatters whatever is compared with it, so a verdict is given only
where the dropout baseline is sane (``RULE`` states it in words, for tables and figure footers).
"""
from __future__ import annotations

import math

import numpy as np

LONGER = 1.5  # the convergence test trains the compared dropout runs this many times the epochs
TAIL = 0.2  # without those runs: the final fifth of the epochs
TOLERANCE = 0.02  # relative improvement that still counts as "stopped improving"
MIN_EPOCHS = 5
SHORT_RULE = (f"verdicts gated: dropout must beat none on validation and have converged ({LONGER:g}x the epochs, or "
              f"where not run the final {TAIL:.0%} of them, improve validation by <= {TOLERANCE:.0%})")
RULE = (f"Verdicts are gated: dropout must (1) beat no regularisation on the mean final validation metric, "
        f"where the experiment has a `none` run, and (2) have converged: trained {LONGER:g}x the epochs (the same "
        f"runs, every compared seed), its seed-mean final validation metric improves by at most {TOLERANCE:.0%} "
        f"(relative); where those runs are not there, over the final {TAIL:.0%} of the epochs its seed-mean "
        f"validation metric improved on the best of the earlier epochs by at most {TOLERANCE:.0%} (at least "
        f"{MIN_EPOCHS} epochs); no seed may fail or diverge. Otherwise: 'not comparable: <reason>'.")


def _mean_curve(curves: dict[int, list[float]]) -> np.ndarray:
    """Seed-mean validation curve over the epochs every seed has."""
    length = min(len(c) for c in curves.values())
    return np.mean([c[:length] for c in curves.values()], axis=0)


def _gain(before: float, after: float) -> float:
    return (before - after) / abs(before) if before else 0.0


def percent(gain: float) -> str:
    """``gain`` as a percentage with one decimal, or two where one decimal would print TOLERANCE itself
    (1.97%, not 2.0%: which side of the rule a gain lies on is what the reader needs)."""
    text = f"{gain:.1%}"
    return f"{gain:.2%}" if text == f"{TOLERANCE:.1%}" else text


def further_gain(dropout: dict[int, list[float]], longer: dict[int, list[float]] | None = None) -> tuple[float, str] | None:
    """How much further training improves dropout's seed-mean validation metric (relative; > 0: better)
    and how that was measured. Where every seed has its run trained LONGER x the epochs (``longer``,
    seed -> curve), the final values of the two schedules; otherwise the best of the final TAIL of the
    epochs against the best before them. None: too few epochs to judge."""
    if longer and set(dropout) <= set(longer):
        seeds = sorted(dropout)
        standard, long = (float(np.mean([c[s][-1] for s in seeds])) for c in (dropout, longer))
        epochs = (min(len(longer[s]) for s in seeds), min(len(dropout[s]) for s in seeds))
        return _gain(standard, long), f"with {LONGER:g}x the epochs ({epochs[0]}, not {epochs[1]})"
    curve = _mean_curve(dropout)
    if len(curve) < MIN_EPOCHS:
        return None
    tail = max(1, math.ceil(TAIL * len(curve)))
    return _gain(curve[:-tail].min(), curve[-tail:].min()), f"over the final {tail} of {len(curve)} epochs"


def baseline_gate(dropout: dict[int, list[float]], none: dict[int, list[float]] | None = None, failed: int = 0,
                  longer: dict[int, list[float]] | None = None, longer_lost: int = 0) -> str | None:
    """None if the dropout baseline is sane, else the reason it is not.

    ``dropout`` and ``none`` map seed -> validation metric per epoch (lower is better: error, perplexity;
    completed runs only); ``failed`` counts dropout seeds that failed or diverged. ``none=None``: the
    experiment has no unregularised run, so only convergence is checked. ``longer``: seed -> the curve
    of the same dropout run trained LONGER x the epochs, where it was run and completed; ``longer_lost``
    counts those that failed or diverged."""
    if failed:
        return f"dropout failed or diverged in {failed} of {failed + len(dropout)} seeds"
    if not dropout:
        return "no completed dropout runs"
    if none:
        d_final = float(np.mean([c[-1] for c in dropout.values()]))
        n_final = float(np.mean([c[-1] for c in none.values()]))
        if not d_final < n_final:
            return f"dropout does not beat none on validation ({d_final:.4g} vs {n_final:.4g})"
    if longer_lost:
        return f"dropout trained {LONGER:g}x the epochs failed or diverged in {longer_lost} seeds"
    gain = further_gain(dropout, longer)
    if gain is None:
        return f"too few epochs ({len(_mean_curve(dropout))}) to judge convergence"
    if gain[0] > TOLERANCE:
        return f"dropout not converged (validation still improved {percent(gain[0])} {gain[1]})"
    return None
