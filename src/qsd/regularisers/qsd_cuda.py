"""Fused QSD for CUDA (Triton): y = x * m with the mask m computed inside the kernel from
(key, element index) and recomputed in the backward pass, so no mask is ever stored.

It evaluates the same counter-based function as the CPU kernel (``qsd_cpu``'s docstring gives it),
in float32 with the GPU's approximate log, sin and cos (PTX documents their error as about 1e-6;
the CUDA test allows values 1e-5 apart), and the rare element whose acceptance test lies that
close to its bound may take another round. The key is read from a one-element device tensor drawn
from torch's CUDA generator, so a training step with QSD can be captured in a CUDA graph and every
replay draws a fresh mask.

Layout: a persistent grid; each program takes blocks of GROUPS groups of four elements, held as a
[4, GROUPS] tile so that a thread keeps each group's four elements (one Philox block serves them
without moving data between threads) and loads and stores them as one vector. Round 0 of
Marsaglia-Tsang runs on every element of a block at once and is stored; the few groups with a
rejected proposal join the program's queue (a ring in global scratch; each such group takes its
place with an atomic increment of the program's count, zeroed by the program as it starts, so a
block needs no block-wide scan or barrier). Every BATCH blocks, once the program's threads have met
at a barrier, each SLOW waiting groups are finished as one [4, SLOW] tile whose rejected elements
take further rounds and are stored over round 0's (the last, partial tile in a pass after the
program's last block). So a rejection costs one lane's work instead of another round for the whole
block, the tiles run full, and the program's warps meet once every BATCH blocks rather than several
times a block. The order of a queue depends on the atomics' timing; the mask does not (each
element's rounds use its own counter).

With ``TRITON_INTERPRET=1`` set before import the kernel runs on CPU tensors (with numpy's exact
functions), which is how the tests compare it with the CPU kernel on machines without a GPU.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

TWO_M24 = tl.constexpr(1.0 / 16777216.0)
TWO_PI = tl.constexpr(6.283185307179586)
# natural log, cos and sin: the GPU's approximate instructions, numpy's functions when interpreted
if os.environ.get("TRITON_INTERPRET") == "1":  # looked up per call: the interpreter patches tl's functions
    _ln, _cos, _sin = (lambda x: tl.log(x)), (lambda x: tl.cos(x)), (lambda x: tl.sin(x))
else:
    _ln, _cos, _sin = libdevice.fast_logf, libdevice.fast_cosf, libdevice.fast_sinf
# launch constants (benchmarks/tune_qsd_kernel.py sweeps them on a GPU)
GROUPS = 256  # groups of four elements per block
WARPS = 4  # warps per program
SLOW = 32  # groups per tile of the rejected-proposal path
BATCH = 4  # blocks between two looks at the queue
PROGRAMS_PER_SM = 32  # programs per multiprocessor in the persistent grid


@triton.jit
def _unit(w):
    """uint32 word -> float32 in [0, 1) on the 2^-24 grid."""
    return (w >> 8).to(tl.float32) * TWO_M24


@triton.jit
def _radius(w):
    """Box-Muller's radius sqrt(-2 ln U), U = unit(w) + 2^-24 in (0, 1]; held at 0 where U = 1, since an
    approximate log of 1 need not be exactly 0."""
    return tl.sqrt(tl.maximum(-2.0 * _ln(_unit(w) + TWO_M24), 0.0))


@triton.jit
def _spread(place, w0, w1, w2, w3):
    """Four [1, G] rows -> a [4, G] tile: column g is (w0[g], w1[g], w2[g], w3[g])."""
    return tl.where(place == 0, w0, tl.where(place == 1, w1, tl.where(place == 2, w2, w3)))


@triton.jit
def _accept(z, u, d, c):
    """Marsaglia-Tsang: the proposal from normal z and uniform u -> (Gamma(d + 1/3) value, accepted)."""
    v = 1.0 + c * z
    positive = v > 0.0
    v = v * v * v
    z2 = z * z
    squeeze = u < 1.0 - 0.0331 * z2 * z2
    exact = _ln(u) < 0.5 * z2 + d * (1.0 - v + _ln(tl.where(positive, v, 1.0)))
    return d * v, positive & (squeeze | exact)


@triton.jit
def _shape(k, inv_cv2):
    """Per lane: the Gamma shape a = K / cv^2, whether it is boosted (a < 1), and Marsaglia-Tsang's d, c."""
    a = k * inv_cv2
    boost = a < 1.0
    d = tl.where(boost, a + 1.0, a) - 1.0 / 3.0
    c = tl.math.rsqrt(9.0 * tl.where(k > 0.0, d, 1.0))
    return a, boost, d, c


@triton.jit
def _boosted(g, a, boost, ub):
    """Gamma(a) = Gamma(a + 1) * U^(1/a) where a < 1."""
    return tl.where(boost, g * tl.exp2(tl.log2(ub) / tl.where(boost, a, 1.0)), g)


