"""``qsd-train``: train one model x data x regulariser from the Hydra configs in ``configs/``.

    qsd-train experiment=mlp_mnist regulariser=qsd regulariser.n=8 seed=3 scale=cpu
    qsd-train -m experiment=mlp_mnist regulariser=dropout,qsd seed=0,1,2

One loop for every task (see ``tasks.py``). A finished run is skipped; a killed run resumes from its
last checkpoint and ends with the numbers an uninterrupted run would have had.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__, runstore
from .data import DataError, data_root
from .data import store as data_store
from .graphs import GraphedStep
from .logger import WandbLogger
from .metrics import record_sparsity, weight_summary
from .models import MODELS, build_model
from .paths import ROOT
from .provenance import device_name, git_commit
from .regularisers import build as build_regulariser
from .stack import Members, NotStackable, clip_grad_norm_, member_optimiser_state, member_state, \
    stack_model, stack_optimiser_states
from .tasks import LM_LOSSES, StackedTask, Task, build_task

log = logging.getLogger("qsd.train")
CONFIG_DIR = str(ROOT / "configs")


class ConfigError(ValueError):
    """A config value is not allowed; the message says what is."""


# ------------------------------------------------------------------ building from the config
def make_reg_factory(cfg: DictConfig):
    """``make_reg(slot, **overrides)``: the configured regulariser at ``rates[slot]``."""
    params = {k: v for k, v in OmegaConf.to_container(cfg.regulariser, resolve=True).items() if k != "name"}
    rates = OmegaConf.to_container(cfg.rates, resolve=True)
    if "rate" in params:
        raise ConfigError("regulariser.rate is not a setting: rates come per slot from `rates` "
                          f"(e.g. rates.hidden=0.5; configured: {rates})")

    def make_reg(slot: str, **overrides) -> torch.nn.Module:
        if slot not in rates:
            raise ConfigError(f"rates has no entry for slot {slot!r} used by model {cfg.model.name!r}; "
                              f"set it, e.g. +rates.{slot}=0.5 (configured: {sorted(rates)})")
        try:
            return build_regulariser(cfg.regulariser.name, rate=rates[slot], **{**params, **overrides})
        except ValueError as e:
            raise ConfigError(f"regulariser ({slot}): {e}") from None

    return make_reg


def build_model_from(cfg: DictConfig, dims: dict[str, int]) -> torch.nn.Module:
    name = cfg.model.name  # known: check_config ran
    params = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    accepted = inspect.signature(MODELS[name].__init__).parameters
    params.update({k: v for k, v in dims.items() if k in accepted})
    try:
        return build_model(name, make_reg_factory(cfg), **params)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: {e}") from None


def _integer(value, at_least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= at_least


def check_config(cfg: DictConfig) -> None:
    """Fail fast, before any data is loaded, on values Hydra's schema cannot check and on overrides
    that would change nothing but the run's hash."""
    if not _integer(cfg.seed, 0):
        raise ConfigError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    t = cfg.train
    for key in ("epochs", "batch_size", "eval_batch_size", "threads"):
        if not _integer(t[key], 1):
            raise ConfigError(f"train.{key} must be an integer >= 1, got {t[key]!r}")
    if t.progress not in PROGRESS:
        raise ConfigError(f"train.progress must be one of {list(PROGRESS)}, got {t.progress!r}")
    check_sizing(cfg)
    if cfg.optim.name not in ("sgd", "adam", "adamw"):
        raise ConfigError(f"optim.name must be one of ['sgd', 'adam', 'adamw'], got {cfg.optim.name!r}")
    if cfg.train.lm_loss not in LM_LOSSES:
        raise ConfigError(f"train.lm_loss must be one of {list(LM_LOSSES)}, got {cfg.train.lm_loss!r}")
    if cfg.optim.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule must be one of {sorted(SCHEDULES)}, got {cfg.optim.schedule!r}")
    lr = cfg.optim.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"optim.lr must be a positive number, got {lr!r}")
    if cfg.device not in ("auto", "cpu") and not str(cfg.device).startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {cfg.device!r}")
    check_cuda_graphs(cfg)
    if cfg.model.name not in MODELS:
        raise ConfigError(f"unknown model {cfg.model.name!r}; choose one of {sorted(MODELS)}")
    slots, rates = MODELS[cfg.model.name].SLOTS, set(cfg.rates)
    if rates - set(slots):
        raise ConfigError(f"model {cfg.model.name!r} has rate slots {list(slots)}; rates.{sorted(rates - set(slots))[0]} "
                          "would change nothing: remove it")
    make_reg = make_reg_factory(cfg)
    for slot in slots:
        make_reg(slot)
    if cfg.regulariser.get("granularity") == "synapse":
        linear = getattr(MODELS[cfg.model.name], "LINEAR_SLOTS", ())
        off = [s for s in slots if s not in linear and float(cfg.rates[s]) > 0]
        if off:
            raise ConfigError(f"regulariser.granularity=synapse masks the connections of the Linear layer a "
                              f"regulariser feeds; model {cfg.model.name!r}'s slot(s) {off} feed other layers: set "
                              f"{' '.join(f'rates.{s}=0' for s in off)}, or use granularity unit or channel (its "
                              f"slots that feed a Linear layer: {list(linear) or 'none'})")


