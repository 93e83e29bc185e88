"""Helpers shared by the multiplicative-noise regularisers."""
from __future__ import annotations

import torch


def mask_shape(x: torch.Tensor, granularity: str) -> tuple[int, ...]:
    """Shape of the noise tensor: one value per element ("unit", and "synapse", where ``x`` is a Linear
    layer's weight: ``models.synapse``) or per (example, channel) ("channel", as ``nn.Dropout2d``:
    dimensions after the second are broadcast)."""
    if granularity != "channel" or x.dim() <= 2:
        return tuple(x.shape)
    return tuple(x.shape[:2]) + (1,) * (x.dim() - 2)