@triton.jit
def _release_count(key, g_lo, g_hi, place, t_ptr, N_SITES: tl.constexpr):
    """K of each element of the groups (g_lo, g_hi): a [4, groups] tile, as float32."""
    zero = g_lo * 0
    w0, w1, w2, w3 = tl.philox(key, g_lo, g_hi, zero, zero)
    w = _spread(place, w0, w1, w2, w3).to(tl.int64)
    k = tl.zeros(w.shape, dtype=tl.float32)
    for j in tl.static_range(N_SITES):
        k += (tl.load(t_ptr + j) <= w).to(tl.float32)
    return k


@triton.jit
def _boost_uniform(key, g_lo, g_hi, place):
    """The boost's uniform in (0, 1] of each element of the groups: a [4, groups] tile."""
    zero = g_lo * 0
    e0, e1, e2, e3 = tl.philox(key, g_lo, g_hi, zero + 3, zero)
    return _unit(_spread(place, e0, e1, e2, e3)) + TWO_M24


@triton.jit
def _finish_rejected(key, own, head, tail, x_ptr, y_ptr, t_ptr, inv_cv2, gamma_scale,
                     N_SITES: tl.constexpr, MAY_BOOST: tl.constexpr, S: tl.constexpr, CAP: tl.constexpr):
    """Finish the queue's entries [head, min(head + S, tail)) as a [4, S] tile: each rejected element
    takes rounds r = 1, 2, ... on its own counter until one is accepted, and is stored over round 0."""
    slot = tl.arange(0, S)[None, :]
    place = tl.arange(0, 4)[:, None]
    tl.debug_barrier()  # the entries, and round 0's stores, are visible to every thread
    live = head + slot < tail
    entry = tl.load(own + ((head + slot) & (CAP - 1)), mask=live, other=0)  # [1, S]: group << 4 | elements
    tl.debug_barrier()  # read before a later block's entries take these places
    s_group = entry >> 4
    s_lo = s_group.to(tl.uint32)
    s_hi = (s_group >> 32).to(tl.uint32)
    ks = _release_count(key, s_lo, s_hi, place, t_ptr, N_SITES)
    sa, sboost, sd, sc = _shape(ks, inv_cv2)
    need = live & (((entry >> place) & 1) != 0)  # [4, S]
    e = 4 * s_group + place
    e_lo = e.to(tl.uint32)
    e_hi = (e >> 32).to(tl.uint32)
    one = e_lo * 0 + 1
    r = one
    gs = tl.zeros([4, S], dtype=tl.float32)
    done = ~need
    while tl.min(tl.min(done.to(tl.int32), axis=1), axis=0) == 0:
        v0, v1, v2, _ = tl.philox(key, e_lo, e_hi, r, one)
        zs = _radius(v0) * _cos(_unit(v1) * TWO_PI)
        g_new, ok_new = _accept(zs, _unit(v2), sd, sc)
        gs = tl.where(done, gs, g_new)
        done = done | ok_new
        r += 1
    if MAY_BOOST:
        gs = _boosted(gs, sa, sboost, _boost_uniform(key, s_lo, s_hi, place))
    xs = tl.load(x_ptr + e, mask=need, other=0.0)
    tl.store(y_ptr + e, (xs.to(tl.float32) * gs * gamma_scale).to(y_ptr.dtype.element_ty), mask=need)


