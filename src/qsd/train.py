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
from .tasks import LM_LOSSES, Task, build_task

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
def run_epoch(model, task: Task, split: str, cfg: DictConfig, device, opt=None, progress: str = "",
              graphs: bool = False) -> dict[str, float]:
    """One pass over ``split``: trains when ``opt`` is given, else evaluates. Returns its metrics
    (``diverged`` set if a loss was not finite). ``progress``: a terminal bar with this label;
    ``graphs``: replay a captured CUDA graph step (see ``graphs.py``) when training, and when
    evaluating a language model (thousands of one-stream windows a pass)."""
    training = opt is not None
    model.train(training)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    n, state = 0, None
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
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip)
            opt.step()
        return loss.detach(), right, state

    step = GraphedStep(one_step) if graphs else one_step
    with torch.set_grad_enabled(training):
        for i, batch in enumerate(batches):
            loss, right, state = step(batch, state)
            loss_sum += loss.double()
            correct += right
            n += batch[1].numel()  # what the loss is summed over: examples, or a window's tokens
            if training and i % 50 == 49 and not torch.isfinite(loss_sum):
                break
            if progress and i % 20 == 19:
                batches.set_postfix(loss=f"{loss_sum.item() / n:.4g}")
            if cfg.train.max_steps and i + 1 >= cfg.train.max_steps:
                break
    m = task.metrics(loss_sum.item(), n, correct.item())
    m["diverged"] = not math.isfinite(loss_sum.item())
    return m


def evaluate_test(model, task: Task, cfg, device) -> tuple[dict, dict]:
    """Test metrics, with the sparsity of every hidden ReLU layer (masks off: eval mode)."""
    with record_sparsity(model) as meters:
        m = run_epoch(model, task, "test", cfg, device)
    return m, {name: meter.result() for name, meter in meters.items()}


def fit(cfg: DictConfig) -> dict:
    """Validate, claim the run directory, train (resuming if possible) and record one run; returns
    its summary. A run another process holds the lock of is skipped (status ``locked``)."""
    check_config(cfg)
    device = pick_device(cfg.device)
    graphs = use_cuda_graphs(cfg, device)
    commit = git_commit()  # read now, not when the run ends: the code this process trains with is what it loaded
    root = str(data_root(cfg.paths.data))
    path = runstore.run_dir(cfg)
    if runstore.is_finished(path):
        log.info("already finished, skipping: %s", path)
        return runstore.read_summary(path)
    log.info("run %s on %s, scale %s, %d CPU thread(s)%s", path, device, cfg.scale.name, cfg.train.threads,
             ", CUDA graphs" if graphs else "")
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg.data, cfg.train, cfg.seed, device, root)
    model = build_model_from(cfg, task.dims).to(device)
    path.mkdir(parents=True, exist_ok=True)
    lock = runstore.RunLock(path)
    if not lock.acquire():
        log.warning("%s is being trained by another process (see %s); skipping it here", path.name, lock.file)
        return {"status": "locked", "identity": path.name}
    try:
        if runstore.is_finished(path):  # another process finished it while this one was building
            return runstore.read_summary(path)
        return _train(cfg, path, task, model, device, lock, graphs, commit)
    finally:
        lock.release()


