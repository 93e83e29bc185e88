"""Stacked training: G runs of one architecture trained as one model whose every weight has a leading
member axis, so that G small models cost about what one costs until the device is full.

``stack_model(models, members)`` builds that model from the members' own models (each built by the single
run's constructor under its seed, so each member starts from its single run's weights): every leaf with
weights becomes its batched form (``nn.Linear`` a batched matmul, ``nn.Conv2d`` a grouped convolution,
``nn.BatchNorm2d`` one batch norm over all members' channels, ``nn.Embedding`` one lookup in the
members' tables laid end to end, ``nn.LSTM`` an LSTM written with batched matmuls), and every
regulariser a ``StackedReg`` that calls each member's own regulariser on that member's slice, with the
member's own random stream swapped in on the CPU (``Members``). Activations are laid out
``(G, <the single run's shape>)``; a model's own ``forward`` must therefore read shapes from the end
(``flatten(-3)``, ``movedim(-3, -1)``), which every model in ``models/`` does. Parameters keep their
names, so ``member_state`` (and ``member_optimiser_state``) give each member its own state dict,
and a member's checkpoint is the single run's: either resumes the other.

Text batches, bucketed by length per seed, are padded to the largest member's; ``Members.extents`` cuts
each member's regulariser input back to its own batch. Anything without a stacked form (e.g. the
"synapse" granularity, a bidirectional LSTM) raises ``NotStackable``; the trainer then trains those runs
one by one.
"""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .models.synapse import SynapticLinear
from .regularisers.registry import _REGISTRY as REGULARISERS


class NotStackable(ValueError):
    """A model (or a group of runs) that has no stacked form; the message says which part."""


class Members:
    """What a stack's regularisers need to know of each member: its torch CPU generator state, swapped in
    around that member's random draws, so that a member draws on the CPU exactly the masks its single run
    draws (``states=None``: the members share the device's stream; on CUDA, where swapping would break
    graph capture, a member's masks then differ from its single run's, with the same distribution); and,
    for text batches padded to the largest member's, each member's own (batch, time) extent, to which its
    regulariser's input is cut, so that it draws masks of its single run's shape (``extents``, set per
    batch by ``StackedTask``; None where every member's batch has the stack's shape); and whether a
    member's single run holds its images in channels-last layout (one channel, cropped: see
    ``ImageBatches``), whose order a dropout mask is drawn in."""

    def __init__(self, states: list[torch.Tensor] | None):
        self.states = states
        self.extents: list[tuple[int, ...]] | None = None
        self.channels_last = False  # a member's single run has its images in channels-last layout (set by StackedTask)

    @contextlib.contextmanager
    def rng(self, g: int) -> Iterator[None]:
        if self.states is None:
            yield
            return
        torch.set_rng_state(self.states[g])
        try:
            yield
        finally:
            self.states[g] = torch.get_rng_state()


# ------------------------------------------------------------------ stacked leaves
def _stacked(mods: list[nn.Module], name: str, memo: dict, parameter: bool) -> torch.Tensor:
    """The members' ``name`` tensors stacked on a new first axis; one shared tensor (tied weights) is
    stacked once and shared again."""
    first = getattr(mods[0], name)
    if id(first) not in memo:
        t = torch.stack([getattr(m, name).detach() for m in mods])
        memo[id(first)] = nn.Parameter(t, requires_grad=first.requires_grad) if parameter else t
    return memo[id(first)]


def _take(out: nn.Module, mods: list[nn.Module], memo: dict) -> None:
    """Give ``out`` the members' parameters and buffers, stacked, under their own names."""
    for name, p in mods[0].named_parameters(recurse=False):
        if p is not None:
            setattr(out, name, _stacked(mods, name, memo, True))
    for name, b in mods[0].named_buffers(recurse=False):
        if b is not None:
            out.register_buffer(name, _stacked(mods, name, memo, False))


def as_channels(x: torch.Tensor) -> torch.Tensor:
    """(G, B, C, ...) -> (B, G * C, ...): the members as channel groups (a view where memory allows)."""
    return x.transpose(0, 1).flatten(1, 2)


def from_channels(y: torch.Tensor, members: int) -> torch.Tensor:
    """(B, G * C, ...) -> (G, B, C, ...)."""
    return y.unflatten(1, (members, -1)).transpose(0, 1)


class StackedLinear(nn.Module):
    """G ``nn.Linear`` layers: (G, ..., in) -> (G, ..., out) by one batched matmul."""

    def __init__(self, mods: list[nn.Linear], memo: dict):
        super().__init__()
        self.bias = None
        _take(self, mods, memo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        w = self.weight.transpose(1, 2)
        y = torch.bmm(flat, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), flat, w)
        return y.view(*x.shape[:-1], y.shape[-1])