GRAPHABLE = ("image", "lm")  # data kinds whose batches have one shape (text reviews are bucketed by length)


def check_cuda_graphs(cfg: DictConfig) -> None:
    """``train.cuda_graphs`` replays one captured step per batch: it needs CUDA and batches of one
    shape (image classification, language models), and it replaces ``train.compile``. ``auto``
    uses it where it is measured to pay: image classification."""
    t = cfg.train
    if t.cuda_graphs not in (True, False, "auto"):
        raise ConfigError(f"train.cuda_graphs must be auto, true or false, got {t.cuda_graphs!r}")
    if t.cuda_graphs is not True:
        return
    if cfg.device == "cpu":
        raise ConfigError("train.cuda_graphs=true needs a CUDA device, but device=cpu")
    if t.compile:
        raise ConfigError("train.cuda_graphs and train.compile are alternatives: set one of them")
    kind = data_store.spec(cfg.data.name).kind
    if kind not in GRAPHABLE:
        raise ConfigError(f"train.cuda_graphs supports image classification and language models (batches of "
                          f"one shape); data {cfg.data.name!r} is {kind!r}: train it with train.cuda_graphs=false")


def use_cuda_graphs(cfg: DictConfig, device: torch.device) -> bool:
    """Whether this run captures its steps (``auto``: on CUDA, for image classification and language
    models without ``train.compile``; never the length-bucketed text batches)."""
    if cfg.train.cuda_graphs is True and device.type != "cuda":
        raise ConfigError(f"train.cuda_graphs=true needs a CUDA device; device={cfg.device} gave {device}")
    if cfg.train.cuda_graphs == "auto":
        return device.type == "cuda" and not cfg.train.compile and data_store.spec(cfg.data.name).kind in ("image", "lm")
    return bool(cfg.train.cuda_graphs)


def check_sizing(cfg: DictConfig) -> None:
    """An experiment below the paper scale needs its sizing file: without one it would silently run
    the full paper protocol."""
    scale, sizings = cfg.scale.name, Path(CONFIG_DIR, "sizing", cfg.name)
    if scale != "paper" and Path(CONFIG_DIR, "experiment", f"{cfg.name}.yaml").exists() \
            and not (sizings / f"{scale}.yaml").exists():
        have = sorted(p.stem for p in sizings.glob("*.yaml"))
        raise ConfigError(f"experiment {cfg.name!r} has no {scale} sizing (configs/sizing/{cfg.name}/ has {have}): "
                          f"it would run the full paper protocol. Use scale=paper for that, or add "
                          f"configs/sizing/{cfg.name}/{scale}.yaml")


PROGRESS = ("auto", "on", "off")
SCHEDULES = {
    "constant": lambda o, E: lambda e: 1.0,
    "cosine": lambda o, E: lambda e: 0.5 * (1 + math.cos(math.pi * e / E)),
    "step": lambda o, E: lambda e: o.gamma ** sum(e >= m for m in o.milestones),
    "zaremba": lambda o, E: lambda e: (1.0 / o.decay) ** max(0, e + 1 - o.decay_start),
}


