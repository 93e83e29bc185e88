"""Optional Weights & Biases logging: one wandb run per training run, never required."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class WandbLogger:
    """Logs epoch metrics to wandb; any wandb failure becomes one warning and local logging goes on."""

    def __init__(self, cfg, config: dict, run_dir: Path, name: str):
        self.run = None
        if cfg.name != "wandb":
            return
        try:
            import wandb

            self.run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, config=config,
                                  name=name, dir=str(run_dir), reinit="finish_previous")
        except Exception as e:  # noqa: BLE001 -- unreachable or misconfigured: keep training
            log.warning("wandb unavailable (%s); continuing with local logging only", e)

    def log(self, metrics: dict, step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as e:  # noqa: BLE001
            log.warning("wandb logging failed (%s); continuing with local logging only", e)
            self.run = None

    def finish(self, summary: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
            self.run.finish()
        except Exception as e:  # noqa: BLE001
            log.warning("wandb finish failed (%s)", e)
