"""The QSD mask as a counter-based function of (key, element index), compiled for the CPU.

Element i of a mask drawn with key ``seed`` is a pure function of (seed, i). With g = i // 4 its
group and l = i % 4 its place in the group, P_s = Philox4x32-10(counter=(lo(g), hi(g), s, 0),
key=(lo(seed), hi(seed))) and unit(w) = (w >> 8) / 2^24::

    K = #{k : T_k <= word l of P_0}, T_k = round(P(K <= k) * 2^32)    (a full 32-bit word, so
        every P(K = k) is sampled exactly to 2^-32)
    K = 0: m = 0;   cv = 0: m = K * scale   (P_0 alone: one Philox block per four elements)
    else A ~ Gamma(K / cv^2) by Marsaglia-Tsang (2000), round 0 from the group's blocks:
        the normal z: Box-Muller on words (0, 1) of P_1 for l = 0, 1 (cos, sin), words (2, 3)
        for l = 2, 3, with radius uniform unit(w) + 2^-24 and angle uniform unit(w');
        the acceptance uniform: unit(word l of P_2);
        a rejected round-0 proposal is followed by rounds r = 1, 2, ... on the element's own
        counter (lo(i), hi(i), r, 1): z = Box-Muller cos from words 0, 1, uniform unit(word 2);
        a shape a < 1 is drawn as Gamma(a + 1) * U^(1/a), U = unit(word l of P_3) + 2^-24;
        m = A * cv^2 * scale.

The CUDA kernel in ``qsd_cuda`` evaluates the same function, so a key gives the same mask on
either device (up to float rounding) and the backward pass can regenerate the mask rather than
store it. Because each element depends only on (seed, i), the result does not depend on the
number of threads. ``SAMPLER`` names this function: it is part of every QSD run's config, so a
run made with another sampler never passes for one made with this.
"""
from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

_M32 = np.uint64(0xFFFFFFFF)
_ROUND_A = np.uint64(0xD2511F53)
_ROUND_B = np.uint64(0xCD9E8D57)
_KEY_A = np.uint64(0x9E3779B9)
_KEY_B = np.uint64(0xBB67AE85)
_TWO_M24 = 1.0 / 16777216.0
_CHUNK = 1 << 15  # elements per work item (a multiple of 4): its scratch arrays stay in the L2 cache
SAMPLER = 2  # 1: K from a 24-bit uniform, one Philox block per element (before 2026-11-26)