def same_first_epochs(optim: DictConfig, shorter: int, longer: int) -> bool:
    """Whether ``optim``'s schedule gives a ``shorter``-epoch run the rates of a ``longer`` one at each of
    its epochs and at the next, which its final checkpoint holds (true of every schedule here but cosine,
    which anneals over ``train.epochs``)."""
    schedule = SCHEDULES[optim.schedule]
    return all(schedule(optim, shorter)(e) == schedule(optim, longer)(e) for e in range(shorter + 1))


def head_start(cfg: DictConfig, path: Path, device: torch.device) -> dict | None:
    """The final checkpoint of the longest completed shorter twin of this run (``runstore.shorter_twins``:
    trained on this device kind, its checkpoint kept) whose learning rates are this run's (``same_first_epochs``: not cosine), with
    ``continued_from`` naming it. Its epochs are the first epochs of this run, so training on from it is what
    this run would do from scratch (on CPU bit for bit where the twin trained as this run does: the same
    machine and threads, alone or in the same stack; tests/test_train.py) and a 1.5x-epoch twin costs only its extra
    epochs. On CUDA a twin trained in a stack saved the stack's shared random stream, which this run does not
    draw on (``cuda_stream``)."""
    for epochs, twin in runstore.shorter_twins(cfg, path, device.type):
        if not same_first_epochs(cfg.optim, epochs, cfg.train.epochs):
            continue
        summary, ckpt = runstore.read_summary(twin), runstore.load_checkpoint(twin)
        if ckpt is None or not ckpt["epoch"] == epochs == summary.get("epochs_done"):
            continue
        return {**ckpt, "continued_from": {
            "run": twin.name, "epochs": epochs, "wall_s": ckpt["wall_s"],
            "commit": summary.get("versions", {}).get("commit"),
            **({"continued_from": ckpt["continued_from"]} if ckpt.get("continued_from") else {})}}  # its own twin
    return None


def build_optimiser(cfg: DictConfig, model: torch.nn.Module, capturable: bool = False):
    o = cfg.optim
    if o.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                              weight_decay=o.weight_decay)
    else:
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, capturable=capturable)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, SCHEDULES[o.schedule](o, cfg.train.epochs))
    return opt, sched


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return torch.device(name)


# ------------------------------------------------------------------ the loop
def run_epoch(model, task: Task | StackedTask, split: str, cfg: DictConfig, device, opt=None, progress: str = "",
              graphs: bool = False) -> list[dict[str, float]]:
    """One pass over ``split``: trains when ``opt`` is given, else evaluates. Returns its metrics, one dict
    per run (one, or a stack's members; ``diverged`` set if a loss was not finite). ``progress``: a
    terminal bar with this label; ``graphs``: replay a captured CUDA graph step (see ``graphs.py``) when
    training, and when evaluating a language model (thousands of one-stream windows a pass)."""
    training = opt is not None
    model.train(training)
    members = getattr(task, "members", 0)  # 0: one run, scalar sums
    loss_sum = torch.zeros((members,) if members else (), device=device, dtype=torch.float64)
    correct = torch.zeros_like(loss_sum)
    counts, state = [0] * max(members, 1), None
    batches = task.splits[split]
    graphs = graphs and (training or task.kind == "lm")
    amp = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not graphs) if cfg.train.amp
           else contextlib.nullcontext())
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=len(batches), leave=False, desc=progress)

    def one_step(batch, state) -> tuple[torch.Tensor, torch.Tensor, object]:
        """The batch's summed loss and correct count, and the next state; trains on it when training."""
        with amp:
            objective, loss, right, state = task.step(model, batch, state)
        if training:
            opt.zero_grad(set_to_none=True)
            objective.backward()
            if cfg.optim.clip:
                clip_grad_norm_(model, cfg.optim.clip)
            opt.step()
        return loss.detach(), right, state

    step = GraphedStep(one_step) if graphs else one_step
    with torch.set_grad_enabled(training):
        for i, batch in enumerate(batches):
            loss, right, state = step(batch, state)
            loss_sum += loss.double()
            correct += right
            counts = [a + b for a, b in zip(counts, task.count(batch))]  # what each loss is summed over
            if training and i % 50 == 49 and not torch.isfinite(loss_sum).any():
                break
            if progress and i % 20 == 19:
                batches.set_postfix(loss=f"{loss_sum.view(-1)[0].item() / counts[0]:.4g}")
            if cfg.train.max_steps and i + 1 >= cfg.train.max_steps:
                break
    return [{**task.metrics(total, n, right), "diverged": not math.isfinite(total)}
            for total, n, right in zip(loss_sum.view(-1).tolist(), counts, correct.view(-1).tolist())]


