"""A step captured in a CUDA graph (``train.cuda_graphs``: by default wherever it is measured to
apply on CUDA, image classification and language models; never the length-bucketed sentiment batches).

A small model's step is a few hundred short kernels, so eager training is bound by their launches
and the GPU idles. Captured once and replayed per batch, the step costs one launch. The replay runs
the same kernels on the same tensors as eager (dropout and QSD draw fresh masks on every replay:
both take their randomness from torch's CUDA generator, which advances per replay).

A language model carries its LSTM state from one window to the next: the state is one more input,
copied into the captured one before each replay like the batch, so a replay computes what the eager
step would from the same state.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

Batch = Any  # (x, y) tensors
State = Any  # None, or nested lists/tuples of tensors (an LSTM's per-layer (h, c))
Step = Callable[[Batch, State], tuple[torch.Tensor, torch.Tensor, State]]


def tensors(tree) -> Iterator[torch.Tensor]:
    """The tensors of nested lists/tuples, depth first (None holds none)."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for t in tree:
            yield from tensors(t)
    elif tree is not None:
        raise TypeError(f"a captured step's inputs are tensors in lists/tuples, got {type(tree).__name__}")


def same_shapes(a, b) -> bool:
    """Whether two input trees hold tensors of the same shapes and dtypes, in the same places."""
    ta, tb = list(tensors(a)), list(tensors(b))
    return len(ta) == len(tb) and all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(ta, tb))


@torch.no_grad()
def copy_into(static, tree) -> None:
    """Copy ``tree``'s values into ``static``'s tensors (same shapes), skipping any that already are them."""
    for dst, src in zip(tensors(static), tensors(tree)):
        if dst is not src:
            dst.copy_(src)


def clone(tree):
    """A copy of ``tree`` with every tensor detached and cloned (the capture's own inputs)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, (list, tuple)):
        return type(tree)(clone(t) for t in tree)
    return tree


class GraphedStep:
    """``step(batch, state) -> (loss, right, state)`` for one pass: the first ``WARMUP`` batches run
    eagerly on a side stream (lazy initialisation: cuBLAS, cuDNN, optimiser state, the LSTM's path
    with a given state), the next is captured and every later batch whose inputs (batch and state)
    have the captured shapes replays it on copies into the captured inputs. A batch of another shape
    (the epoch's short last one) runs eagerly. Make a new one each epoch: the optimiser's learning
    rate is a Python number that the capture bakes in. The outputs of a replay are the graph's own
    tensors, overwritten by the next replay: read them (or pass the state back) before then."""

    WARMUP = 2

    def __init__(self, step: Step):
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_left = self.WARMUP

    def __call__(self, batch: Batch, state: State = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        if self.eager_left:
            self.eager_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(batch, state)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.inputs = (clone(batch), clone(state))
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.step(*self.inputs)
        elif not same_shapes((batch, state), self.inputs):
            return self.step(batch, state)
        copy_into(self.inputs, (batch, state))
        self.graph.replay()
        return self.outputs
