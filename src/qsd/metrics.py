"""Test-time sparsity of hidden ReLU layers, and summaries of trained weights and biases."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class SparsityMeter:
    """Streams a layer's (N, units) ReLU activations and reports, over all examples seen:

    - ``zero_frac_example``: mean over examples of the fraction of units at exactly zero;
    - ``zero_frac_unit``: mean over units of the fraction of examples at which the unit is zero
      (equal to the above on a full pass; both kept for their distributions);
    - ``hoyer``: mean Hoyer sparsity (sqrt(U) - L1/L2) / (sqrt(U) - 1) per example (1 for an all-zero row);
    - ``dead_frac``: fraction of units that are zero for every example.
    """

    def __init__(self) -> None:
        self.n = 0
        self.zero_per_unit: torch.Tensor | None = None  # float64 sums, on the activations' device
        self.row_sums: torch.Tensor | None = None  # [sum of zero fractions, sum of Hoyer], ditto

    def update(self, a: torch.Tensor) -> None:
        """Accumulate on the activations' device: no host sync per batch."""
        a = a.detach().flatten(1).float()
        zero = a == 0
        counts = zero.sum(0, dtype=torch.float64)
        rows = torch.stack([zero.double().mean(1).sum(),
                            hoyer(a).double().sum() if a.shape[1] > 1 else counts.new_zeros(())])
        first = self.zero_per_unit is None
        self.zero_per_unit = counts if first else self.zero_per_unit + counts
        self.row_sums = rows if first else self.row_sums + rows
        self.n += a.shape[0]

    def result(self) -> dict[str, float]:
        if self.n == 0 or self.zero_per_unit is None:
            return {}
        per_unit = self.zero_per_unit.cpu() / self.n
        zero_frac_sum, hoyer_sum = self.row_sums.tolist()
        return {
            "zero_frac_example": zero_frac_sum / self.n,
            "zero_frac_unit": per_unit.mean().item(),
            "hoyer": hoyer_sum / self.n,
            "dead_frac": (per_unit == 1.0).double().mean().item(),
            "units": int(per_unit.numel()),
        }


def hoyer(a: torch.Tensor) -> torch.Tensor:
    """Hoyer (2004) sparsity of each row of ``a``: 0 for a constant row, 1 for one non-zero (or none)."""
    units = a.shape[1]
    l1, l2 = a.abs().sum(1), a.norm(dim=1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-30), torch.full_like(l1, 1.0))
    return (math.sqrt(units) - ratio) / (math.sqrt(units) - 1)


def hidden_relus(model: nn.Module) -> list[tuple[str, nn.ReLU]]:
    """The model's ``nn.ReLU`` modules in forward order, with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]


@contextmanager
def record_sparsity(model: nn.Module) -> Iterator[dict[str, SparsityMeter]]:
    """Within the block, every forward pass feeds each hidden ReLU's output to a meter (via hooks,
    so the model's own forward is the only code path)."""
    meters = {name: SparsityMeter() for name, _ in hidden_relus(model)}
    handles = [m.register_forward_hook(lambda _m, _i, out, name=name: meters[name].update(out))
               for name, m in hidden_relus(model)]
    try:
        yield meters
    finally:
        for h in handles:
            h.remove()


def weight_summary(model: nn.Module, bins: int = 60) -> dict[str, dict]:
    """Per Linear/Conv layer: mean and sd of weights and biases and a histogram (edges, counts)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            entry = {}
            for kind in ("weight", "bias"):
                p = getattr(m, kind)
                if p is None:
                    continue
                v = p.detach().float().flatten().cpu()
                lo, hi = v.min().item(), v.max().item()
                if hi <= lo:
                    hi = lo + 1e-6
                counts = torch.histc(v, bins=bins, min=lo, max=hi)
                entry[kind] = {"mean": v.mean().item(), "sd": v.std().item() if v.numel() > 1 else 0.0,
                               "n": v.numel(), "hist_edges": torch.linspace(lo, hi, bins + 1).tolist(),
                               "hist_counts": counts.long().tolist()}
            out[name] = entry
    return out
