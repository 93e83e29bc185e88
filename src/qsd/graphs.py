"""A training step captured in a CUDA graph (``train.cuda_graphs``: by default wherever it applies,
image classification on CUDA).

A small model's step is a few hundred short kernels, so eager training is bound by their launches
and the GPU idles. Captured once and replayed per batch, the step costs one launch. The replay runs
the same kernels on the same tensors as eager (dropout and QSD draw fresh masks on every replay:
both take their randomness from torch's CUDA generator, which advances per replay).
"""
from __future__ import annotations

from typing import Callable

import torch

Batch = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[Batch], tuple[torch.Tensor, torch.Tensor]]


class GraphedStep:
    """``step(batch) -> (loss, right)`` for one epoch: the first batch runs eagerly on a side stream
    (lazy initialisation: cuBLAS, optimiser state), the second is captured and every later batch of
    the same shape replays it on copies into the captured inputs. A batch of another shape (the
    epoch's short last one) runs eagerly. Make a new one each epoch: the optimiser's learning rate
    is a Python number that the capture bakes in."""

    def __init__(self, step: Step):
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = False

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        if not self.warm:
            self.warm = True
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(batch)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.inputs = (x.clone(), y.clone())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.step(self.inputs)
        elif x.shape != self.inputs[0].shape or y.shape != self.inputs[1].shape:
            return self.step(batch)
        self.inputs[0].copy_(x)
        self.inputs[1].copy_(y)
        self.graph.replay()
        return self.outputs