@triton.jit
def _qsd_scale_kernel(x_ptr, y_ptr, numel, key_ptr, t_ptr, scratch_ptr, inv_cv2, gamma_scale, scale,
                      N_SITES: tl.constexpr, FIXED_QUANTA: tl.constexpr, MAY_BOOST: tl.constexpr,
                      G: tl.constexpr, S: tl.constexpr, CAP: tl.constexpr, BATCH: tl.constexpr):
    key = tl.load(key_ptr)
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(numel, 4 * G)
    place = tl.arange(0, 4)[:, None]  # an element's place in its group
    index = tl.arange(0, G)  # a group's place in its block
    programs = tl.num_programs(0)
    own = scratch_ptr + pid * CAP  # this program's queue of rejected groups, a ring of CAP entries
    count = scratch_ptr + programs * CAP + pid  # entries queued so far, after every program's ring
    if not FIXED_QUANTA:
        tl.store(count, 0)
        tl.debug_barrier()  # zero before any thread's increment
    head = 0  # entries [head, count) are waiting
    # one pass more than the program has blocks: it finishes the queue's last, partial tile
    for blk in range(pid, n_blocks + programs, programs):
        if blk < n_blocks:
            base = tl.cast(blk, tl.int64) * (4 * G)
            group = base // 4 + index[None, :]
            offs = 4 * group + place  # [4, G]
            inside = offs < numel
            g_lo = group.to(tl.uint32)
            g_hi = (group >> 32).to(tl.uint32)
            k = _release_count(key, g_lo, g_hi, place, t_ptr, N_SITES)
            x = tl.load(x_ptr + offs, mask=inside, other=0.0)
            if FIXED_QUANTA:
                tl.store(y_ptr + offs, (x.to(tl.float32) * (k * scale)).to(y_ptr.dtype.element_ty), mask=inside)
            else:
                zero = g_lo * 0
                b0, b1, b2, b3 = tl.philox(key, g_lo, g_hi, zero + 1, zero)
                r01 = _radius(b0)
                t01 = _unit(b1) * TWO_PI
                r23 = _radius(b2)
                t23 = _unit(b3) * TWO_PI
                z = _spread(place, r01 * _cos(t01), r01 * _sin(t01), r23 * _cos(t23), r23 * _sin(t23))
                c0, c1, c2, c3 = tl.philox(key, g_lo, g_hi, zero + 2, zero)
                u = _unit(_spread(place, c0, c1, c2, c3))
                a, boost, d, c = _shape(k, inv_cv2)
                g, ok = _accept(z, u, d, c)
                if MAY_BOOST:
                    g = _boosted(g, a, boost, _boost_uniform(key, g_lo, g_hi, place))
                m = tl.where(k == 0.0, 0.0, g * gamma_scale)
                # every element is stored; the rejected proposals' are overwritten later (after a barrier)
                tl.store(y_ptr + offs, (x.to(tl.float32) * m).to(y_ptr.dtype.element_ty), mask=inside)
                # groups with a rejected proposal join this program's queue (4 bits a group: which elements),
                # each at the place an atomic increment of the count gives it
                rejected = tl.sum(((k > 0.0) & (~ok) & inside).to(tl.int32) << place, axis=0)
                has = rejected != 0
                at = tl.atomic_add(count + rejected * 0, 1, mask=has, sem="relaxed")
                tl.store(own + (at & (CAP - 1)), (base // 4 + index) * 16 + rejected, mask=has)
        if not FIXED_QUANTA:
            last = blk >= n_blocks
            if last | (blk // programs % BATCH == BATCH - 1):
                tl.debug_barrier()  # every place taken so far is filled
                tail = tl.load(count, volatile=True)
                # each full tile of S waiting groups is finished at once, so a rejection costs one lane's work
                while (tail - head >= S) | (last & (head < tail)):
                    _finish_rejected(key, own, head, tail, x_ptr, y_ptr, t_ptr, inv_cv2, gamma_scale,
                                     N_SITES, MAY_BOOST, S, CAP)
                    head += S


@functools.cache
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def queue_entries() -> int:
    """Each program's ring of rejected groups: it holds fewer than SLOW waiting entries plus BATCH blocks' GROUPS."""
    return triton.next_power_of_2(SLOW + BATCH * GROUPS)


def _programs(device: torch.device) -> int:
    if device.type != "cuda":  # the interpreter: a few programs, so that each loops over blocks
        return 3
    return PROGRAMS_PER_SM * _multiprocessors(device)


def qsd_scale(x: torch.Tensor, key: torch.Tensor, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
    """x * m, with m the QSD mask for ``key`` (a one-element int64 tensor on x's device) over x's
    elements in row-major order; ``thresholds``: the int64 P(K <= k) * 2^32, k = 0..n-1."""
    x = x.contiguous()
    y = torch.empty_like(x)
    numel = x.numel()
    programs = max(1, min(_programs(x.device), triton.cdiv(numel, 4 * GROUPS)))
    queue = queue_entries()
    scratch = torch.empty(programs * (queue + 1) if cv else 1, dtype=torch.int64, device=x.device)  # rings, counts
    inv_cv2 = 0.0 if cv == 0.0 else 1.0 / (cv * cv)
    _qsd_scale_kernel[(programs,)](x, y, numel, key, thresholds, scratch, inv_cv2, cv * cv * scale, scale,
                                   N_SITES=thresholds.numel(), FIXED_QUANTA=cv == 0.0, MAY_BOOST=0.0 < inv_cv2 < 1.0,
                                   G=GROUPS, S=SLOW, CAP=queue, BATCH=BATCH, num_warps=WARPS)
    return y


class QSDMultiply(torch.autograd.Function):
    """y = x * m; the backward pass regenerates m from the key instead of saving it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, key: torch.Tensor, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
        ctx.mask_args = (key, thresholds, cv, scale)
        return qsd_scale(x, key, thresholds, cv, scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return qsd_scale(grad, *ctx.mask_args), None, None, None, None


def qsd_mask(shape: tuple[int, ...], key: torch.Tensor, thresholds: torch.Tensor, cv: float, scale: float) -> torch.Tensor:
    """The float32 mask itself (for channel granularity, where it is small)."""
    return qsd_scale(torch.ones(shape, device=thresholds.device), key, thresholds, cv, scale)