def evaluate_test(model, task: Task, cfg, device) -> tuple[dict, dict]:
    """Test metrics, with the sparsity of every hidden ReLU layer (masks off: eval mode)."""
    with record_sparsity(model) as meters:
        m = run_epoch(model, task, "test", cfg, device)[0]
    return m, {name: meter.result() for name, meter in meters.items()}


def fit(cfg: DictConfig) -> dict:
    """Validate, claim the run directory, train (resuming if possible) and record one run; returns
    its summary. A run another process holds the lock of is skipped (status ``locked``)."""
    return fit_group([cfg])[0]


@dataclass
class Member:
    """One run being trained, alone or as a member of a stack: its config, folder, lock, data, own model
    and where it stands (its checkpoint, history, CPU/CUDA random states)."""

    cfg: DictConfig
    path: Path
    lock: runstore.RunLock
    task: Task
    model: torch.nn.Module
    rng: torch.Tensor
    rng_cuda: torch.Tensor | None
    ckpt: dict | None
    continued_from: dict | None = None  # the shorter twin whose epochs this run's first are (``head_start``)
    history: list = field(default_factory=list)
    wall_before: float = 0.0
    status: str = "running"

    @property
    def start(self) -> int:
        return self.ckpt["epoch"] if self.ckpt else 0


def cuda_stream(members: list[Member]) -> torch.Tensor | int:
    """The CUDA stream that a job of ``members`` (one run, or a stack, all starting at one epoch) draws its masks
    from: a saved generator state to go on with, or the seed of a new stream. The members of a stack on CUDA
    share one stream (``stack.Members``), which each member's checkpoint saves whole, with the names of the
    stack's members in order (``stack_members``). A saved stream goes on only in the job that saved it: a run
    alone (also where a longer twin takes its end, ``head_start``), or the same stack, in the same order,
    resuming whole. Parts of a stack resumed apart (as single runs, or in stacks formed anew) would each draw
    that one stream, alike; so such a job, like one whose checkpoint names no members (saved before they were
    recorded), draws from a new stream seeded by its first member's seed and the epoch, in a range no fresh
    run's seed (``torch.manual_seed(seed)``) reaches."""
    first = members[0]
    saved = (first.ckpt or {}).get("stack_members")
    own = first.ckpt is None or saved is not None and (len(saved) == 1 or saved == [m.path.name for m in members])
    if own and first.rng_cuda is not None:
        return first.rng_cuda
    return (first.cfg.seed + 1) * 1_000_003 + first.start


def set_cuda_stream(members: list[Member], device: torch.device) -> None:
    """Set ``device``'s generator to the stream the job of ``members`` draws from (``cuda_stream``)."""
    stream = cuda_stream(members)
    if isinstance(stream, int):
        with torch.cuda.device(device):
            torch.cuda.manual_seed(stream)
    else:
        torch.cuda.set_rng_state(stream, device)


def stack_key(cfg: DictConfig) -> str:
    """What runs trained as one stack must share: the config but for seed, regulariser and rates (and
    what a run's identity leaves out)."""
    return runstore.numbers_config(cfg, ("seed", "regulariser", "rates"))


