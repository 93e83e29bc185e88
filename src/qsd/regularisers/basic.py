"""The baselines: identity, Bernoulli dropout and Gaussian dropout."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .masks import mask_shape
from .registry import register


@register("none")
class Identity(nn.Module):
    """No regularisation: returns its input. Accepts (and ignores) a ``rate`` and ``granularity``
    so that it stands anywhere a dropout layer does."""

    def __init__(self, rate: float = 0.0, granularity: str = "unit"):
        super().__init__()
        checks.rate(rate)
        checks.choice(granularity, "granularity", checks.GRANULARITIES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _MultiplicativeNoise(nn.Module):
    """What dropout and Gaussian dropout share: a checked ``rate`` and mask ``granularity``."""

    def __init__(self, rate: float = 0.5, granularity: str = "unit"):
        super().__init__()
        self.rate = checks.rate(rate)
        self.granularity = checks.choice(granularity, "granularity", checks.GRANULARITIES)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, granularity={self.granularity}"


@register("dropout")
class Dropout(_MultiplicativeNoise):
    """Inverted Bernoulli dropout (Srivastava et al. 2014): y = x * b / (1 - r), b ~ Bernoulli(1 - r).

    ``granularity="unit"`` (and ``"synapse"``, on a weight) uses torch's fused ``F.dropout``; ``"channel"``
    drops whole feature maps.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if self.granularity != "channel" or x.dim() <= 2:
            return F.dropout(x, self.rate, training=True)
        keep = 1.0 - self.rate
        mask = torch.empty(mask_shape(x, self.granularity), device=x.device, dtype=x.dtype)
        return x * mask.bernoulli_(keep).div_(keep)


@register("gaussian")
class GaussianDropout(_MultiplicativeNoise):
    """Multiplicative Gaussian noise N(1, r / (1 - r)), the variance of dropout at rate r
    (Srivastava et al. 2014, section 10)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        std = math.sqrt(self.rate / (1.0 - self.rate))
        noise = torch.randn(mask_shape(x, self.granularity), device=x.device, dtype=x.dtype)
        return x * noise.mul_(std).add_(1.0)
