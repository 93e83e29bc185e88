"""The suite at one scale: every run the manifests in ``experiments/`` ask for, each composed from
``configs/``, checked before anything trains, and named by its run folder. A run that several
figures share is listed once; only these runs reach the figures and tables."""
from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from . import runstore
from .report import recipes
from .train import CONFIG_DIR, ConfigError, check_config

SEEDS = {"smoke": 2, "cpu": 5, "paper": 5}  # a sweep may ask for fewer (`seeds:`), e.g. a published anchor
NAMED = ("experiment", "regulariser", "scale", "seed")  # what a run's label always shows


@dataclass(frozen=True)
class Run:
    """One run of the suite: the ``qsd-train`` overrides that make it and the folder it lives in."""

    overrides: tuple[str, ...]
    key: str  # <experiment>/<regulariser>-seed<seed>-<hash>, under <runs root>/<scale>/ and results/<scale>/runs/
    experiment: str
    regulariser: str
    seed: int
    threads: int  # CPU threads it trains with (train.threads)
    data: str     # the data set it reads (data.name)
    figures: frozenset[str] = frozenset()  # the ids of the manifests that ask for it

    @property
    def label(self) -> str:
        """``<experiment> <regulariser> seed <s>`` and any grid point, e.g. ``[rates={input:0.2,hidden:0.1}]``."""
        extra = [o for o in self.overrides if o.split("=", 1)[0] not in NAMED]
        return f"{self.experiment} {self.regulariser} seed {self.seed}" + (f" [{' '.join(extra)}]" if extra else "")


def expand(overrides: list[str]) -> list[list[str]]:
    """Hydra's sweep syntax (``a=1,2 b=x,y``) as one override list per run, in Hydra's order."""
    choices = []
    for o in OverridesParser.create().parse_overrides(overrides):
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        choices.append([f"{o.get_key_element()}={v}" for v in values])
    return [list(c) for c in itertools.product(*choices)]


def sweeps(scale: str) -> list[tuple[str, list[str]]]:
    """Each manifest sweep at ``scale`` as (manifest id, ``qsd-train -m`` overrides with the seeds),
    in manifest order."""
    out = []
    for m in recipes.manifests().values():
        for sweep in m["sweeps"]:
            if "scales" in sweep and scale not in sweep["scales"]:
                continue
            seeds = ",".join(str(s) for s in range(min(SEEDS[scale], sweep.get("seeds", SEEDS[scale]))))
            out.append((m["id"], [f"scale={scale}", f"seed={seeds}", *sweep["overrides"]]))
    return out


def plan(scale: str) -> list[Run]:
    """Every distinct run of the manifests at ``scale``, each config checked (a bad one raises
    ``ConfigError`` naming its overrides before anything trains)."""
    runs: dict[str, Run] = {}
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose_run = _composer()
        for figure, sweep in sweeps(scale):
            for overrides in expand(sweep):
                cfg = compose_run(overrides)
                try:
                    check_config(cfg)
                except ConfigError as e:
                    raise ConfigError(f"qsd-train {' '.join(overrides)}: {e}") from None
                key = runstore.run_key(cfg)
                run = runs.get(key) or Run(tuple(overrides), key, cfg.name, cfg.regulariser.name, cfg.seed,
                                           cfg.train.threads, cfg.data.name)
                runs[key] = dataclasses.replace(run, figures=run.figures | {figure})
    return list(runs.values())


def _composer():
    """``compose("train", overrides)``, fast: Hydra composes once per choice of config groups
    (``experiment=``, ``regulariser=``, ...) and the value overrides are applied to a copy the way
    Hydra applies them (a test checks the result equals a full compose)."""
    parser, groups, bases = OverridesParser.create(), {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}, {}

    def compose_run(overrides: list[str]) -> DictConfig:
        parsed = parser.parse_overrides(overrides)
        chosen = tuple(o.input_line for o in parsed if o.key_or_group in groups)
        if chosen not in bases:
            bases[chosen] = compose("train", overrides=list(chosen))
        cfg = copy.deepcopy(bases[chosen])
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.key_or_group not in groups], cfg)
        return cfg

    return compose_run


def locate(run: Run, roots: list[Path]) -> Path | None:
    """The first of ``roots`` (each a folder of ``<experiment>/<run>`` folders) that holds ``run`` finished."""
    return next((root / run.key for root in roots if runstore.is_finished(root / run.key)), None)