def _train(cfg: DictConfig, path: Path, task: Task, model: torch.nn.Module, device: torch.device,
           lock: runstore.RunLock, graphs: bool, commit: str) -> dict:
    opt, sched = build_optimiser(cfg, model, capturable=graphs)
    history: list[dict] = []
    start, wall_before = 0, 0.0

    runstore.remove_temporaries(path)
    runstore.save_config(path, cfg)
    ckpt = runstore.load_checkpoint(path)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimiser"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start, wall_before = ckpt["history"], ckpt["epoch"], ckpt["wall_s"]
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        log.info("resuming %s from epoch %d", path.name, start)
    task.set_epoch(start)
    step_model = torch.compile(model) if cfg.train.compile else model
    logger = WandbLogger(cfg.logger, OmegaConf.to_container(cfg, resolve=True), path, path.name)
    progress = cfg.train.progress == "on" or (cfg.train.progress == "auto" and sys.stderr.isatty())
    t0, status = time.time(), "completed"
    for epoch in range(start, cfg.train.epochs):
        lr = opt.param_groups[0]["lr"]  # this epoch's (the scheduler steps after it)
        tr = run_epoch(step_model, task, "train", cfg, device, opt,
                       f"epoch {epoch + 1}/{cfg.train.epochs}" if progress else "", graphs)
        if tr["diverged"]:
            status = "diverged"
            history.append({"epoch": epoch + 1, "train_loss": tr["loss"]})
            log.warning("non-finite loss in epoch %d: run diverged", epoch + 1)
            break
        sched.step()
        row = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in tr.items() if k != "diverged"}}
        row.update({f"valid_{k}": v for k, v in run_epoch(step_model, task, "valid", cfg, device).items() if k != "diverged"})
        if cfg.train.test_every_epoch:
            row.update({f"test_{k}": v for k, v in run_epoch(step_model, task, "test", cfg, device).items() if k != "diverged"})
        row["wall_s"] = wall_before + time.time() - t0
        history.append(row)
        log.info("%s epoch %d/%d %s", path.name, epoch + 1, cfg.train.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch",)))
        logger.log(row, epoch + 1)
        runstore.write_metrics(path, history)
        runstore.save_checkpoint(path, {
            "model": model.state_dict(), "optimiser": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch + 1, "history": history, "wall_s": row["wall_s"], "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        })
        lock.heartbeat()

    summary = {"status": status, "name": cfg.name, "scale": cfg.scale.name, "regulariser": cfg.regulariser.name,
               "seed": cfg.seed, "identity": path.name, "metric": task.metric, "epochs_done": len(history),
               "device": str(device), "device_name": device_name(device), "threads": cfg.train.threads,
               "jobs": int(os.environ["QSD_JOBS"]) if "QSD_JOBS" in os.environ else None,  # set by qsd-reproduce's queue
               "cuda_graphs": graphs,
               "wall_s": wall_before + time.time() - t0,
               "versions": {"qsd": __version__, "commit": commit, "torch": torch.__version__,
                            "python": platform.python_version()}}
    if status == "completed":
        test, sparsity = evaluate_test(model, task, cfg, device)
        summary.update({f"test_{k}": v for k, v in test.items() if k != "diverged"})
        summary["final_valid"] = {k[6:]: v for k, v in history[-1].items() if k.startswith("valid_")}
        summary["sparsity"] = sparsity
        summary["weights"] = weight_summary(model)
        runstore.atomic_write(path / "model.pt", lambda f: torch.save(  # readable without a GPU
            {k: v.cpu() for k, v in model.state_dict().items()}, f))
    runstore.write_metrics(path, history)
    runstore.write_summary(path, summary)
    logger.finish(summary)
    log.info("%s: %s %s", path.name, status, {k: v for k, v in summary.items() if k.startswith("test_")})
    return summary


def fit_or_record(cfg: DictConfig) -> int:
    """``fit(cfg)`` as an exit code: 0 trained (or already finished); 2 a bad config or missing data,
    logged in one line; 1 the run failed while training, logged and marked failed in its summary (a
    rerun starts it again)."""
    try:
        fit(cfg)
    except (ConfigError, DataError, ValueError) as e:
        log.error("%s", e)
        return 2
    except Exception as e:  # noqa: BLE001 -- any failure while training is recorded
        path = runstore.run_dir(cfg)
        if path.exists():
            runstore.write_summary(path, {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                          "name": cfg.name, "scale": cfg.scale.name,
                                          "regulariser": cfg.regulariser.name, "seed": cfg.seed})
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
