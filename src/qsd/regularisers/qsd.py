"""Quantal synaptic dilution (QSD), reconstructed from Bhumbra, arXiv 2009.13165.

Each unit's output is multiplied by a normalised quantal response instead of a Bernoulli mask::

    B_j ~ Bernoulli(p_j), j = 1..n      K = sum_j B_j  (Poisson-binomial)
    A | K ~ Gamma(shape=K / cv^2, scale=cv^2)   (A = 0 if K = 0; A = K if cv = 0)
    m = A / sum_j p_j                    so that E[m] = 1

The p_j are fixed quantiles of a Beta distribution with mean pbar and shape ``alpha``
(``alpha=inf``: all p_j = pbar). ``mapping`` ties pbar to the dropout rate r: "mean" sets
pbar = 1 - r; "failure" makes the all-sites-fail probability prod_j (1 - p_j) equal r;
"variance" makes Var(m) equal dropout's r / (1 - r).
With n=1, cv=0 the mask is exactly inverted dropout. docs/method.md says which of these
choices are ours rather than the paper's.

Sampling: by default each mask element is a counter-based function of (seed, index), evaluated by
a compiled CPU kernel (``qsd_cpu``) or a fused Triton kernel on CUDA (``qsd_cuda``);
``backend="torch"`` uses plain torch ops instead (any device, same distribution).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import betaincinv
from torch import nn

from . import checks
from .masks import mask_shape
from .qsd_cpu import SAMPLER, qsd_mask_cpu
from .registry import register

MAPPINGS = ("mean", "failure", "variance")
BACKENDS = ("kernel", "torch")
_P_EPS = 1e-6  # site probabilities are clipped inside [eps, 1 - eps]


def beta_site_probs(pbar: float, n: int, alpha: float) -> np.ndarray:
    """n release probabilities: the (j - 1/2)/n quantiles of Beta(alpha, alpha (1 - pbar) / pbar),
    re-centred (additively) to mean ``pbar`` and clipped inside (0, 1)."""
    if pbar >= 1.0:
        return np.ones(n)
    if math.isinf(alpha) or n == 1:
        return np.full(n, pbar)
    q = (np.arange(n) + 0.5) / n
    p = betaincinv(alpha, alpha * (1.0 - pbar) / pbar, q)  # Beta's quantile function
    for _ in range(50):  # shift + clip until the clipped mean is pbar
        p = np.clip(p + (pbar - p.mean()), _P_EPS, 1.0 - _P_EPS)
        if abs(p.mean() - pbar) < 1e-12:
            break
    return p


def mask_variance(p: np.ndarray, cv: float) -> float:
    """Var(m) = (sum p (1 + cv^2) - sum p^2) / (sum p)^2."""
    s = float(np.sum(p))
    return (s * (1.0 + cv**2) - float(np.sum(p**2))) / s**2


def site_probs(rate: float, n: int, alpha: float, mapping: str, cv: float = 0.0) -> np.ndarray:
    """Release probabilities p_j for a QSD layer standing in for dropout at ``rate`` (``cv`` matters
    only to the "variance" mapping)."""
    if rate == 0.0:
        return np.ones(n)
    if mapping == "mean":
        return beta_site_probs(1.0 - rate, n, alpha)
    if mapping == "variance":
        return _variance_site_probs(rate, n, alpha, cv)
    if math.isinf(alpha) or n == 1:  # closed form: (1 - p)^n = r
        return np.full(n, 1.0 - rate ** (1.0 / n))

    from scipy.optimize import brentq  # here: scipy.optimize adds about 1 s to every qsd-train start

    def excess_failure(pbar: float) -> float:
        return float(np.sum(np.log1p(-beta_site_probs(pbar, n, alpha)))) - math.log(rate)

    pbar = brentq(excess_failure, 1e-9, 1.0 - 1e-9, xtol=1e-14)
    return beta_site_probs(pbar, n, alpha)


def _variance_site_probs(rate: float, n: int, alpha: float, cv: float) -> np.ndarray:
    """Sites whose mask variance is dropout's, r / (1 - r). Var(m) falls as pbar rises, to cv^2 / n
    at pbar = 1, so only targets above cv^2 / n can be met."""
    target = rate / (1.0 - rate)
    floor = cv**2 / n
    if target <= floor * (1.0 + 1e-9):
        need = floor / (1.0 + floor)
        raise ValueError(
            f"mapping='variance' cannot reach Var(m) = r/(1-r) = {target:.4g} with n={n}, cv={cv:g}: even "
            f"p = 1 leaves Var(m) = cv^2/n = {floor:.4g}. It needs r/(1-r) > cv^2/n: a rate above {need:.4g}, "
            f"n of at least {math.floor(cv**2 / target) + 1}, or cv below {math.sqrt(n * target):.4g}")
    if math.isinf(alpha) or n == 1:  # (1 + cv^2 - p) / (n p) = target
        return np.full(n, (1.0 + cv**2) / (1.0 + n * target))

    from scipy.optimize import brentq

    def excess_variance(pbar: float) -> float:
        return mask_variance(beta_site_probs(pbar, n, alpha), cv) - target

    pbar = brentq(excess_variance, 1e-9, 1.0 - 1e-12, xtol=1e-14)
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
    return {"mean": 1.0, "var": mask_variance(p, cv), "p_zero": float(np.prod(1.0 - p))}


def count_thresholds(p: np.ndarray) -> np.ndarray:
    """T_k = round(P(K <= k) * 2^32), k = 0..n-1, as int64: K = #{k : T_k <= w} for a uniform 32-bit
    word w has every P(K = k) exact to 2^-32 (a P(K = 0) below 2^-33 is never sampled)."""
    cdf = np.cumsum(release_count_pmf(p))[:-1]
    return np.clip(np.rint(cdf * 2.0**32), 0, 2**32).astype(np.int64)


def sample_mask_torch(shape: tuple[int, ...], thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
    """The portable sampler, in plain torch ops on ``thresholds``' device and torch's generator:
    one 32-bit word per element -> K through ``thresholds`` (as the kernels do), then
    A ~ Gamma(K / cv^2, cv^2) where K > 0, times ``scale`` (= 1 / sum_j p_j). Same distribution as
    the counter-based kernels, different random stream; float32."""
    w = torch.randint(0, 2**32, shape, device=thresholds.device, dtype=torch.int64)
    k = torch.bucketize(w, thresholds, out_int32=True, right=True)
    if cv == 0.0:
        return k.to(torch.float32).mul_(scale)
    concentration = k.clamp_min(1).to(torch.float32).mul_(1.0 / (cv * cv))
    return torch._standard_gamma(concentration).mul_(cv * cv * scale).masked_fill_(k == 0, 0.0)


def draw_seed() -> int:
    """A 63-bit key for the CPU kernel, from torch's global generator (so that
    ``torch.manual_seed`` fixes every mask and checkpoints restore the stream)."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