def fit_group(cfgs: list[DictConfig]) -> list[dict]:
    """Train runs of one experiment and schedule (``stack_key``; others form their own groups) side by
    side as one stacked model (``stack.py``), each as its single run would train: from its own initial
    weights, data order, masks and optimiser state, into its own folder. Runs resuming from different
    epochs form separate stacks; runs that cannot be stacked train one by one. Returns each run's summary,
    in ``cfgs``' order (a finished run's as it is, a run another process holds ``{"status": "locked"}``). A
    failure while training marks the runs this call holds ``failed`` and is raised."""
    for cfg in cfgs:
        check_config(cfg)
    kinds = {stack_key(c) for c in cfgs}
    if len(kinds) > 1:  # one group each, one after the other
        summaries = {}
        for kind in kinds:
            part = [i for i, c in enumerate(cfgs) if stack_key(c) == kind]
            summaries.update(zip(part, fit_group([cfgs[i] for i in part])))
        return [summaries[i] for i in range(len(cfgs))]
    device = pick_device(cfgs[0].device)
    graphs = use_cuda_graphs(cfgs[0], device)
    commit = git_commit()  # read now, not when the run ends: the code this process trains with is what it loaded
    root = str(data_root(cfgs[0].paths.data))
    summaries: dict[int, dict] = {}
    members: dict[int, Member] = {}
    try:
        for i, cfg in enumerate(cfgs):
            path = runstore.run_dir(cfg)
            if runstore.is_finished(path):
                log.info("already finished, skipping: %s", path)
                summaries[i] = runstore.read_summary(path)
                continue
            member = _claim(cfg, path, device, root)
            if isinstance(member, dict):
                summaries[i] = member
            else:
                members[i] = member
        for start in sorted({m.start for m in members.values()}):
            group = [i for i, m in members.items() if m.start == start]
            waiting = [m for i, m in members.items() if i not in summaries and i not in group]
            summaries.update(zip(group, _train([members[i] for i in group], device, graphs, commit, waiting)))
    except Exception as e:  # noqa: BLE001 -- recorded in the runs this call holds, then raised
        for m in members.values():
            if not runstore.is_finished(m.path):
                runstore.write_summary(m.path, {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                                "name": m.cfg.name, "scale": m.cfg.scale.name,
                                                "regulariser": m.cfg.regulariser.name, "seed": m.cfg.seed})
        raise
    finally:
        for m in members.values():
            m.lock.release()
    return [summaries[i] for i in range(len(cfgs))]


def _claim(cfg: DictConfig, path: Path, device: torch.device, root: str) -> Member | dict:
    """Build ``cfg``'s data and model as its single run does (seeded), take its lock and read its
    checkpoint; a run another process holds gives its ``locked`` summary, one finished meanwhile its own."""
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg.data, cfg.train, cfg.seed, device, root)
    model = build_model_from(cfg, task.dims).to(device)
    rng = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    path.mkdir(parents=True, exist_ok=True)
    lock = runstore.RunLock(path)
    if not lock.acquire():
        log.warning("%s is being trained by another process (see %s); skipping it here", path.name, lock.file)
        return {"status": "locked", "identity": path.name}
    try:
        if runstore.is_finished(path):  # another process finished it while this one was building
            lock.release()
            return runstore.read_summary(path)
        runstore.remove_temporaries(path)
        runstore.save_config(path, cfg)
        ckpt = runstore.load_checkpoint(path) or head_start(cfg, path, device)
        member = Member(cfg, path, lock, task, model, rng, rng_cuda, ckpt)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            member.history, member.wall_before = ckpt["history"], ckpt["wall_s"]
            member.rng, member.rng_cuda = ckpt["rng_cpu"], ckpt.get("rng_cuda")
            member.continued_from = ckpt.get("continued_from")
            log.info("resuming %s from epoch %d%s", path.name, ckpt["epoch"],
                     f" (the end of its shorter twin {member.continued_from['run']})" if member.continued_from else "")
    except BaseException:
        lock.release()
        raise
    return member


