"""What differs between classification and language modelling, behind one small interface, so the
trainer has a single loop: batches per split, a loss for one batch, and metrics from running sums."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import data as D

# How a language model's (T, B) window of token losses becomes the objective. "time_sum": summed
# over the T time steps, averaged over the B columns (Zaremba et al. 2014's code: lr 1 and gradient
# clip 5 are set for it). "token_mean": averaged over all T x B tokens (T times smaller steps).
LM_LOSSES = ("time_sum", "token_mean")


@dataclass
class Task:
    """Batches for ``train``/``valid``/``test`` and how to score them. ``metric`` is lower-is-better."""

    kind: str  # "classification" | "lm"
    splits: dict[str, Iterable]
    dims: dict[str, int]
    metric: str  # "error" (percent) or "ppl"
    lm_loss: str = "time_sum"  # language models: see LM_LOSSES

    def step(self, model: nn.Module, batch, state=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """One batch: the objective to minimise, the loss summed over the batch's targets (examples or
        tokens: metrics are per element of ``y``), the correct count, the next state."""
        x, y = batch
        if self.kind == "lm":
            if state is not None:
                state = [tuple(t.detach() for t in s) for s in state]
            logits, state = model(x, state)
            loss_sum = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")
            objective = loss_sum / (y.size(1) if self.lm_loss == "time_sum" else y.numel())
            return objective, loss_sum, torch.zeros((), device=y.device), state
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, loss.detach() * y.numel(), (logits.argmax(1) == y).sum(), None

    def count(self, batch) -> list[int]:
        """What a batch's loss is summed over (examples, or a window's tokens), as a list of one."""
        return [batch[1].numel()]

    def metrics(self, loss_sum: float, n: int, correct: float) -> dict[str, float]:
        loss = loss_sum / max(n, 1)
        if self.kind == "lm":
            return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}
        return {"loss": loss, "error": 100.0 * (1.0 - correct / max(n, 1))}

    def set_epoch(self, epoch: int) -> None:
        """Make the training order that of ``epoch`` (used when resuming)."""
        if hasattr(self.splits["train"], "epoch"):
            self.splits["train"].epoch = epoch


def _limit(t: dict[str, torch.Tensor], n: int | None) -> dict[str, torch.Tensor]:
    """The first ``n`` examples (or tokens) of a split; the whole split when ``n`` is None."""
    if n is None:
        return t
    if "offsets" in t:
        n = min(n, len(t["y"]))
        return {"ids": t["ids"][: int(t["offsets"][n])], "offsets": t["offsets"][: n + 1], "y": t["y"][:n]}
    return {k: v[:n] for k, v in t.items()}


def build_task(data_cfg, train_cfg, seed: int, device: torch.device, root: str) -> Task:
    """Load the data set named in ``data_cfg`` and wrap its splits in on-device batch iterators."""
    spec = D.store.spec(data_cfg.name)
    raw = {s: D.load(data_cfg.name, s, root) for s in ("train", "valid", "test")}
    raw["train"] = _limit(raw["train"], data_cfg.limit_train)
    for s in ("valid", "test"):
        raw[s] = _limit(raw[s], data_cfg.limit_eval)
    bs, ebs = train_cfg.batch_size, train_cfg.eval_batch_size
    if spec.kind == "image":
        x = raw["train"]["x"]
        xf = x.float().div_(255)
        mean, std = xf.mean(dim=(0, 2, 3)), xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
        pad = data_cfg.crop_pad if data_cfg.augment else 0
        splits = {"train": D.ImageBatches(x, raw["train"]["y"], bs, device, mean, std, True, pad,
                                          bool(data_cfg.augment), seed)}
        for s in ("valid", "test"):
            splits[s] = D.ImageBatches(raw[s]["x"], raw[s]["y"], ebs, device, mean, std, shuffle=False)
        c, h, w = x.shape[1:]
        dims = {"in_features": c * h * w, "in_channels": c, "image_size": h, "classes": D.meta(data_cfg.name, root)["classes"]}
        return Task("classification", splits, dims, "error")
    vocab = D.meta(data_cfg.name, root)["vocab"]
    if spec.kind == "lm":
        splits = {"train": D.LMBatches(raw["train"]["ids"], bs, data_cfg.bptt, device)}
        for s in ("valid", "test"):
            splits[s] = D.LMBatches(raw[s]["ids"], ebs, data_cfg.bptt, device)
        return Task("lm", splits, {"vocab_size": len(vocab)}, "ppl", train_cfg.lm_loss)
    splits = {s: D.TextBatches(raw[s]["ids"], raw[s]["offsets"], raw[s]["y"], bs if s == "train" else ebs,
                               data_cfg.max_len, device, shuffle=(s == "train"), seed=seed)
              for s in ("train", "valid", "test")}
    return Task("classification", splits, {"vocab_size": len(vocab), "classes": 2}, "error")


class StackedBatches:
    """The members' batches of one split, step by step, stacked on a first axis. Image and language-model
    batches have one shape across members (same data, batch size and window); text batches, bucketed by
    length per seed, are padded to the largest member's (ids with the pad id, lengths and labels with 1
    and 0), each batch carrying its members' own (examples, time) extents last."""

    def __init__(self, members: list[Iterable], text: bool = False):
        self.members, self.text = members, text

    def __len__(self) -> int:
        return len(self.members[0])

    def __iter__(self):
        for batches in zip(*self.members):
            if not self.text:
                yield tuple(torch.stack(parts) for parts in zip(*batches))
                continue
            extents = [tuple(ids.shape) for (ids, _), _ in batches]
            b, t = (max(e[i] for e in extents) for i in (0, 1))
            ids = torch.stack([F.pad(ids, (0, t - ids.shape[1], 0, b - ids.shape[0])) for (ids, _), _ in batches])
            lengths = torch.stack([F.pad(n, (0, b - len(n)), value=1) for (_, n), _ in batches])
            y = torch.stack([F.pad(y, (0, b - len(y))) for _, y in batches])
            yield (ids, lengths), y, extents