def draw_key(device: torch.device) -> torch.Tensor:
    """A key for the CUDA kernel, left on the device and drawn from the device's generator: no
    host sync, and safe to capture in a CUDA graph (each replay draws a new one)."""
    return torch.empty(1, dtype=torch.int64, device=device).random_()


@register("qsd")
class QSD(nn.Module):
    """Quantal synaptic dilution: a drop-in replacement for ``nn.Dropout(rate)``.

    Args:
        rate: the dropout rate r it replaces, in [0, 1).
        n: release sites per synapse (integer >= 1).
        cv: coefficient of variation of the quantal size (>= 0; 0 = fixed quanta).
        alpha: Beta shape of release-probability heterogeneity (> 0, or inf = homogeneous).
        mapping: "mean" (pbar = 1 - r), "failure" (P(all sites fail) = r) or "variance"
            (Var(m) = r / (1 - r), dropout's; needs r / (1 - r) > cv^2 / n).
        granularity: "unit" (one mask value per element), "channel" (per example and channel) or
            "synapse" (per connection of the Linear layer it feeds: the model applies it to that
            layer's weight, ``models.synapse``).
        backend: "kernel" (default): the counter-based sampler, compiled for the CPU (numba) and
            fused into one Triton kernel on CUDA that stores no mask; other devices fall back to
            "torch": plain torch ops with torch's generator (same distribution, other stream).
        sampler: which counter-based function draws the mask (``qsd_cpu.SAMPLER``, the only one
            implemented). It is a setting so that it enters every run's config and hash: runs
            made with another sampler are not mistaken for runs of this one.
    """

    def __init__(
        self,
        rate: float = 0.5,
        n: int = 4,
        cv: float = 0.5,
        alpha: float = 1.0,
        mapping: str = "mean",
        granularity: str = "unit",
        backend: str = "kernel",
        sampler: int = SAMPLER,
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
        self.backend = checks.choice(backend, "backend", BACKENDS)
        if sampler != SAMPLER:
            raise ValueError(f"sampler must be {SAMPLER}, the only one this version implements (K from a full "
                             f"32-bit word, see qsd_cpu); got {sampler!r}. Sampler 1 (K from 24 bits) was "
                             "replaced on 2026-11-26: runs made with it are reproducible only at their commit")

        p = site_probs(self.rate, self.n, self.alpha, self.mapping, self.cv)
        self._moments = mask_moments(p, self.cv)
        self._scale = 1.0 / float(np.sum(p))
        self.register_buffer("site_probs", torch.tensor(p, dtype=torch.float64), persistent=False)
        self.register_buffer("thresholds", torch.from_numpy(count_thresholds(p)), persistent=False)

    def moments(self) -> dict[str, float]:
        """Exact ``{"mean", "var", "p_zero"}`` of the mask this module samples."""
        return dict(self._moments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        shape = mask_shape(x, self.granularity)
        device = x.device.type
        if self.backend == "torch" or device not in ("cpu", "cuda"):
            return x * sample_mask_torch(shape, self.thresholds, self.cv, self._scale).to(x.dtype)
        if device == "cpu":
            return x * qsd_mask_cpu(shape, draw_seed(), self.thresholds.numpy(), self.cv, self._scale).to(x.dtype)
        from . import qsd_cuda  # Triton is imported only where there is a GPU

        key = draw_key(x.device)
        if shape == tuple(x.shape):
            return qsd_cuda.QSDMultiply.apply(x, key, self.thresholds, self.cv, self._scale)
        return x * qsd_cuda.qsd_mask(shape, key, self.thresholds, self.cv, self._scale).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"rate={self.rate}, n={self.n}, cv={self.cv}, alpha={self.alpha}, "
            f"mapping={self.mapping}, granularity={self.granularity}, backend={self.backend}"
        )