def _train(members: list[Member], device: torch.device, graphs: bool, commit: str,
           waiting: list[Member] = ()) -> list[dict]:
    """Train ``members`` (one run, or a stack resuming from one epoch) to the end; returns their summaries.
    Members whose model or data has no stacked form train one by one. ``waiting``: runs this process holds
    for a later stack, whose locks it keeps fresh meanwhile."""
    first, stacked = members[0], len(members) > 1
    cfg = first.cfg
    if stacked:
        shared = Members([m.rng for m in members] if device.type == "cpu" else None)
        try:
            model, task = stack_model([m.model for m in members], shared), StackedTask([m.task for m in members])
        except NotStackable as e:
            log.warning("training %d runs one by one: %s", len(members), e)
            return [s for i, m in enumerate(members)
                    for s in _train([m], device, graphs, commit, [*members[i + 1:], *waiting])]
    else:
        model, task = first.model, first.task
    log.info("%s on %s, scale %s, %d CPU thread(s)%s", f"one stack of {len(members)} runs "
             f"({', '.join(m.path.name for m in members)})" if stacked else f"run {first.path}", device,
             cfg.scale.name, cfg.train.threads, ", CUDA graphs" if graphs else "")
    torch.set_rng_state(first.rng)
    if device.type == "cuda":
        set_cuda_stream(members, device)
    opt, sched = build_optimiser(cfg, model, capturable=graphs)
    if first.ckpt is not None:
        opt.load_state_dict(stack_optimiser_states([m.ckpt["optimiser"] for m in members]) if stacked
                            else first.ckpt["optimiser"])
        sched.load_state_dict(first.ckpt["scheduler"])
    task.set_epoch(first.start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_model = torch.compile(model) if cfg.train.compile else model
    loggers = [WandbLogger(m.cfg.logger, OmegaConf.to_container(m.cfg, resolve=True), m.path, m.path.name)
               for m in members]
    progress = cfg.train.progress == "on" or (cfg.train.progress == "auto" and sys.stderr.isatty())
    summaries: dict[int, dict] = {}

    def own_state(g: int, model_state: dict, opt_state: dict) -> tuple[dict, dict, torch.Tensor]:
        """Member ``g``'s model and optimiser state dicts and CPU random state, as its single run's, from the
        (stacked) model's and optimiser's state dicts."""
        if not stacked:
            return model_state, opt_state, torch.get_rng_state()
        rng_cpu = shared.states[g] if shared.states is not None else torch.get_rng_state()
        return member_state(model_state, g), member_optimiser_state(opt_state, g), rng_cpu

    def finish(g: int, end: float | None = None) -> None:
        m = members[g]
        if stacked and m.status == "completed":
            m.model.load_state_dict(member_state(model.state_dict(), g))
        summaries[g] = _record(m, device, graphs, commit, (end or time.time()) - t0, len(members), loggers[g])

    t0 = time.time()
    for epoch in range(first.start, cfg.train.epochs):
        lr = opt.param_groups[0]["lr"]  # this epoch's (the scheduler steps after it)
        trains = run_epoch(step_model, task, "train", cfg, device, opt,
                           f"epoch {epoch + 1}/{cfg.train.epochs}" if progress else "", graphs)
        for g, (m, tr) in enumerate(zip(members, trains)):
            if m.status == "running" and tr["diverged"]:
                m.status = "diverged"
                m.history.append({"epoch": epoch + 1, "train_loss": tr["loss"]})
                log.warning("%s: non-finite loss in epoch %d: run diverged", m.path.name, epoch + 1)
                finish(g)
        if all(m.status != "running" for m in members):
            break
        sched.step()
        valids = run_epoch(step_model, task, "valid", cfg, device)
        tests = run_epoch(step_model, task, "test", cfg, device) if cfg.train.test_every_epoch else [{}] * len(members)
        wall = time.time() - t0
        states = model.state_dict(), opt.state_dict()  # once an epoch; each member takes its slice
        for g, m in enumerate(members):
            if m.status != "running":
                continue
            row = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in trains[g].items() if k != "diverged"}}
            row.update({f"valid_{k}": v for k, v in valids[g].items() if k != "diverged"})
            row.update({f"test_{k}": v for k, v in tests[g].items() if k != "diverged"})
            row["wall_s"] = m.wall_before + wall
            m.history.append(row)
            log.info("%s epoch %d/%d %s", m.path.name, epoch + 1, cfg.train.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch",)))
            loggers[g].log(row, epoch + 1)
            runstore.write_metrics(m.path, m.history)
            model_state, opt_state, rng_cpu = own_state(g, *states)
            runstore.save_checkpoint(m.path, {
                "model": model_state, "optimiser": opt_state, "scheduler": sched.state_dict(),
                "epoch": epoch + 1, "history": m.history, "wall_s": row["wall_s"], "rng_cpu": rng_cpu,
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "stack_members": [x.path.name for x in members],  # whose stream rng_cuda is (``cuda_stream``)
                "continued_from": m.continued_from,
            })
            m.lock.heartbeat()
        for m in waiting:
            m.lock.heartbeat()
    end = time.time()
    for g, m in enumerate(members):
        if m.status == "running":
            m.status = "completed"
            finish(g, end)
    return [summaries[g] for g in range(len(members))]


def _record(m: Member, device: torch.device, graphs: bool, commit: str, wall: float, stack: int,
            logger: WandbLogger) -> dict:
    """Write a finished member's summary (and, completed, its test metrics, sparsity and weights)."""
    cfg = m.cfg
    summary = {"status": m.status, "name": cfg.name, "scale": cfg.scale.name, "regulariser": cfg.regulariser.name,
               "seed": cfg.seed, "identity": m.path.name, "metric": m.task.metric, "epochs_done": len(m.history),
               "device": str(device), "device_name": device_name(device), "threads": cfg.train.threads,
               "jobs": int(os.environ["QSD_JOBS"]) if "QSD_JOBS" in os.environ else None,  # set by qsd-reproduce's queue
               "stack": stack,  # runs trained as one model in this process (stack.py); its wall time is theirs
               "cuda_graphs": graphs,
               # the epochs it trained itself (a continued run's history counts from its twin's start)
               "wall_s": m.wall_before + wall - (m.continued_from or {}).get("wall_s", 0.0),
               **({"continued_from": m.continued_from} if m.continued_from else {}),
               **({"peak_mib": torch.cuda.max_memory_reserved(device) / 2**20 / stack} if device.type == "cuda" else {}),
               "versions": {"qsd": __version__, "commit": commit, "torch": torch.__version__,
                            "python": platform.python_version()}}
    if m.status == "completed":
        test, sparsity = evaluate_test(m.model, m.task, cfg, device)
        summary.update({f"test_{k}": v for k, v in test.items() if k != "diverged"})
        summary["final_valid"] = {k[6:]: v for k, v in m.history[-1].items() if k.startswith("valid_")}
        summary["sparsity"] = sparsity
        summary["weights"] = weight_summary(m.model)
        runstore.atomic_write(m.path / "model.pt", lambda f: torch.save(  # readable without a GPU
            {k: v.cpu() for k, v in m.model.state_dict().items()}, f))
    runstore.write_metrics(m.path, m.history)
    runstore.write_summary(m.path, summary)
    logger.finish(summary)
    log.info("%s: %s %s", m.path.name, m.status, {k: v for k, v in summary.items() if k.startswith("test_")})
    return summary


def fit_or_record(*cfgs: DictConfig) -> int:
    """``fit_group(cfgs)`` as an exit code: 0 trained (or already finished); 2 a bad config or missing data,
    logged in one line; 1 training failed, logged and marked failed in the summary of each run this process
    held unfinished (a rerun starts them again)."""
    try:
        fit_group(list(cfgs))
    except (ConfigError, DataError, ValueError) as e:
        log.error("%s", e)
        return 2
    except Exception:  # noqa: BLE001 -- fit_group marked the runs it held failed
        log.exception("run failed")
        return 1
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point. Config and data problems stop with one message; in a multirun, a run that
    fails while training is recorded as failed and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill releases the lock, as Ctrl-C does
    code = fit_or_record(cfg)
    if code == 2 or (code == 1 and HydraConfig.get().mode != RunMode.MULTIRUN):
        raise SystemExit(code)


if __name__ == "__main__":
    main()
