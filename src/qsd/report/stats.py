"""Seed statistics: mean with a 95% t-interval, paired QSD - dropout differences with a
bootstrap 95% interval (``scipy.stats.bootstrap``), and a proportion of counts with a 95% Wilson interval."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values) -> dict[str, float]:
    """Mean, sd, n and a 95% t-interval of the mean (NaN interval when n < 2)."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "n": 0, "lo": math.nan, "hi": math.nan}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "sd": math.nan, "n": 1, "lo": math.nan, "hi": math.nan}
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "lo": mean - half, "hi": mean + half}


def paired_difference(a: dict[int, float], b: dict[int, float], seed: int = 0) -> dict[str, float]:
    """``b - a`` over the seeds both have: mean, a percentile-bootstrap 95% interval (``lo``, ``hi``;
    10,000 resamples) and a paired t 95% interval (``t_lo``, ``t_hi``). With few seeds the bootstrap
    interval is too narrow (3 pairs have only 10 distinct resamples), so verdicts use the t interval."""
    seeds = sorted(set(a) & set(b))
    d = np.array([b[s] - a[s] for s in seeds], dtype=float)
    t = mean_ci(d)
    out = {"diff": float(d.mean()) if len(d) else math.nan, "n_pairs": len(d), "lo": math.nan, "hi": math.nan,
           "t_lo": t["lo"], "t_hi": t["hi"]}
    if len(d) >= 2 and np.ptp(d) > 0:
        res = stats.bootstrap((d,), np.mean, n_resamples=10_000, confidence_level=0.95, method="percentile",
                              random_state=np.random.default_rng(seed))
        out["lo"], out["hi"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    elif len(d) >= 2:
        out["lo"] = out["hi"] = float(d[0])
    return out


VERDICTS = ("QSD better", "QSD worse", "no detectable difference")  # what ``verdict`` says


def verdict(diff: dict[str, float], lower_is_better: bool = True) -> str:
    """Words for a QSD - dropout difference, from its paired t interval: QSD better / no detectable
    difference / QSD worse."""
    lo, hi = diff["t_lo"], diff["t_hi"]
    if lo != lo or hi != hi:
        return "too few seeds to tell"
    better = hi < 0 if lower_is_better else lo > 0
    worse = lo > 0 if lower_is_better else hi < 0
    return VERDICTS[0] if better else VERDICTS[1] if worse else VERDICTS[2]


def proportion_ci(successes: int, trials: int) -> dict[str, float]:
    """``successes / trials`` with a 95% Wilson score interval (``lo``, ``hi``), which stays inside [0, 1] and
    has width at 0 or ``trials`` successes, where a t interval over a few near-zero values crosses zero or
    collapses to a point (NaN when ``trials`` is 0)."""
    if trials <= 0:
        return {"p": math.nan, "lo": math.nan, "hi": math.nan}
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return {"p": successes / trials, "lo": max(0.0, float(ci.low)), "hi": min(1.0, float(ci.high))}