@numba.njit(inline="always", cache=True, error_model="numpy")
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al. 2011) on uint32 words held in uint64."""
    for _ in range(10):
        pa = _ROUND_A * c0
        pb = _ROUND_B * c2
        c0, c1, c2, c3 = ((pb >> np.uint64(32)) ^ c1 ^ k0), pb & _M32, ((pa >> np.uint64(32)) ^ c3 ^ k1), pa & _M32
        k0 = (k0 + _KEY_A) & _M32
        k1 = (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


@numba.njit(inline="always", cache=True, error_model="numpy")
def _unit(w):
    """A uint32 word -> a float in [0, 1) on the 2^-24 grid (exact in float32)."""
    return float(w >> np.uint64(8)) * _TWO_M24


@numba.njit(inline="always", cache=True, error_model="numpy")
def _box_muller(w1, w2):
    """A standard normal from two words (the scalar path, for the rare later rounds)."""
    return math.sqrt(-2.0 * math.log(_unit(w1) + _TWO_M24)) * math.cos(2.0 * math.pi * _unit(w2))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _accept(x, u, d, c):
    """Marsaglia-Tsang acceptance of the normal ``x`` with uniform ``u``: (Gamma(d + 1/3) draw, accepted)."""
    v = 1.0 + c * x
    if v <= 0.0:
        return 0.0, False
    v = v * v * v
    x2 = x * x
    return d * v, u < 1.0 - 0.0331 * x2 * x2 or math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v))


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _group_words(seed, first_group, thresholds, gaussian, may_boost, k_out, u1, u2, u3, ub):
    """Pass 1 over the groups first_group, first_group + 1, ...: K of each element (into ``k_out``,
    as float32) and, for Gamma quanta, the round-0 uniforms: Box-Muller radius (u1, in (0, 1]) and
    angle (u2) per pair of elements, acceptance (u3) and boost (ub, in (0, 1]) per element. The
    threshold loop is outermost so that every element loop vectorises."""
    k0 = np.uint64(seed) & _M32
    k1 = np.uint64(seed) >> np.uint64(32)
    zero = np.uint64(0)
    words = np.empty(k_out.size, dtype=np.uint64)
    for j in range(k_out.size // 4):
        g = np.uint64(first_group + j)
        g0, g1 = g & _M32, g >> np.uint64(32)
        words[4 * j], words[4 * j + 1], words[4 * j + 2], words[4 * j + 3] = philox4x32(g0, g1, zero, zero, k0, k1)
        if gaussian:
            b0, b1, b2, b3 = philox4x32(g0, g1, np.uint64(1), zero, k0, k1)
            u1[2 * j], u2[2 * j], u1[2 * j + 1], u2[2 * j + 1] = _unit(b0) + _TWO_M24, _unit(b1), _unit(b2) + _TWO_M24, _unit(b3)
            c0, c1, c2, c3 = philox4x32(g0, g1, np.uint64(2), zero, k0, k1)
            u3[4 * j], u3[4 * j + 1], u3[4 * j + 2], u3[4 * j + 3] = _unit(c0), _unit(c1), _unit(c2), _unit(c3)
        if may_boost:
            e0, e1, e2, e3 = philox4x32(g0, g1, np.uint64(3), zero, k0, k1)
            ub[4 * j], ub[4 * j + 1] = _unit(e0) + _TWO_M24, _unit(e1) + _TWO_M24
            ub[4 * j + 2], ub[4 * j + 3] = _unit(e2) + _TWO_M24, _unit(e3) + _TWO_M24
    k_out[:] = 0.0
    for t in thresholds:
        for j in range(k_out.size):
            k_out[j] += np.float32(np.uint64(t) <= words[j])


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _gamma_from_normals(seed, first, k_arr, normal, u3, ub, inv_cv2, gamma_scale, out):
    """Pass 3: A * cv^2 * scale into ``out``, with A ~ Gamma(K / cv^2) (0 where K = 0). A first,
    vectorised loop accepts the round-0 proposals that pass Marsaglia-Tsang's squeeze; a second
    loop settles the rest (exact test, later Philox rounds, the boost for shapes below 1)."""
    settle = np.empty(out.size, dtype=np.bool_)
    for j in range(out.size):
        k = np.float64(k_arr[j])
        a = k * inv_cv2
        d = a - 1.0 / 3.0 + (1.0 if a < 1.0 else 0.0)
        v = 1.0 + np.float64(normal[j]) / math.sqrt(9.0 * d)
        x2 = np.float64(normal[j]) * np.float64(normal[j])
        done = (k == 0.0) | ((a >= 1.0) & (v > 0.0) & (u3[j] < 1.0 - 0.0331 * x2 * x2))
        settle[j] = not done
        out[j] = d * v * v * v * gamma_scale if (done & (k > 0.0)) else 0.0
    k0 = np.uint64(seed) & _M32
    k1 = np.uint64(seed) >> np.uint64(32)
    one = np.uint64(1)
    for j in range(out.size):
        if not settle[j]:
            continue
        i = np.uint64(first + j)
        i0, i1 = i & _M32, i >> np.uint64(32)
        a = k_arr[j] * inv_cv2
        d = a - 1.0 / 3.0 + (1.0 if a < 1.0 else 0.0)
        c = 1.0 / math.sqrt(9.0 * d)
        g, ok = _accept(np.float64(normal[j]), np.float64(u3[j]), d, c)
        r = np.uint64(1)
        while not ok:
            w0, w1, w2, _ = philox4x32(i0, i1, r, one, k0, k1)
            g, ok = _accept(_box_muller(w0, w1), _unit(w2), d, c)
            r += one
        if a < 1.0:
            g *= np.float64(ub[j]) ** (1.0 / a)
        out[j] = g * gamma_scale


def _fill_chunk(out: np.ndarray, first: int, seed: int, thresholds: np.ndarray, cv: float, scale: float) -> None:
    """The mask for elements first .. first + len(out) - 1 (``first`` a multiple of 4), written into ``out``."""
    size = -(-out.size // 4) * 4  # whole groups
    gaussian = cv != 0.0
    may_boost = gaussian and cv > 1.0
    k = np.empty(size, dtype=np.float32)
    u1, u2 = (np.empty(size // 2 if gaussian else 0, dtype=np.float32) for _ in range(2))
    u3 = np.empty(size if gaussian else 0, dtype=np.float32)
    ub = np.empty(size if may_boost else 0, dtype=np.float32)
    _group_words(seed, first // 4, thresholds, gaussian, may_boost, k, u1, u2, u3, ub)
    if not gaussian:
        np.multiply(k[: out.size], np.float32(scale), out=out)
        return
    radius = np.sqrt(np.log(u1, out=u1).__imul__(np.float32(-2.0)), out=u1)  # Box-Muller, in place
    angle = u2.__imul__(np.float32(2.0 * math.pi))
    normal = np.empty(size, dtype=np.float32)
    np.multiply(radius, np.cos(angle), out=normal[0::2])
    np.multiply(radius, np.sin(angle), out=normal[1::2])
    n = out.size
    _gamma_from_normals(seed, first, k[:n], normal[:n], u3[:n], ub[:n],
                        1.0 / (cv * cv), cv * cv * scale, out)


def qsd_mask_cpu(shape: tuple[int, ...], seed: int, thresholds: np.ndarray, cv: float, scale: float) -> torch.Tensor:
    """A float32 QSD mask of ``shape`` for key ``seed`` (see the module docstring); ``thresholds``
    are the int64 T_k = round(P(K <= k) * 2^32), k = 0..n-1. Works in cache-sized chunks spread over
    ``torch.get_num_threads()`` threads (the compiled passes and numpy's SIMD float32 log, sqrt,
    cos and sin, which make the round-0 normals, all release the GIL)."""
    numel = math.prod(shape)
    out = np.empty(numel, dtype=np.float32)
    starts = range(0, numel, _CHUNK)
    jobs = [(out[lo : lo + _CHUNK], lo, seed, thresholds, cv, scale) for lo in starts]
    threads = min(torch.get_num_threads(), len(jobs))
    if threads <= 1:
        for job in jobs:
            _fill_chunk(*job)
    else:
        list(_pool(threads).map(lambda job: _fill_chunk(*job), jobs))
    return torch.from_numpy(out).view(shape)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="qsd-mask")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the parent's threads
