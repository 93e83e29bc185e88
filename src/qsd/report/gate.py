"""The baseline-sanity gate: when a QSD-vs-dropout comparison is fair enough to get a verdict.

A comparison with a weak baseline flatters whatever is compared with it, so a verdict is given only
where the dropout baseline is sane (``RULE`` states it in words, for READMEs and figure footers).
"""
from __future__ import annotations

import math

import numpy as np

TAIL = 0.2  # the final fifth of the epochs
TOLERANCE = 0.02  # relative improvement that still counts as "stopped improving"
MIN_EPOCHS = 5
SHORT_RULE = (f"verdicts gated: dropout must beat none on validation and have converged (final {TAIL:.0%} of "
              f"epochs improve validation by <= {TOLERANCE:.0%})")
RULE = (f"Verdicts are gated: dropout must (1) beat no regularisation on the mean final validation metric, "
        f"where the experiment has a `none` run, and (2) have converged: over the final {TAIL:.0%} of the "
        f"epochs its seed-mean validation metric improved on the best of the earlier epochs by at most "
        f"{TOLERANCE:.0%} (at least {MIN_EPOCHS} epochs); no seed may fail or diverge. Otherwise: "
        f"'not comparable: <reason>'.")


def _mean_curve(curves: dict[int, list[float]]) -> np.ndarray:
    """Seed-mean validation curve over the epochs every seed has."""
    length = min(len(c) for c in curves.values())
    return np.mean([c[:length] for c in curves.values()], axis=0)


def baseline_gate(dropout: dict[int, list[float]], none: dict[int, list[float]] | None = None,
                  failed: int = 0) -> str | None:
    """None if the dropout baseline is sane, else the reason it is not.

    ``dropout`` and ``none`` map seed -> validation metric per epoch (lower is better: error, perplexity;
    completed runs only);
    ``failed`` counts dropout seeds that failed or diverged. ``none=None``: the experiment has no
    unregularised run, so only convergence is checked."""
    if failed:
        return f"dropout failed or diverged in {failed} of {failed + len(dropout)} seeds"
    if not dropout:
        return "no completed dropout runs"
    if none:
        d_final = float(np.mean([c[-1] for c in dropout.values()]))
        n_final = float(np.mean([c[-1] for c in none.values()]))
        if not d_final < n_final:
            return f"dropout does not beat none on validation ({d_final:.4g} vs {n_final:.4g})"
    curve = _mean_curve(dropout)
    if len(curve) < MIN_EPOCHS:
        return f"too few epochs ({len(curve)}) to judge convergence"
    tail = max(1, math.ceil(TAIL * len(curve)))
    before, end = curve[:-tail].min(), curve[-tail:].min()
    gain = (before - end) / abs(before) if before else 0.0
    if gain > TOLERANCE:
        return (f"dropout not converged (validation still improved {gain:.1%} over the final "
                f"{tail} of {len(curve)} epochs)")
    return None
