"""Fused QSD for CUDA (Triton): y = x * m with the mask m computed inside the kernel from
(seed, element index) and recomputed in the backward pass, so no mask is ever stored.

It evaluates the same counter-based function as the CPU kernel (see ``qsd_cpu``): Philox4x32-10
words -> K by inverse CDF -> Gamma(K / cv^2) by Marsaglia-Tsang, in float32. With
``TRITON_INTERPRET=1`` set before import it runs on CPU tensors, which is how the tests compare
it with the CPU kernel on machines without a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

TWO_M24 = tl.constexpr(1.0 / 16777216.0)
TWO_PI = tl.constexpr(6.283185307179586)
BLOCK = 1024


@triton.jit
def _unit(w):
    """uint32 word -> float32 in [0, 1) on the 2^-24 grid."""
    return (w >> 8).to(tl.float32) * TWO_M24


@triton.jit
def _marsaglia_tsang(w1, w2, w3, d, c):
    """One proposal for Gamma(d + 1/3) per lane: (value, accepted)."""
    x = tl.sqrt(-2.0 * tl.log(_unit(w1) + TWO_M24)) * tl.cos(_unit(w2) * TWO_PI)
    v = 1.0 + c * x
    positive = v > 0.0
    v = v * v * v
    u = _unit(w3)
    x2 = x * x
    squeeze = u < 1.0 - 0.0331 * x2 * x2
    ok = positive & (squeeze | (tl.log(u) < 0.5 * x2 + d * (1.0 - v + tl.log(tl.where(positive, v, 1.0)))))
    return d * v, ok


@triton.jit
def _qsd_scale_kernel(x_ptr, y_ptr, numel, seed, t_ptr, inv_cv2, gamma_scale, scale,
                      N_SITES: tl.constexpr, FIXED_QUANTA: tl.constexpr, MAY_BOOST: tl.constexpr,
                      BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    inside = offs < numel
    w0, w1, w2, w3 = tl.randint4x(seed, offs)
    u0 = _unit(w0)
    k = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for j in tl.static_range(N_SITES):
        k += (tl.load(t_ptr + j) <= u0).to(tl.float32)
    if FIXED_QUANTA:
        m = k * scale
    else:
        a = k * inv_cv2
        boost = a < 1.0
        d = tl.where(boost, a + 1.0, a) - 1.0 / 3.0
        c = 1.0 / tl.sqrt(9.0 * tl.where(k > 0.0, d, 1.0))
        g, done = _marsaglia_tsang(w1, w2, w3, d, c)
        done = done | (k == 0.0) | (~inside)
        lo = offs.to(tl.uint32)
        hi = (offs >> 32).to(tl.uint32)
        zero = lo * 0
        r = zero + 1
        while tl.min(done.to(tl.int32)) == 0:
            _, v1, v2, v3 = tl.philox(seed, lo, hi, r, zero)
            g_new, ok = _marsaglia_tsang(v1, v2, v3, d, c)
            g = tl.where(done, g, g_new)
            done = done | ok
            r += 1
        if MAY_BOOST:
            b0, _, _, _ = tl.philox(seed, lo, hi, zero, zero + 1)
            ub = _unit(b0) + TWO_M24
            g = tl.where(boost & (k > 0.0), g * tl.exp(tl.log(ub) / tl.where(k > 0.0, a, 1.0)), g)
        m = tl.where(k == 0.0, 0.0, g * gamma_scale)
    x = tl.load(x_ptr + offs, mask=inside, other=0.0)
    y = x.to(tl.float32) * m
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=inside)


def qsd_scale(x: torch.Tensor, seed: int, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
    """x * m, with m the QSD mask for key ``seed`` over x's elements (in row-major order)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    numel = x.numel()
    inv_cv2 = 0.0 if cv == 0.0 else 1.0 / (cv * cv)
    grid = (triton.cdiv(numel, BLOCK),)
    _qsd_scale_kernel[grid](x, y, numel, seed, thresholds, inv_cv2, cv * cv * scale, scale,
                            N_SITES=thresholds.numel(), FIXED_QUANTA=cv == 0.0, MAY_BOOST=0.0 < inv_cv2 < 1.0,
                            BLOCK_SIZE=BLOCK)
    return y


class QSDMultiply(torch.autograd.Function):
    """y = x * m; the backward pass regenerates m from the seed instead of saving it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, seed: int, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
        ctx.mask_args = (seed, thresholds, cv, scale)
        return qsd_scale(x, seed, thresholds, cv, scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return qsd_scale(grad, *ctx.mask_args), None, None, None, None


def qsd_mask(shape: tuple[int, ...], seed: int, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
    """The float32 mask itself (for channel granularity, where it is small)."""
    return qsd_scale(torch.ones(shape, device=thresholds.device), seed, thresholds, cv, scale)
