"""Batches drawn from tensors that already live on the training device (no per-sample DataLoader).

The order comes from a seeded ``torch.Generator`` on the CPU, so the same seed gives the same
data order for every regulariser and device.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .text import batchify, bptt_windows, pad_batch


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class ImageBatches:
    """Shuffled (x, y) batches of uint8 images -> standardised float, with optional random crop
    (zero padding ``pad``) and horizontal flip done on the device. Each pass over it is one epoch;
    set ``epoch`` to resume the order of a given epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device | str,
                 mean: torch.Tensor, std: torch.Tensor, shuffle: bool = True, crop_pad: int = 0,
                 flip: bool = False, seed: int = 0):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.crop_pad, self.flip, self.seed = batch_size, shuffle, crop_pad, flip, seed
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / std.to(device).view(1, -1, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.y), generator=g) if self.shuffle else torch.arange(len(self.y))
        for idx in order.to(self.x.device).split(self.batch_size):
            x = self.x[idx].float().mul_(1 / 255).sub_(self.mean).mul_(self.inv_std)
            if self.crop_pad:
                x = random_crop(x, self.crop_pad, g)
            if self.flip:
                x = random_flip(x, g)
            yield x, self.y[idx]


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Per-example random crop of a zero-padded (by ``pad``) batch back to its size."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=g).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    b = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flip each example left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


class LMBatches:
    """Language-model (input, target) windows of shape (bptt, batch) over a batchified stream."""

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int, device: torch.device | str):
        self.data, self.bptt = batchify(ids, batch_size).to(device), bptt

    def __len__(self) -> int:
        return -(-(self.data.size(0) - 1) // self.bptt)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return bptt_windows(self.data, self.bptt)


class TextBatches:
    """Length-bucketed padded batches of reviews: ((B, T) ids, (B,) lengths), (B,) labels.

    Examples are shuffled, grouped in pools of 50 batches, sorted by length inside a pool (little
    padding), cut into batches, and the batch order is shuffled again. All reviews are padded once,
    on the device; a batch is one gather there (lengths stay on the CPU, for packing)."""

    def __init__(self, ids: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor, batch_size: int,
                 max_len: int, device: torch.device | str, shuffle: bool = True, seed: int = 0, pad_id: int = 0):
        seqs = [ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        self.lengths = torch.tensor([min(len(s), max_len) for s in seqs])  # the sort key
        self.padded, self.y = pad_batch(seqs, max_len, pad_id)[0].to(device), y.to(device)
        self.batch_size, self.device, self.shuffle, self.seed, self.epoch = batch_size, device, shuffle, seed, 0

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
        g = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.y), generator=g) if self.shuffle else torch.arange(len(self.y))
        batches = []
        for pool in order.split(50 * self.batch_size):
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches.extend(pool.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        on_device = torch.cat(batches).to(self.device).split([len(b) for b in batches])
        for idx, idx_device in zip(batches, on_device):
            lengths = self.lengths[idx].clamp_min(1)
            yield (self.padded[idx_device, : int(lengths.max())], lengths), self.y[idx_device]
