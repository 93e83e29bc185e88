"""Quantal synaptic dilution (QSD), reconstructed from Bhumbra, arXiv 2009.13165.

Each unit's output is multiplied by a normalised quantal response instead of a Bernoulli mask::

    B_j ~ Bernoulli(p_j), j = 1..n      K = sum_j B_j  (Poisson-binomial)
    A | K ~ Gamma(shape=K / cv^2, scale=cv^2)   (A = 0 if K = 0; A = K if cv = 0)
    m = A / sum_j p_j                    so that E[m] = 1

The p_j are fixed quantiles of a Beta distribution with mean pbar and shape ``alpha``
(``alpha=inf``: all p_j = pbar). ``mapping`` ties pbar to the dropout rate r: "mean" sets
pbar = 1 - r; "failure" makes the all-sites-fail probability prod_j (1 - p_j) equal r.
With n=1, cv=0 the mask is exactly inverted dropout. The README says which of these
choices are ours rather than the paper's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from . import checks
from .masks import mask_shape
from .registry import register

MAPPINGS = ("mean", "failure")
_P_EPS = 1e-6  # site probabilities are clipped inside [eps, 1 - eps]


def beta_site_probs(pbar: float, n: int, alpha: float) -> np.ndarray:
    """n release probabilities: the (j - 1/2)/n quantiles of Beta(alpha, alpha (1 - pbar) / pbar),
    re-centred (additively) to mean ``pbar`` and clipped inside (0, 1)."""
    if pbar >= 1.0:
        return np.ones(n)
    if math.isinf(alpha) or n == 1:
        return np.full(n, pbar)
    q = (np.arange(n) + 0.5) / n
    p = stats.beta.ppf(q, alpha, alpha * (1.0 - pbar) / pbar)
    for _ in range(50):  # shift + clip until the clipped mean is pbar
        p = np.clip(p + (pbar - p.mean()), _P_EPS, 1.0 - _P_EPS)
        if abs(p.mean() - pbar) < 1e-12:
            break
    return p


def site_probs(rate: float, n: int, alpha: float, mapping: str) -> np.ndarray:
    """Release probabilities p_j for a QSD layer standing in for dropout at ``rate``."""
    if rate == 0.0:
        return np.ones(n)
    if mapping == "mean":
        return beta_site_probs(1.0 - rate, n, alpha)
    if math.isinf(alpha) or n == 1:  # closed form: (1 - p)^n = r
        return np.full(n, 1.0 - rate ** (1.0 / n))

    def excess_failure(pbar: float) -> float:
        return float(np.sum(np.log1p(-beta_site_probs(pbar, n, alpha)))) - math.log(rate)

    pbar = optimize.brentq(excess_failure, 1e-9, 1.0 - 1e-9, xtol=1e-14)
    return beta_site_probs(pbar, n, alpha)


def release_count_pmf(p: np.ndarray) -> np.ndarray:
    """P(K = k), k = 0..n, of the Poisson-binomial count K = sum_j Bernoulli(p_j)."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for j, pj in enumerate(p):
        pmf[1 : j + 2] = pmf[1 : j + 2] * (1.0 - pj) + pmf[: j + 1] * pj
        pmf[0] *= 1.0 - pj
    return pmf


def mask_moments(p: np.ndarray, cv: float) -> dict[str, float]:
    """Exact mean, variance and P(m = 0) of the QSD mask with site probabilities ``p``."""
    s = float(np.sum(p))
    return {
        "mean": 1.0,
        "var": (s * (1.0 + cv**2) - float(np.sum(p**2))) / s**2,
        "p_zero": float(np.prod(1.0 - p)),
    }


def sample_mask(
    shape: tuple[int, ...],
    thresholds: torch.Tensor,
    cv: float,
    scale: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw a QSD mask of ``shape``: one uniform per element -> K through the cumulative table
    ``thresholds`` (P(K <= k), k = 0..n-1), then A ~ Gamma(K / cv^2, cv^2) where K > 0, times ``scale``
    (= 1 / sum_j p_j). Works in float32 and casts to ``dtype`` at the end."""
    u = torch.rand(shape, device=device)
    k = torch.bucketize(u, thresholds.to(u.device), out_int32=True, right=True)
    if cv == 0.0:
        return k.to(torch.float32).mul_(scale).to(dtype)
    concentration = k.clamp_min(1).to(torch.float32).mul_(1.0 / (cv * cv))
    a = standard_gamma(concentration)
    return a.mul_(cv * cv * scale).masked_fill_(k == 0, 0.0).to(dtype)


def standard_gamma(concentration: torch.Tensor) -> torch.Tensor:
    """Gamma(concentration, 1) draws. On the CPU through numpy's generator (about twice as fast as
    ``torch._standard_gamma`` there), seeded from torch's global generator so that
    ``torch.manual_seed`` still fixes the result; elsewhere torch's own sampler."""
    if concentration.device.type != "cpu":
        return torch._standard_gamma(concentration)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_gamma(concentration.numpy(), dtype=np.float32))


@register("qsd")
class QSD(nn.Module):
    """Quantal synaptic dilution: a drop-in replacement for ``nn.Dropout(rate)``.

    Args:
        rate: the dropout rate r it replaces, in [0, 1).
        n: release sites per synapse (integer >= 1).
        cv: coefficient of variation of the quantal size (>= 0; 0 = fixed quanta).
        alpha: Beta shape of release-probability heterogeneity (> 0, or inf = homogeneous).
        mapping: "mean" (pbar = 1 - r) or "failure" (P(all sites fail) = r).
        granularity: "unit" (one mask value per element) or "channel" (per example and channel).
    """

    def __init__(
        self,
        rate: float = 0.5,
        n: int = 4,
        cv: float = 0.5,
        alpha: float = 1.0,
        mapping: str = "mean",
        granularity: str = "unit",
    ):
        super().__init__()
        self.rate = checks.rate(rate)
        self.n = checks.positive_int(n, "n")
        self.cv = checks.real(cv, "cv")
        if self.cv < 0:
            raise ValueError(f"cv must be >= 0, got {cv!r}")
        self.alpha = checks.real(alpha, "alpha", allow_inf=True)
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0 or inf, got {alpha!r}")
        self.mapping = checks.choice(mapping, "mapping", MAPPINGS)
        self.granularity = checks.choice(granularity, "granularity", checks.GRANULARITIES)

        p = site_probs(self.rate, self.n, self.alpha, self.mapping)
        cdf = np.cumsum(release_count_pmf(p))[:-1]
        self._moments = mask_moments(p, self.cv)
        self._scale = 1.0 / float(np.sum(p))
        self.register_buffer("site_probs", torch.tensor(p, dtype=torch.float64), persistent=False)
        self.register_buffer("thresholds", torch.tensor(cdf, dtype=torch.float32), persistent=False)

    def moments(self) -> dict[str, float]:
        """Exact ``{"mean", "var", "p_zero"}`` of the mask this module samples."""
        return dict(self._moments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        m = sample_mask(mask_shape(x, self.granularity), self.thresholds, self.cv, self._scale, x.dtype, x.device)
        return x * m

    def extra_repr(self) -> str:
        return (
            f"rate={self.rate}, n={self.n}, cv={self.cv}, alpha={self.alpha}, "
            f"mapping={self.mapping}, granularity={self.granularity}"
        )