class StackedTask:
    """G tasks of one experiment (differing in seed: data order, augmentation) as one, for a stacked
    model (``stack.py``): a step's objective is the sum of the members' own objectives, so each
    member's gradient is its own; its loss and correct count come back per member, shape (G,). Padded
    text batches count, score and average each member's own examples only, and tell the model's
    regularisers each member's extent (``stack.Members``)."""

    def __init__(self, tasks: list[Task]):
        first = tasks[0]
        self.tasks, self.members = tasks, len(tasks)
        self.kind, self.dims, self.metric, self.lm_loss = first.kind, first.dims, first.metric, first.lm_loss
        self.text = isinstance(first.splits["train"], D.TextBatches)
        self.channels_last = getattr(first.splits["train"], "channels_last", False)
        self.splits = {s: StackedBatches([t.splits[s] for t in tasks], self.text) for s in first.splits}

    def count(self, batch) -> list[int]:
        """What each member's loss is summed over in ``batch``."""
        if self.text:
            return [e[0] for e in batch[2]]
        return [batch[1][0].numel()] * self.members

    def step(self, model: nn.Module, batch, state=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        x, y = batch[:2]
        if self.kind == "lm":
            if state is not None:
                state = [tuple(t.detach() for t in s) for s in state]
            logits, state = model(x, state)
            tokens = F.cross_entropy(logits.flatten(0, -2).float(), y.flatten(), reduction="none").view(y.shape)
            loss_sum = tokens.flatten(1).sum(1)
            per_member = loss_sum / (y.size(2) if self.lm_loss == "time_sum" else y[0].numel())
            return per_member.sum(), loss_sum.detach(), torch.zeros(self.members, device=y.device), state
        model.members.channels_last = self.channels_last
        if self.text:
            model.members.extents = batch[2]
        try:
            logits = model(x)
        finally:
            if self.text:
                model.members.extents = None
        losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none").view(y.shape)
        right = logits.argmax(-1) == y
        if self.text:  # each member's own examples: the padding's are dropped
            sizes = torch.tensor(self.count(batch), device=y.device)
            own = torch.arange(y.shape[1], device=y.device) < sizes.unsqueeze(1)
            losses, right = torch.where(own, losses, 0.0), right & own
            return (losses.sum(1) / sizes).sum(), losses.detach().sum(1), right.sum(1), None
        return losses.mean(1).sum(), losses.detach().sum(1), right.sum(1), None

    def metrics(self, loss_sum: float, n: int, correct: float) -> dict[str, float]:
        return self.tasks[0].metrics(loss_sum, n, correct)

    def set_epoch(self, epoch: int) -> None:
        for t in self.tasks:
            t.set_epoch(epoch)
