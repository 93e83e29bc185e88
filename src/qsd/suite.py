"""The suite at one scale: every run the manifests in ``experiments/`` ask for, each composed from
``configs/``, checked before anything trains, and named by its run folder. A run that several
figures share is listed once; only these runs reach the figures and tables."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from . import runstore
from .report import recipes
from .report.recipes import SEEDS
from .report.select import loso_picks
from .report.gate import LONGER
from .train import CONFIG_DIR, ConfigError, check_config, pick_device, same_first_epochs, use_cuda_graphs

NAMED = ("experiment", "regulariser", "scale", "seed")  # what a run's label always shows
GATED = ("dropout", "qsd")  # the compared arms: each must pass the gate's convergence test (its runs trained LONGER x)
SETTINGS = ("device", "train.cuda_graphs", "train.compile")  # how every run trains, outside its identity


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
    epochs: int   # train.epochs
    figures: frozenset[str] = frozenset()  # the ids of the manifests that ask for it
    lengthens: str = ""  # for the gate's convergence test: the folder of the run this one trains LONGER x as long
    grid: tuple[str, ...] = ()  # for such a run on a rate grid: the keys of the runs of every seed's grid, by seed
    head_start: int = 0  # for such a run: the epochs it can take from the end of the run it lengthens (not cosine)

    @property
    def standard(self) -> str:
        """The key of the run this one lengthens ('' if none)."""
        return f"{self.experiment}/{self.lengthens}" if self.lengthens else ""

    @property
    def label(self) -> str:
        """``<experiment> <regulariser> seed <s>`` and any grid point, e.g. ``[rates={input:0.2,hidden:0.1}]``."""
        extra = [o for o in self.overrides if o.split("=", 1)[0] not in NAMED]
        return f"{self.experiment} {self.regulariser} seed {self.seed}" + (f" [{' '.join(extra)}]" if extra else "")


def _values(override) -> list[str]:
    """The values a parsed override takes: each of a sweep's, or its one."""
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]


def expand(overrides: list[str]) -> list[list[str]]:
    """Hydra's sweep syntax (``a=1,2 b=x,y``) as one override list per run, in Hydra's order."""
    choices = [[f"{o.get_key_element()}={v}" for v in _values(o)] for o in OverridesParser.create().parse_overrides(overrides)]
    return [list(c) for c in itertools.product(*choices)]


class Sweep(NamedTuple):
    """One ``qsd-train -m`` sweep of a manifest. ``lengthens``: it is the gate's convergence test, dropout
    or QSD runs trained LONGER x the epochs; its last override sets ``train.epochs``, and the same overrides
    without it make the runs it lengthens."""

    figure: str
    overrides: list[str]
    lengthens: bool = False


@contextlib.contextmanager
def _hydra():
    """Hydra's config search path on ``configs/``, unless it is already set up."""
    if GlobalHydra.instance().is_initialized():
        yield
    else:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            yield


def seeds(scale: str, count: int | None = None, replicate: bool = False) -> range:
    """The seeds of a sweep at ``scale``: SEEDS[scale] of them (or ``count``, if fewer), from 0; with
    ``replicate``, as many fresh ones, from SEEDS[scale] on (the replication, docs/protocols.md)."""
    first = SEEDS[scale] if replicate else 0
    return range(first, first + min(SEEDS[scale], count or SEEDS[scale]))


