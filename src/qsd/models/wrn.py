"""Wide-ResNet (Zagoruyko & Komodakis 2016) with the regulariser between the two convolutions of each
block, where WRN puts dropout."""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, a: int, b: int, stride: int, reg: nn.Module):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(a), nn.Conv2d(a, b, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(b), nn.Conv2d(b, b, 3, 1, 1, bias=False)
        self.relu1, self.relu2, self.reg = nn.ReLU(), nn.ReLU(), reg
        self.shortcut = None if a == b and stride == 1 else nn.Conv2d(a, b, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu1(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.reg(self.relu2(self.bn2(y))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    SLOTS = ("block",)  # the rate slots it asks make_reg for

    def __init__(self, make_reg, in_channels: int, image_size: int, classes: int, depth: int = 16, width: int = 8):
        super().__init__()
        if (depth - 4) % 6 or depth < 10 or width < 1:
            raise ValueError(f"WRN depth must be 6k + 4 (>= 10) and width >= 1, got depth={depth}, width={width}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        for g in range(3):
            for i in range(n):
                a = widths[g] if i == 0 else widths[g + 1]
                layers.append(Block(a, widths[g + 1], (1 if g == 0 else 2) if i == 0 else 1, make_reg("block")))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(-3), nn.Linear(widths[3], classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