class StackedConv2d(nn.Module):
    """G ``nn.Conv2d`` layers as one grouped convolution over the members' channels."""

    def __init__(self, mods: list[nn.Conv2d], memo: dict):
        super().__init__()
        c = mods[0]
        if c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise NotStackable(f"Conv2d with padding {c.padding!r} ({c.padding_mode}) has no stacked form here")
        self.stride, self.padding, self.dilation, self.groups = c.stride, c.padding, c.dilation, c.groups
        self.bias = None
        _take(self, mods, memo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.weight.shape[0]
        y = F.conv2d(as_channels(x), self.weight.flatten(0, 1), None if self.bias is None else self.bias.flatten(),
                     self.stride, self.padding, self.dilation, self.groups * g)
        return from_channels(y, g)


class StackedBatchNorm2d(nn.Module):
    """G ``nn.BatchNorm2d`` layers as one over the members' channels (batch norm is per channel, so each
    member normalises by its own statistics and keeps its own running ones)."""

    def __init__(self, mods: list[nn.BatchNorm2d], memo: dict):
        super().__init__()
        b = mods[0]
        self.eps, self.momentum, self.track = b.eps, b.momentum, b.track_running_stats
        self.weight = self.bias = None
        _take(self, mods, memo)
        if not self.track:
            self.running_mean = self.running_var = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked[0])
        use_batch = self.training or self.running_mean is None
        flat = lambda t: None if t is None else t.flatten()  # noqa: E731
        y = F.batch_norm(as_channels(x), flat(self.running_mean) if not self.training or self.track else None,
                         flat(self.running_var) if not self.training or self.track else None,
                         flat(self.weight), flat(self.bias), use_batch, factor, self.eps)
        return from_channels(y, x.shape[0])