def sweeps(scale: str, replicate: bool = False) -> list[Sweep]:
    """Each manifest sweep at ``scale`` with the seeds (``replicate``: the fresh ones), in manifest order;
    a sweep marked ``convergence_check`` is followed by its dropout and QSD runs trained LONGER x as long,
    one sweep per experiment and regulariser."""
    out = []
    parser = OverridesParser.create()
    with _hydra():
        compose_run = _composer()
        for m in recipes.manifests().values():
            for sweep in m["sweeps"]:
                if "scales" in sweep and scale not in sweep["scales"]:
                    continue
                base = [f"scale={scale}", f"seed={','.join(map(str, seeds(scale, sweep.get('seeds'), replicate)))}"]
                out.append(Sweep(m["id"], [*base, *sweep["overrides"]]))
                if not sweep.get("convergence_check"):
                    continue
                parsed = {o.key_or_group: o for o in parser.parse_overrides(sweep["overrides"])}
                gated = [r for r in GATED if r in _values(parsed["regulariser"])]
                if not gated:
                    raise ValueError(f"experiments/{m['id']}.yaml: a convergence_check sweep must train one of {GATED}")
                rest = [o for o in sweep["overrides"] if o.split("=", 1)[0] not in ("experiment", "regulariser")]
                for e in _values(parsed["experiment"]):
                    epochs = compose_run([f"scale={scale}", f"experiment={e}"]).train.epochs
                    out += [Sweep(m["id"], [*base, f"experiment={e}", f"regulariser={r}", *rest,
                                            f"train.epochs={math.ceil(LONGER * epochs)}"], lengthens=True) for r in gated]
    return out


def plan(scale: str, replicate: bool = False) -> list[Run]:
    """Every distinct run of the manifests at ``scale`` (``replicate``: on the fresh seeds), each config
    checked (a bad one raises ``ConfigError`` naming its overrides before anything trains)."""
    runs: dict[str, Run] = {}
    with _hydra():
        compose_run = _composer()
        for figure, sweep, lengthens in sweeps(scale, replicate):
            expanded = expand(sweep)
            standards = [compose_run(o[:-1]) if lengthens else None for o in expanded]
            standard_keys = [runstore.run_key(c) if c is not None else "" for c in standards]
            for overrides, standard, standard_key in zip(expanded, standards, standard_keys):
                cfg = compose_run(overrides)
                try:
                    check_config(cfg)
                except ConfigError as e:
                    raise ConfigError(f"qsd-train {' '.join(overrides)}: {e}") from None
                key = runstore.run_key(cfg)
                rates = {next((x for x in o if x.startswith("rates=")), "") for o in expanded if f"seed={cfg.seed}" in o}
                grid = tuple(standard_keys) if lengthens and len(rates) > 1 else ()  # a rate grid: every seed's runs'
                head = standard.train.epochs if standard is not None and same_first_epochs(
                    cfg.optim, standard.train.epochs, cfg.train.epochs) else 0
                old = runs.get(key)
                run = old or Run(tuple(overrides), key, cfg.name, cfg.regulariser.name, cfg.seed, cfg.train.threads,
                                 cfg.data.name, cfg.train.epochs, lengthens=standard_key.split("/")[-1], grid=grid,
                                 head_start=head)
                runs[key] = dataclasses.replace(run, figures=run.figures | {figure},  # asked for off a grid: always
                                                grid=run.grid if old is None or grid else ())
    return list(runs.values())


def check_settings(runs: list[Run], settings: list[str]) -> None:
    """Raise ``ConfigError`` naming the first of ``runs`` that cannot train with ``settings`` (``KEY=VALUE``
    of ``SETTINGS``, which the queue adds to every run), e.g. a CUDA graph where the data or device forbids it."""
    if not settings:
        return
    with _hydra():
        compose_run = _composer()
        for run in runs:
            cfg = compose_run([*run.overrides, *settings])
            try:
                check_config(cfg)
                use_cuda_graphs(cfg, pick_device(cfg.device))
            except ConfigError as e:
                raise ConfigError(f"qsd-train {' '.join([*run.overrides, *settings])}: {e}") from None


def device(settings: list[str]) -> str:
    """The device the runs train on with ``settings`` added: the config's ``device``, resolved as
    ``qsd-train`` resolves it (``auto``: CUDA where there is one)."""
    with _hydra():
        return str(pick_device(_composer()(list(settings)).device))


