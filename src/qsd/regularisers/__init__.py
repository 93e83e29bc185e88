"""Dropout-family regularisers behind one registry: ``build(name, **params)``.

Built in: ``none``, ``dropout``, ``gaussian``, ``qsd``. To add one, write a module here with an
``nn.Module`` class decorated by ``@register("name")`` and import it below.
"""
from . import basic, qsd  # noqa: F401  (registers the built-ins)
from .registry import build, names, parameters, register

__all__ = ["build", "names", "parameters", "register"]