class StackedPool(nn.Module):
    """A pooling layer (per channel) applied to every member's channels at once."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_channels(self.pool(as_channels(x)), x.shape[0])


class StackedEmbedding(nn.Module):
    """G ``nn.Embedding`` tables laid end to end: member g's id i reads row g * V + i. A padding row
    gets no gradient, as ``padding_idx`` gives it."""

    def __init__(self, mods: list[nn.Embedding], memo: dict):
        super().__init__()
        e = mods[0]
        if e.max_norm is not None or e.sparse or e.scale_grad_by_freq:
            raise NotStackable("nn.Embedding with max_norm, sparse gradients or scale_grad_by_freq has no stacked "
                               "form here")
        self.padding_idx = e.padding_idx
        _take(self, mods, memo)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        g, v = self.weight.shape[:2]
        offsets = torch.arange(g, device=ids.device).mul_(v).view(g, *[1] * (ids.dim() - 1))
        out = F.embedding(ids + offsets, self.weight.flatten(0, 1))
        if self.padding_idx is not None:
            out = out * (ids != self.padding_idx).unsqueeze(-1).to(out.dtype)
        return out


class StackedLSTM(nn.Module):
    """G one-layer, one-directional ``nn.LSTM`` layers written with batched matmuls (``nn.LSTM`` cannot
    be stacked). Same gates (i, f, g, o), same state shapes per member: ``(G, 1, B, H)``."""

    def __init__(self, mods: list[nn.LSTM], memo: dict):
        super().__init__()
        m = mods[0]
        if m.num_layers != 1 or m.bidirectional or m.proj_size or not m.bias:
            raise NotStackable("only a one-layer, one-directional nn.LSTM with biases has a stacked form "
                               f"(got layers={m.num_layers}, bidirectional={m.bidirectional}, proj_size={m.proj_size})")
        self.batch_first, self.bidirectional = m.batch_first, False
        _take(self, mods, memo)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if self.batch_first:
            x = x.transpose(1, 2)  # (G, T, B, in)
        g, t, b = x.shape[:3]
        hidden = self.weight_hh_l0.shape[-1]
        bias = (self.bias_ih_l0 + self.bias_hh_l0).unsqueeze(1)
        inputs = torch.baddbmm(bias, x.reshape(g, t * b, -1), self.weight_ih_l0.transpose(1, 2)).view(g, t, b, -1)
        if state is None:
            h = c = x.new_zeros(g, b, hidden)
        else:
            h, c = state[0].squeeze(1), state[1].squeeze(1)
        w_hh, outs = self.weight_hh_l0.transpose(1, 2), []
        for step in range(t):
            i, f, cell, o = (inputs[:, step] + torch.bmm(h, w_hh)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cell)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        out = torch.stack(outs, 1)
        return (out.transpose(1, 2) if self.batch_first else out), (h.unsqueeze(1), c.unsqueeze(1))


class StackedReg(nn.Module):
    """The members' own regulariser modules (any kind, any rate), each applied to its member's slice
    while training, with its member's random stream and, where the batch is padded, cut to its member's
    extent (``Members``; the padding stays zero)."""

    def __init__(self, regs: list[nn.Module], members: Members):
        super().__init__()
        for r in regs:
            if any(True for _ in r.parameters()) or r.state_dict():
                raise NotStackable(f"regulariser {type(r).__name__} holds weights or saved buffers")
        self.regs, self.members = nn.ModuleList(regs), members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        outs, extents = [], self.members.extents
        for g, reg in enumerate(self.regs):
            own = x[g]
            if extents is not None:
                cut = tuple(slice(0, n) for n in extents[g][: own.dim() - 1])
                own = own[cut]
            if self.members.channels_last and own.dim() == 4:
                own = own.contiguous(memory_format=torch.channels_last)
            with self.members.rng(g):
                out = reg(own)
            if extents is not None:
                padded = torch.zeros_like(x[g])
                padded[cut] = out
                out = padded
            outs.append(out)
        return torch.stack(outs)


LEAVES = {nn.Linear: StackedLinear, nn.Conv2d: StackedConv2d, nn.BatchNorm2d: StackedBatchNorm2d,
          nn.Embedding: StackedEmbedding, nn.LSTM: StackedLSTM}
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ELEMENTWISE = (nn.ReLU, nn.Identity, nn.Tanh, nn.Sigmoid)


def _stack(mods: list[nn.Module], members: Members, memo: dict) -> nn.Module:
    first = mods[0]
    if id(first) in memo:  # a module the model holds twice is stacked once
        return memo[id(first)]
    kind = type(first)
    if any(type(m) is not kind for m in mods[1:]) and kind not in REGULARISERS.values():
        raise NotStackable(f"members differ in architecture ({kind.__name__} against {type(mods[1]).__name__})")
    if kind in REGULARISERS.values() or any(type(m) in REGULARISERS.values() for m in mods):
        out = StackedReg(mods, members)
    elif isinstance(first, SynapticLinear):
        raise NotStackable("the 'synapse' granularity (a mask on each member's weight) has no stacked form here")
    elif kind in LEAVES:
        out = LEAVES[kind](mods, memo)
    elif kind in POOLS:
        out = StackedPool(copy.deepcopy(first))
    elif kind is nn.Flatten:
        if first.start_dim >= 0 or first.end_dim != -1:
            raise NotStackable("nn.Flatten must count its dimensions from the end (e.g. nn.Flatten(-3)) to stack")
        out = copy.deepcopy(first)
    elif first._parameters or first._buffers or (not first._modules and kind not in ELEMENTWISE):
        raise NotStackable(f"{kind.__name__} has no stacked form")
    else:  # a container: same class and forward, stacked children
        out = copy.copy(first)
        out._parameters, out._buffers = OrderedDict(), OrderedDict()
        out._modules = OrderedDict((k, _stack([m._modules[k] for m in mods], members, memo)) for k in first._modules)
    memo[id(first)] = out
    return out


def stack_model(models: list[nn.Module], members: Members) -> nn.Module:
    """One model computing ``models`` side by side on (G, ...) inputs; its state dict's entries are the
    members' stacked on a first axis, under the same names; ``members`` is shared by its regularisers
    (and kept as its ``members``). Raises ``NotStackable``."""
    out = _stack(models, members, {})
    out.stack_size, out.members = len(models), members
    return out


# ------------------------------------------------------------------ state: stacked <-> members
def member_state(state: dict[str, torch.Tensor], g: int) -> dict[str, torch.Tensor]:
    """Member ``g``'s state dict from a stacked one (every entry has the member axis first)."""
    return OrderedDict((k, v[g].clone()) for k, v in state.items())



def _per_param(state: dict, fn) -> dict:
    """An optimiser state dict with ``fn`` applied to every per-parameter tensor that has dimensions (a
    scalar ``step`` is shared by the members: they take the same steps)."""
    out = copy.copy(state)
    out["state"] = {i: {k: fn(k, v) if isinstance(v, torch.Tensor) and v.dim() else v for k, v in s.items()}
                    for i, s in state["state"].items()}
    return out


def member_optimiser_state(state: dict, g: int) -> dict:
    """Member ``g``'s optimiser state dict (same parameter order as its own model's)."""
    return _per_param(state, lambda _k, v: v[g].clone())


def stack_optimiser_states(states: list[dict]) -> dict:
    """The stacked optimiser state dict of the members' (their parameters in the same order)."""
    out = _per_param(states[0], lambda _k, v: v)
    for i, s in out["state"].items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor) and v.dim():
                s[k] = torch.stack([st["state"][i][k] for st in states])
    return out


def clip_grad_norm_(model: nn.Module, max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` on a model, or on a stacked model each member by its own norm."""
    members = getattr(model, "stack_size", 0)
    if not members:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.flatten(1).float().norm(dim=1) for g in grads]).norm(dim=0)  # (G,)
    coef = (max_norm / (norms + 1e-6)).clamp_max(1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
