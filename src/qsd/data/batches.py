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
    (black padding ``pad``, i.e. pixel value 0 before standardising) and horizontal flip done on the device. Each pass over it is one epoch;
    set ``epoch`` to resume the order of a given epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device | str,
                 mean: torch.Tensor, std: torch.Tensor, shuffle: bool = True, crop_pad: int = 0,
                 flip: bool = False, seed: int = 0):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.crop_pad, self.flip, self.seed = batch_size, shuffle, crop_pad, flip, seed
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / std.to(device).view(1, -1, 1, 1)
        self.epoch = 0
        probe = self.x[:1].float()  # the layout this pipeline's batches have: with one channel, a crop leaves
        if crop_pad:                # channels-last strides, which layers downstream (dropout's mask) follow
            probe = random_crop(probe, crop_pad, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
        self.channels_last = probe.dim() == 4 and probe.stride(1) == 1

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.y), generator=g) if self.shuffle else torch.arange(len(self.y))
        sizes = [len(idx) for idx in order.split(self.batch_size)]
        draws = self._augmentation_draws(sizes, g)
        for idx, (dy, dx, flip) in zip(order.to(self.x.device).split(sizes), draws):
            x = self.x[idx].float().mul_(1 / 255)
            if self.crop_pad:  # padded with black (0) before standardising, as torchvision does
                x = random_crop(x, self.crop_pad, dy, dx)
            if self.flip:
                x = random_flip(x, flip)
            yield x.sub_(self.mean).mul_(self.inv_std), self.y[idx]

    def _augmentation_draws(self, sizes: list[int], g: torch.Generator) -> list[torch.Tensor]:
        """Each batch's crop offsets (dy, dx) and flips, drawn on the CPU in batch order and moved
        to the device once per epoch (not per batch): a list of (3, n) tensors."""
        draws = []
        for n in sizes:
            dy = dx = flip = torch.zeros(n, dtype=torch.long)
            if self.crop_pad:
                dy = torch.randint(0, 2 * self.crop_pad + 1, (n,), generator=g)
                dx = torch.randint(0, 2 * self.crop_pad + 1, (n,), generator=g)
            if self.flip:
                flip = (torch.rand(n, generator=g) < 0.5).long()
            draws.append(torch.stack([dy, dx, flip]))
        return list(torch.cat(draws, 1).to(self.x.device).split(sizes, 1))


def random_crop(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Crop each example of a zero-padded (by ``pad``) batch back to its size, at row/column
    offsets ``dy``, ``dx`` (one per example, in [0, 2 pad])."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy.view(n, 1, 1)).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx.view(n, 1, 1)).expand(n, h, w)
    b = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flip left-right the examples where ``flip`` is non-zero."""
    return torch.where(flip.view(-1, 1, 1, 1).bool(), x.flip(3), x)


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
    on the device; a batch is one gather there (lengths stay on the CPU, where a bidirectional
    LSTM's packing needs them; a one-directional one copies them to the device to read each review's
    last state)."""

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
