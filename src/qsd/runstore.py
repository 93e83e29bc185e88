"""A run directory: its identity, resolved config, metrics, summary and checkpoints.

    <runs root>/<scale>/<experiment name>/<regulariser>-seed<seed>-<config hash>/
        config.yaml  metrics.jsonl  summary.json  ckpt-last.pt  ckpt-prev.pt  model.pt

Every file is written atomically. The directory name is a hash of the config that determines the
numbers (not paths, logger, device or progress display), so re-running a sweep finds finished runs.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .io import atomic_write, write_json, write_text

log = logging.getLogger(__name__)
NOT_IDENTITY = ("paths", "logger", "device", "progress", "compile")
FINISHED = ("completed", "diverged")


def identity(cfg: DictConfig) -> str:
    """8-hex-digit hash of the config entries that change a run's numbers."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_IDENTITY:
        c.pop(key, None)
        c.get("train", {}).pop(key, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:8]


def run_dir(cfg: DictConfig) -> Path:
    root = Path(cfg.paths.runs).expanduser().resolve()
    return root / cfg.scale.name / cfg.name / f"{cfg.regulariser.name}-seed{cfg.seed}-{identity(cfg)}"


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(path: Path) -> bool:
    s = read_summary(path)
    return s is not None and s.get("status") in FINISHED


def write_metrics(path: Path, history: list[dict]) -> None:
    write_text(path / "metrics.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def write_summary(path: Path, summary: dict) -> None:
    write_json(path / "summary.json", summary)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``ckpt-last.pt``; the one it replaces becomes ``ckpt-prev.pt`` (two are kept)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    last = path / "ckpt-last.pt"
    if last.exists():
        last.replace(path / "ckpt-prev.pt")
    atomic_write(last, lambda f: f.write(buf.getvalue()))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (last, else previous), loaded with ``weights_only=True``."""
    for name in ("ckpt-last.pt", "ckpt-prev.pt"):
        f = path / name
        if not f.exists():
            continue
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- a damaged file of any kind: fall back
            log.warning("checkpoint %s is unreadable (%s); trying an older one", f, e)
    return None


def save_config(path: Path, cfg: DictConfig) -> None:
    write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
