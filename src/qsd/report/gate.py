"""The baseline-sanity gate: when a QSD-vs-dropout comparison is fair enough to get a verdict.

A comparison with a weak or unfinished arm flatters the other, so a verdict is given only where every
planned input is collected and both arms are sane (``RULE`` states it in words, for tables and figure
footers): dropout beats no regularisation on validation, and each arm, trained ``LONGER`` x the epochs,
improves its seed-mean final validation metric by at most ``TOLERANCE``. On a rate grid the values the gate
reads are those of the rate each seed is given on the *other* seeds' validation (``select.loso_picks``),
so they were not selected for being low: a value picked for being low regresses to the mean, which would
make the further gain look smaller and "beats none" easier than they are.

The functions here work on validation curves: seed -> the metric per epoch (lower is better).
"""
from __future__ import annotations

import math

import numpy as np

LONGER = 1.5  # the convergence test trains the compared runs this many times the epochs
TAIL = 0.2  # the descriptive tail: the final fifth of the epochs
TOLERANCE = 0.02  # relative improvement that still counts as "stopped improving"
MIN_EPOCHS = 5
SHORT_RULE = (f"verdicts gated: every planned run collected, dropout beats none on validation, and dropout and QSD "
              f"each trained {LONGER:g}x the epochs improve validation by <= {TOLERANCE:.0%}")
RULE = (f"Verdicts are gated: every planned input must be collected (the seeds, the `none` runs, both arms' runs "
        f"trained {LONGER:g}x the epochs, every run's validation curve; else 'incomplete: <what is missing>'); "
        f"dropout must beat no regularisation on the seed-mean final validation metric; and dropout and QSD must each have converged: "
        f"trained {LONGER:g}x the epochs (the same runs, every compared seed), the seed-mean final validation "
        f"metric improves by at most {TOLERANCE:.0%} (relative). On a rate grid each seed's rate is picked on the "
        f"other seeds' validation, so the gate never reads a value selected for being low; a tuned comparison "
        f"whose picks lie on the grid's edge for most seeds is not comparable. A lost dropout or none seed (diverged, "
        f"failed or NaN), or one lost in a run the gate reads, withholds the verdict; a lost QSD seed of the "
        f"compared runs counts against QSD. Otherwise: 'not comparable: "
        f"<reason>'. The tail of one schedule is shown for description only.")


def _gain(before: float, after: float) -> float:
    return (before - after) / abs(before) if before else 0.0


def percent(gain: float) -> str:
    """``gain`` as a percentage with one decimal, or two where one decimal would print TOLERANCE itself
    (1.97%, not 2.0%: which side of the rule a gain lies on is what the reader needs)."""
    text = f"{gain:.1%}"
    return f"{gain:.2%}" if text == f"{TOLERANCE:.1%}" else text


def longer_gain(curves: dict[int, list[float]], longer: dict[int, list[float]]) -> tuple[float, str] | None:
    """How much training LONGER x the epochs improves the seed-mean final validation metric (relative;
    > 0: better), over the seeds of ``curves``, and how it was measured; None unless every seed has its
    longer curve."""
    if not curves or not set(curves) <= set(longer):
        return None
    seeds = sorted(curves)
    standard, long = (float(np.mean([c[s][-1] for s in seeds])) for c in (curves, longer))
    epochs = (min(len(longer[s]) for s in seeds), min(len(curves[s]) for s in seeds))
    return _gain(standard, long), f"with {LONGER:g}x the epochs ({epochs[0]}, not {epochs[1]})"


def tail_gain(curves: dict[int, list[float]]) -> tuple[float, str] | None:
    """Descriptive only: the best of the seed-mean curve's final TAIL of epochs against the best before
    them (the tail of a cosine schedule is its annealing, so it proves nothing either way). None: too few
    epochs."""
    if not curves:
        return None
    length = min(len(c) for c in curves.values())
    curve = np.mean([c[:length] for c in curves.values()], axis=0)
    if length < MIN_EPOCHS:
        return None
    tail = max(1, math.ceil(TAIL * length))
    return _gain(curve[:-tail].min(), curve[-tail:].min()), f"over the final {tail} of {length} epochs"


def gain_cell(curves: dict[int, list[float]], longer: dict[int, list[float]], longer_lost: int = 0) -> str:
    """An arm's further gain for a table: measured with its longer runs; where ``longer_lost`` of them were
    lost (diverged, failed, NaN), that; where they are missing, '1.5x runs missing'; the tail's gain beside
    either (descriptive)."""
    if not longer_lost and (gain := longer_gain(curves, longer)):
        return f"{percent(gain[0])} {gain[1]}"
    tail = tail_gain(curves)
    what = f"{LONGER:g}x runs lost in {longer_lost} seed(s)" if longer_lost else f"{LONGER:g}x runs missing"
    return what + (f" (tail: {percent(tail[0])} {tail[1]})" if tail else "")


def convergence(name: str, curves: dict[int, list[float]], longer: dict[int, list[float]],
                longer_lost: int = 0) -> str | None:
    """Why arm ``name`` is not shown to have converged, or None: its longer runs lost (diverged, failed,
    NaN), or still improving by more than TOLERANCE. (Missing longer runs are the caller's ``incomplete``.)"""
    if longer_lost:
        return f"{name} trained {LONGER:g}x the epochs failed or diverged in {longer_lost} seed(s)"
    gain = longer_gain(curves, longer)
    if gain and not gain[0] <= TOLERANCE:
        return f"{name} not converged (validation still improved {percent(gain[0])} {gain[1]})"
    return None


def beats_none(dropout: dict[int, list[float]], none: dict[int, list[float]]) -> str | None:
    """Why dropout does not beat no regularisation on the seed-mean final validation metric, or None."""
    d_final = float(np.mean([c[-1] for c in dropout.values()]))
    n_final = float(np.mean([c[-1] for c in none.values()]))
    return None if d_final < n_final else f"dropout does not beat none on validation ({d_final:.4g} vs {n_final:.4g})"
