"""Plain VGG-style CNN: 3 x [conv-conv-maxpool] + FC, regulariser after each pool and before the
classifier; ``batch_norm=True`` gives the variant used with extra regularisation."""
from __future__ import annotations

import torch
from torch import nn

from .synapse import regularised_linear


def _conv(a: int, b: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm), *([nn.BatchNorm2d(b)] if batch_norm else []), nn.ReLU()]


class CNN(nn.Module):
    SLOTS = ("conv", "hidden")  # the rate slots it asks make_reg for
    LINEAR_SLOTS = ("hidden",)  # those whose regulariser feeds a Linear layer (granularity "synapse" can mask it)

    def __init__(self, make_reg, in_channels: int, image_size: int, classes: int,
                 channels: list[int] = (32, 64, 128), fc: int = 256, batch_norm: bool = False):
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels) or int(fc) < 1:
            raise ValueError(f"model.channels and model.fc must be positive, got {list(channels)}, {fc}")
        layers: list[nn.Module] = []
        size, prev = image_size, in_channels
        for c in map(int, channels):
            layers += [*_conv(prev, c, batch_norm), *_conv(c, c, batch_norm), nn.MaxPool2d(2), make_reg("conv")]
            prev, size = c, size // 2
        layers += [nn.Flatten(-3), nn.Linear(prev * size * size, fc), nn.ReLU(),
                   *regularised_linear(make_reg("hidden"), fc, classes)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():  # He et al. (2015) init: a deep plain ReLU net trains from the start
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
