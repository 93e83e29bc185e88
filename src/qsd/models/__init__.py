"""Models that take a regulariser factory and put it exactly where dropout goes in each recipe.

``make_reg(slot)`` returns the regulariser for a named slot ("input", "hidden", ...), so one model
serves every regulariser; ``build_model(name, ...)`` picks the architecture.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .cnn import CNN
from .lstm import LSTMClassifier, LSTMLanguageModel
from .mlp import MLP
from .wrn import WideResNet

RegFactory = Callable[..., nn.Module]
MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP, "cnn": CNN, "wrn": WideResNet, "lstm_lm": LSTMLanguageModel, "lstm_classifier": LSTMClassifier,
}


def build_model(name: str, make_reg: RegFactory, **params) -> nn.Module:
    """Instantiate model ``name`` with ``params``; unknown names raise ``ValueError``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](make_reg=make_reg, **params)


__all__ = ["CNN", "LSTMClassifier", "LSTMLanguageModel", "MLP", "MODELS", "WideResNet", "build_model"]
