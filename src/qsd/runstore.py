"""A run directory: its identity, resolved config, metrics, summary and checkpoints.

    <runs root>/<scale>/<experiment name>/<regulariser>-seed<seed>-<config hash>/
        config.yaml  metrics.jsonl  summary.json  ckpt-last.pt  ckpt-prev.pt  model.pt

Every file is written atomically. The directory name is a hash of the config that determines the
numbers (not paths, logger, device or progress display), so re-running a sweep finds finished runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .io import atomic_write, write_json, write_text

log = logging.getLogger(__name__)
NOT_IDENTITY = ("paths", "logger", "device", "progress", "compile", "threads", "cuda_graphs")
FINISHED = ("completed", "diverged")


def numbers_config(cfg: DictConfig, leave_out: tuple[str, ...] = ()) -> str:
    """The config entries that change a run's numbers, but ``leave_out``'s (top level or under ``train``),
    as canonical JSON."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in (*NOT_IDENTITY, *leave_out):
        c.pop(key, None)
        c.get("train", {}).pop(key, None)
    return json.dumps(c, sort_keys=True)


def identity(cfg: DictConfig) -> str:
    """8-hex-digit hash of the config entries that change a run's numbers."""
    return hashlib.sha256(numbers_config(cfg).encode()).hexdigest()[:8]


def run_key(cfg: DictConfig) -> str:
    """``<experiment name>/<regulariser>-seed<seed>-<config hash>``: where the run lives under a scale."""
    return f"{cfg.name}/{cfg.regulariser.name}-seed{cfg.seed}-{identity(cfg)}"


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.runs).expanduser().resolve() / cfg.scale.name / run_key(cfg)


ARCHIVED = ("config.yaml", "metrics.jsonl", "summary.json")  # summary last: its presence means the copy is whole


def archive(path: Path, dest: Path) -> None:
    """Copy a finished run's small files (never checkpoints or weights) to ``dest``, atomically each."""
    for name in ARCHIVED:
        data = (path / name).read_bytes()
        atomic_write(dest / name, lambda f: f.write(data))


def continuable(path: Path, device_kind: str) -> bool:
    """Whether a longer twin may train on from the run at ``path`` (``train.head_start``): completed on this
    kind of device (``cpu``, ``cuda``), its final checkpoint kept."""
    s = read_summary(path) or {}
    return (s.get("status") == "completed" and str(s.get("device", "cpu")).split(":")[0] == device_kind
            and (path / "ckpt-last.pt").exists())


def shorter_twins(cfg: DictConfig, path: Path, device_kind: str) -> list[tuple[int, Path]]:
    """``continuable`` runs beside ``path`` whose config is ``cfg``'s but for fewer ``train.epochs``, as
    ``(epochs, folder)``, longest first: a longer run may train on from one of them (``train.head_start``)."""
    want, epochs, twins = numbers_config(cfg, ("epochs",)), cfg.train.epochs, []
    for other in path.parent.glob(f"{cfg.regulariser.name}-seed{cfg.seed}-*"):
        if other == path or not continuable(other, device_kind):
            continue
        try:
            theirs = OmegaConf.load(other / "config.yaml")
        except Exception:  # noqa: BLE001 -- an unreadable config makes no twin
            continue
        if theirs.train.epochs < epochs and numbers_config(theirs, ("epochs",)) == want:
            twins.append((theirs.train.epochs, other))
    return sorted(twins, reverse=True)


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(path: Path) -> bool:
    s = read_summary(path)
    return s is not None and s.get("status") in FINISHED


def epochs_trained(summary: dict) -> int:
    """Epochs a finished run trained itself, which its ``wall_s`` times: all it did, but for the ones a
    continued run took from its shorter twin (``continued_from``)."""
    return summary.get("epochs_done", 0) - (summary.get("continued_from") or {}).get("epochs", 0)


def epochs_logged(path: Path) -> int:
    """Epochs a run at ``path`` has trained so far (a stopped run resumes after them; 0 if none)."""
    try:
        return (path / "metrics.jsonl").read_text().count("\n")
    except OSError:
        return 0


