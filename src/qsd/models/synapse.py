"""The "synapse" granularity: a regulariser that masks the connections of the Linear layer it feeds
(DropConnect-style, Wan et al. 2013), not the units.

``regularised_linear(reg, a, b)`` is what a model writes where a regulariser feeds ``nn.Linear(a, b)``:
the two layers as they are, or, when ``reg.granularity == "synapse"``, one ``SynapticLinear`` that
multiplies its weight by ``reg``'s mask: y_i = sum_j w_ij m_ij x_j + b_i. One mask value per
connection per training step, shared by the examples of a batch (as weight-dropped LSTMs draw it;
Wan et al. drew one per example, which costs a batch of weight matrices); the mean, variance and
P(m = 0) of each value are the regulariser's, as at unit granularity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SynapticLinear(nn.Linear):
    """``nn.Linear`` whose weight passes through ``reg`` (a mask per connection while training)."""

    def __init__(self, in_features: int, out_features: int, reg: nn.Module):
        super().__init__(in_features, out_features)
        self.reg = reg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.reg(self.weight), self.bias)


def regularised_linear(reg: nn.Module, in_features: int, out_features: int) -> list[nn.Module]:
    """``reg`` then ``nn.Linear``, or at "synapse" granularity one ``SynapticLinear``."""
    if getattr(reg, "granularity", "unit") == "synapse":
        return [SynapticLinear(in_features, out_features, reg)]
    return [reg, nn.Linear(in_features, out_features)]
