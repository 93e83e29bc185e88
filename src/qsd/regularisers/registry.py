"""A name -> regulariser registry: ``register`` a class once, ``build`` it by name anywhere.

Adding a regulariser is one new module in this package that decorates an ``nn.Module`` class
with ``@register("name")``; the models and the trainer only ever call ``build``.
"""
from __future__ import annotations

import inspect
from typing import Callable, TypeVar

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type[nn.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator that makes a regulariser buildable as ``build(name, **params)``."""

    def decorate(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"regulariser {name!r} is already registered by {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def names() -> list[str]:
    """Registered regulariser names, sorted."""
    return sorted(_REGISTRY)


def parameters(name: str) -> list[str]:
    """The keyword parameters regulariser ``name`` accepts."""
    sig = inspect.signature(_lookup(name).__init__)
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in plain]


def build(name: str, **params) -> nn.Module:
    """Instantiate regulariser ``name``; unknown names or parameters raise ``ValueError``."""
    allowed = parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"regulariser {name!r} got unknown parameter(s) {unknown}; allowed: {allowed}"
        )
    return _lookup(name)(**params)


def _lookup(name: str) -> type[nn.Module]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown regulariser {name!r}; choose one of {names()}")
    return _REGISTRY[name]
