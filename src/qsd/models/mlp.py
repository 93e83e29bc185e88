"""ReLU multilayer perceptron with the regulariser on each layer's input (Srivastava et al. 2014)."""
from __future__ import annotations

import torch
from torch import nn

from .synapse import regularised_linear


class MLP(nn.Module):
    """in -> [reg("input"), Linear, ReLU] -> [reg("hidden"), Linear, ReLU]* -> reg("hidden") -> Linear."""
    SLOTS = ("input", "hidden")  # the rate slots it asks make_reg for
    LINEAR_SLOTS = SLOTS  # those whose regulariser feeds a Linear layer (granularity "synapse" can mask it)

    def __init__(self, make_reg, in_features: int, widths: list[int], classes: int):
        super().__init__()
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"model.widths must be a non-empty list of positive integers, got {list(widths)}")
        layers: list[nn.Module] = []
        sizes = [in_features, *map(int, widths)]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [*regularised_linear(make_reg("input" if i == 0 else "hidden"), a, b), nn.ReLU()]
        layers += regularised_linear(make_reg("hidden"), sizes[-1], classes)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-3))  # from the end: a stacked model (stack.py) adds a first axis