def needed(run: Run, finished: dict[str, Path]) -> bool | None:
    """Whether ``run`` is worth training, given the ``finished`` runs (key -> folder). Every run is, but
    a gate's longer run on a rate grid is needed only where it lengthens the point its seed is given on the
    other seeds' validation (``select.loso_picks``, as table3 picks): False at the grid's other points, None
    until every point of every seed's grid has finished."""
    if not run.grid:
        return True
    if not all(k in finished for k in run.grid):
        return None
    points: dict[int, list[str]] = {}
    for k in run.grid:  # in the sweep's order: each seed's points in the grid's order
        points.setdefault(int(re.search(r"-seed(\d+)-", k).group(1)), []).append(k)
    valid = {}
    for seed, keys in points.items():
        valid[seed] = []
        for k in keys:
            s = runstore.read_summary(finished[k]) or {}
            v = (s.get("final_valid") or {}).get(s.get("metric"))
            valid[seed].append(float(v) if s.get("status") == "completed" and v is not None else None)
    return points[run.seed][loso_picks(valid)[run.seed]].split("/")[1] == run.lengthens


def split_by_need(runs: list[Run], finished: dict[str, Path]) -> tuple[list[Run], list[Run], list[Run]]:
    """``runs`` (none of them finished) as those to train now, those waiting, and those not needed
    (``needed``: True, None, False). A gate's longer run with a head start waits, too, while the run it
    lengthens is among ``runs``: trained after it, it trains on from its end (``train.head_start``)."""
    need = {r.key: needed(r, finished) for r in runs}
    need.update({r.key: None for r in runs if r.head_start and need[r.key] and r.standard in need})
    return ([r for r in runs if need[r.key]], [r for r in runs if need[r.key] is None],
            [r for r in runs if need[r.key] is False])


@dataclass
class Waiting:
    """The gate's longer runs that wait (``split_by_need``), released to a queue (``runqueue.Queue.run``) as the
    runs they wait for finish in ``root``: a run as soon as its seed's grid has picked it or the run it lengthens
    has completed, not when the whole queue has drained. ``finished``: the suite's finished runs, kept up to date."""

    runs: list[Run]
    finished: dict[str, Path]
    root: Path
    device_kind: str

    def release(self, done: list[Run]) -> list[Run]:
        """The waiting runs ready to train now that ``done`` (the runs of a job) have ended; those their grid did
        not pick leave for good. One whose standard has not completed here stays (``held``)."""
        self.finished.update({r.key: self.root / r.key for r in done if runstore.is_finished(self.root / r.key)})
        ready, waiting, _ = split_by_need(self.runs, self.finished)
        held = self._held(ready)
        self.runs = waiting + held
        return [r for r in ready if r not in held]

    def held(self) -> list[Run]:
        """The runs still waiting for a run they lengthen that did not complete in ``root`` on this kind of device
        (``runstore.continuable``): from scratch one would cost the whole run, so it waits for a rerun, which
        resumes its standard first."""
        return self._held(split_by_need(self.runs, self.finished)[0])

    def _held(self, ready: list[Run]) -> list[Run]:
        return [r for r in ready if not r.grid and not runstore.continuable(self.root / r.standard, self.device_kind)]


_BASES: dict[tuple[str, ...], DictConfig] = {}  # choice of config groups -> Hydra's composition (configs/ read once a process)


def _composer():
    """``compose("train", overrides)``, fast: Hydra composes once per choice of config groups
    (``experiment=``, ``regulariser=``, ...) and the value overrides are applied to a copy the way
    Hydra applies them (a test checks the result equals a full compose)."""
    parser, groups = OverridesParser.create(), {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}

    def compose_run(overrides: list[str]) -> DictConfig:
        parsed = parser.parse_overrides(overrides)
        chosen = tuple(o.input_line for o in parsed if o.key_or_group in groups)
        if chosen not in _BASES:
            _BASES[chosen] = compose("train", overrides=list(chosen))
        cfg = copy.deepcopy(_BASES[chosen])
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.key_or_group not in groups], cfg)
        return cfg

    return compose_run


def locate(run: Run, roots: list[Path]) -> Path | None:
    """The first of ``roots`` (each a folder of ``<experiment>/<run>`` folders) that holds ``run`` finished."""
    return next((root / run.key for root in roots if runstore.is_finished(root / run.key)), None)
