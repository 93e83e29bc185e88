"""Parameter validation shared by the regularisers: every failure is a ``ValueError`` that says
what was given and what is allowed."""
from __future__ import annotations

import math
import numbers

GRANULARITIES = ("unit", "channel", "synapse")  # synapse: the model puts the regulariser on a Linear layer's weight


def rate(value: object) -> float:
    """A drop rate: a real number in [0, 1)."""
    r = real(value, "rate")
    if not 0.0 <= r < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {value!r}")
    return r


def real(value: object, name: str, allow_inf: bool = False) -> float:
    """A finite real number (or +inf when ``allow_inf``); strings other than 'inf' are refused."""
    if isinstance(value, str) and allow_inf and value.strip().lower() in ("inf", "infinity", "+inf"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
        raise ValueError(f"{name} must be a finite number{' or inf' if allow_inf else ''}, got {value!r}")
    return v


def positive_int(value: object, name: str) -> int:
    """An integer >= 1 (a float with an integral value such as 4.0 is accepted)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) != int(value)
    ):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return str(value)
