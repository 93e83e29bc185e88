"""Where the checkout keeps data, runs and results: one default, whatever the current directory.
``$QSD_DATA_ROOT`` and ``$QSD_RUNS_ROOT`` (or ``paths.data=``/``paths.runs=``) put them elsewhere."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]


def checkout(sub: str) -> str:
    """``sub`` inside the checkout, as an absolute path (configs read it as ``${qsd.checkout:data}``)."""
    return str(ROOT / sub)


OmegaConf.register_new_resolver("qsd.checkout", checkout, replace=True)
