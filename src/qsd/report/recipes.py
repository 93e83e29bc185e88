"""What each experiment's recipe is and which runs each manifest asks for, read from ``configs/``
and ``experiments/`` (the renderers keep no copy of their own)."""
from __future__ import annotations

import math
from functools import cache

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from ..paths import ROOT

CONFIGS, EXPERIMENTS = ROOT / "configs", ROOT / "experiments"
QSD_KEYS = ("n", "cv", "alpha", "mapping")
SEEDS = {"smoke": 2, "cpu": 5, "paper": 5}  # per scale; a sweep may ask for fewer (`seeds:`), e.g. a published anchor


@cache
def manifests() -> dict[str, dict]:
    """Every figure/table manifest by id, in file-name order."""
    return {m["id"]: m for m in (yaml.safe_load(p.read_text()) for p in sorted(EXPERIMENTS.glob("*.yaml")))}


@cache
def experiment_config(experiment: str) -> dict:
    """``configs/experiment/<experiment>.yaml`` as written (not composed)."""
    return yaml.safe_load((CONFIGS / "experiment" / f"{experiment}.yaml").read_text())


def recipe_rates(experiment: str) -> dict[str, float]:
    """The rates of ``experiment``'s recipe as runs.csv columns: {"rate_<slot>": r}."""
    cfg = experiment_config(experiment)
    return {f"rate_{slot}": float(r) for slot, r in (cfg.get("rates") or {}).items()}


def experiment_data(experiment: str) -> str:
    """The data set ``experiment`` trains on (its ``override /data`` default)."""
    defaults = experiment_config(experiment).get("defaults", [])
    return next(d["override /data"] for d in defaults if isinstance(d, dict) and "override /data" in d)


@cache
def default_qsd() -> dict[str, object]:
    """QSD's default settings (configs/regulariser/qsd.yaml), as runs.csv reads them back."""
    cfg = yaml.safe_load((CONFIGS / "regulariser" / "qsd.yaml").read_text())
    return {k: (math.inf if str(cfg[k]) in (".inf", "inf") else cfg[k]) for k in QSD_KEYS}


def swept(manifest_id: str, experiment: str, key: str) -> list:
    """The values a manifest's sweeps give ``key`` (e.g. ``rates``, ``regulariser.mapping``) for
    ``experiment``; [] where none does."""
    parser = OverridesParser.create()
    values = []
    for sweep in manifests()[manifest_id]["sweeps"]:
        parsed = parser.parse_overrides(sweep["overrides"])
        if not any(o.key_or_group == "experiment" and experiment in list(o.sweep_string_iterator() if o.is_sweep_override()
                                                                          else [o.value()]) for o in parsed):
            continue
        for o in parsed:
            if o.key_or_group == key:
                values += list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
    return values


def rate_grid(manifest_id: str, experiment: str) -> list[dict[str, float]]:
    """The rate sets a manifest sweeps for ``experiment`` (its ``rates=`` override), as
    {"rate_<slot>": r} dicts; [] when it sweeps none."""
    return [{f"rate_{k}": float(v) for k, v in d.items()} for d in swept(manifest_id, experiment, "rates")]