def write_metrics(path: Path, history: list[dict]) -> None:
    write_text(path / "metrics.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def write_summary(path: Path, summary: dict) -> None:
    write_json(path / "summary.json", summary)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the new checkpoint completely (``ckpt-new.pt``) before touching the old ones, then
    rotate: last -> prev, new -> last. A failure while writing leaves both old checkpoints as they were."""
    buf = io.BytesIO()
    torch.save(state, buf)
    new, last = path / "ckpt-new.pt", path / "ckpt-last.pt"
    atomic_write(new, lambda f: f.write(buf.getvalue()))
    if last.exists():
        last.replace(path / "ckpt-prev.pt")
    new.replace(last)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (last, else previous), loaded with ``weights_only=True``;
    None (and a warning if any checkpoint existed) when there is none to resume from."""
    tried = []
    for name in ("ckpt-last.pt", "ckpt-new.pt", "ckpt-prev.pt"):  # newest first, whatever a kill interrupted
        f = path / name
        if not f.exists():
            continue
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- a damaged file of any kind: fall back
            log.warning("checkpoint %s is unreadable (%s); trying an older one", f, e)
            tried.append(name)
            continue
        if tried:
            log.warning("resuming from the older checkpoint %s", f.name)
        return state
    if tried:
        log.warning("no usable checkpoint in %s; starting this run from scratch", path)
    return None


def remove_temporaries(path: Path) -> None:
    """Delete temporary files a killed writer left behind (they are never read)."""
    for f in path.glob(".*.tmp"):
        f.unlink(missing_ok=True)


class RunLock:
    """An exclusive claim on a run directory, safe across processes and machines that share the
    results root: ``run.lock`` is created by an atomic hard link. A lock is stale when its owner on
    this host has died, or when it has not been refreshed (``heartbeat``) for ``stale_s`` seconds; a
    stale lock is moved aside by one contender at a time, and only one of several wins the run."""

    def __init__(self, path: Path, stale_s: float | None = None):
        self.file = path / "run.lock"
        self.stale_s = stale_s if stale_s is not None else float(os.environ.get("QSD_LOCK_STALE_S", 6 * 3600))
        self.held = False

    def acquire(self) -> bool:
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        for _ in range(3):
            # written whole beside it, then hard-linked into place (atomic, fails if it exists): a
            # contender never reads a half-written lock, which would look stale
            new = self.file.with_name(f".run.lock.{uuid.uuid4().hex}.new")
            new.write_text(owner)
            try:
                os.link(new, self.file)
            except FileExistsError:
                if not self._stale():
                    return False
                self._move_stale_aside()
                continue
            finally:
                new.unlink()
            self.held = True
            return True
        return False

    def _move_stale_aside(self) -> None:
        """Move a stale lock out of the way, one contender at a time: ``run.lock.takeover`` (created
        with O_EXCL) admits one taker, who checks the lock again under it, so a fresh lock that
        another contender has just made is never moved. A taker that died mid-way is outwaited (60 s)."""
        token = self.file.with_name("run.lock.takeover")
        try:
            os.close(os.open(token, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - token.stat().st_mtime > 60:
                    token.unlink()
            return
        try:
            if self.file.exists() and self._stale():
                os.rename(self.file, self.file.with_name(f".run.lock.stale.{uuid.uuid4().hex}"))
                log.warning("took over a stale lock in %s", self.file.parent)
        finally:
            token.unlink(missing_ok=True)

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.file.read_text())
            age = time.time() - self.file.stat().st_mtime
        except (OSError, ValueError):
            return True  # unreadable or vanished: a half-created lock from a killed process
        if age > self.stale_s:
            return True
        if owner.get("host") == socket.gethostname():
            try:
                os.kill(int(owner["pid"]), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, KeyError, ValueError):
                return False
        return False

    def heartbeat(self) -> None:
        if self.held:
            os.utime(self.file)

    def release(self) -> None:
        if self.held:
            self.file.unlink(missing_ok=True)
            self.held = False


def save_config(path: Path, cfg: DictConfig) -> None:
    write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
