"""Each verdict of table1 and table3 next to the one the fresh seeds give (``qsd-reproduce --replicate``),
judged by the rule docs/protocols.md states (replication on fresh seeds), which was fixed before any fresh seed trained."""
from __future__ import annotations

import math
import re
from pathlib import Path

from scipy import stats

from .stats import VERDICTS
from .tables import read_csv, write_table

TABLES = ("table3_tuned", "table1_summary")  # the tables it compares; table1's rows are table3's (a), for every experiment


def word(verdict: str) -> str | None:
    """The verdict's word (``QSD worse (lost 1 of 5 seeds)`` -> ``QSD worse``), or None where it was withheld
    or not run."""
    return next((w for w in VERDICTS if verdict.startswith(w)), None)


def outcome(original: str, fresh: str) -> str:
    """``replicates``, ``does not replicate``, or ``not tested (<which side> withheld | not run)``, from the
    two verdict cells (their reasons are in the cells)."""
    a, b = word(original), word(fresh)
    if a and b:
        return "replicates" if a == b else "does not replicate"
    why = [f"{side} {'not run' if not v or v.startswith('not run') else 'withheld'}"
           for side, v, w in (("main seeds", original, a), ("fresh seeds", fresh, b)) if not w]
    return f"not tested ({', '.join(why)})"


def comparisons(res: Path) -> dict[tuple[str, str], dict]:
    """(experiment, comparison) -> its row (with the ``table`` it is in), for every comparison of table3
    and table1 that was made or withheld (not those not testable at the scale); table1's row of an
    experiment is its recipe-rate comparison, given once where table3 has it too."""
    out: dict[tuple[str, str], dict] = {}
    for table in TABLES:
        for r in read_csv(res / f"{table}.csv"):
            if r.get("verdict") and not str(r["verdict"]).startswith("not testable"):
                out.setdefault((r["experiment"], r.get("comparison", "(a) recipe rate")), {**r, "table": table})
    return out


def _estimate(cell: str) -> tuple[float, float, int] | None:
    """(estimate, standard error, pairs) from a cell '0.102 (5 pairs) [-0.07259, 0.2766]' (the paired t 95%
    interval gives the error: its half-width over t(0.975, pairs - 1)); None where the cell has no interval."""
    m = re.fullmatch(r"(\S+) \((\d+) pairs\) \[(\S+), (\S+)\]", cell)
    if not m or int(m.group(2)) < 2 or "n/a" in cell:
        return None
    est, n, lo, hi = float(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4))
    return est, (hi - lo) / 2 / float(stats.t.ppf(0.975, n - 1)), n


def welch_df(*errors: tuple[float, int]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variances se^2, each (se, pairs) estimated on
    pairs - 1 degrees of freedom."""
    variances = [(se * se, n - 1) for se, n in errors]
    total = sum(v for v, _ in variances)
    if total == 0:
        return float(sum(df for _, df in variances))
    return total * total / sum(v * v / df for v, df in variances)


def prediction(original: str, fresh: str) -> str:
    """Whether the fresh seeds' estimate lies inside the 95% prediction interval the main estimate gives
    for a replication (Patil, Peng & Leek 2016, "What should researchers expect when they replicate
    studies?", Perspect Psychol Sci 11:539): main ± q sqrt(se_main^2 + se_fresh^2), with q the t quantile on
    the Welch-Satterthwaite degrees of freedom of that sum (each error estimated from pairs - 1; at most
    pairs_main + pairs_fresh - 2, reached where each error's square is in proportion to its pairs - 1),
    since both errors are estimated from few seeds (1.96, as for known variances, would cover about 91% at
    5 pairs): 'inside [lo, hi]', 'outside [lo, hi]', or '' where either side has no interval."""
    a, b = _estimate(original), _estimate(fresh)
    if not a or not b:
        return ""
    half = float(stats.t.ppf(0.975, welch_df(a[1:], b[1:]))) * math.hypot(a[1], b[1])
    lo, hi = a[0] - half, a[0] + half
    return f"{'inside' if lo <= b[0] <= hi else 'outside'} [{lo:+.3g}, {hi:+.3g}]"


def render_replication(main: Path, fresh: Path, scale: str) -> list[dict]:
    """Write ``replication.csv/.md`` into ``fresh`` (the replication's results) and return its rows."""
    original, again = comparisons(main), comparisons(fresh)
    rows = []
    cells = lambda row: f"{row.get('QSD - dropout', '')} {row.get('paired t 95% CI', '')}".strip()
    for key, r in original.items():
        f = again.get(key, {})
        rows.append({"table": r["table"], "experiment": key[0], "comparison": key[1],
                     "main: QSD - dropout [95% CI]": cells(r), "main: verdict": r["verdict"],
                     "fresh seeds: QSD - dropout [95% CI]": cells(f), "fresh seeds: verdict": f.get("verdict", ""),
                     "outcome": outcome(str(r["verdict"]), str(f.get("verdict", ""))),
                     "fresh estimate in the main's 95% prediction interval": prediction(cells(r), cells(f))})
    write_table(fresh, "replication", rows, scale,
                "Each verdict of table1 and table3 on the main results' seeds and on fresh seeds (the same runs "
                "otherwise, gated on their own). Replicates: the same word; does not replicate: both gated, different "
                "words; not tested: either side withheld or not run. The rule was fixed before any fresh seed trained. "
                "Read on the estimates too: whether the fresh estimate lies in the 95% prediction interval the main one "
                "gives (Patil, Peng & Leek 2016), whatever the gate says")
    return rows
