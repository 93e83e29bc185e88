"""The QSD mask as a counter-based function of (seed, element index), compiled for the CPU.

Every element i of a mask drawn with key ``seed`` is a pure function of (seed, i)::

    w0..w3 = Philox4x32-10(counter=(lo(i), hi(i), 0, 0), key=(lo(seed), hi(seed)))
    u0 = (w0 >> 8) / 2^24                       -> K = #{k : P(K <= k) <= u0}   (inverse CDF)
    K = 0: m = 0;   cv = 0: m = K * scale
    else A ~ Gamma(K / cv^2) by Marsaglia-Tsang (2000): proposal r = 0, 1, ... uses the words
         w1, w2, w3 of the counter (lo(i), hi(i), r, 0) (r = 0: the block above), a Box-Muller
         normal from u1 = ((w1 >> 8) + 1) / 2^24 and u2 = (w2 >> 8) / 2^24, accepted or not with
         u3 = (w3 >> 8) / 2^24; a shape a < 1 is drawn as Gamma(a + 1) * U^(1/a), U from w0 of
         the counter (lo(i), hi(i), 0, 1);   m = A * cv^2 * scale.

The CUDA kernel in ``qsd_cuda`` evaluates the same function, so a seed gives the same mask on
either device (up to float rounding) and the backward pass can regenerate the mask rather than
store it. Because each element depends only on (seed, i), the result does not depend on the
number of threads.
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
_CHUNK = 1 << 15  # elements per work item: its scratch arrays stay in the L2 cache


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
def _first_block(seed, first, thresholds, k_out, u1, u2, u3):
    """Pass 1 over elements first, first+1, ...: the words of each element's first Philox block
    -> K (into ``k_out``, as float32) and the three uniforms of round 0 (u1 in (0, 1], u2 and u3
    in [0, 1)). The threshold loop is outermost so that every element loop vectorises."""
    k0 = np.uint64(seed) & _M32
    k1 = np.uint64(seed) >> np.uint64(32)
    zero = np.uint64(0)
    u0 = np.empty(k_out.size, dtype=np.float32)
    for j in range(k_out.size):
        i = np.uint64(first + j)
        w0, w1, w2, w3 = philox4x32(i & _M32, i >> np.uint64(32), zero, zero, k0, k1)
        u0[j] = _unit(w0)
        u1[j] = _unit(w1) + _TWO_M24
        u2[j] = _unit(w2)
        u3[j] = _unit(w3)
    k_out[:] = 0.0
    for t in thresholds:
        for j in range(k_out.size):
            k_out[j] += np.float32(t <= u0[j])


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _gamma_from_normals(seed, first, k_arr, normal, u3, inv_cv2, gamma_scale, out):
    """Pass 3: A * cv^2 * scale into ``out``, with A ~ Gamma(K / cv^2) (0 where K = 0). A first,
    vectorised loop accepts the round-0 proposals that pass Marsaglia-Tsang's squeeze; a second
    loop settles the rest (exact test, later Philox rounds, the boost for shapes below 1)."""
    settle = np.empty(k_arr.size, dtype=np.bool_)
    for j in range(k_arr.size):
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
    zero = np.uint64(0)
    for j in range(k_arr.size):
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
            _, w1, w2, w3 = philox4x32(i0, i1, r, zero, k0, k1)
            g, ok = _accept(_box_muller(w1, w2), _unit(w3), d, c)
            r += np.uint64(1)
        if a < 1.0:
            b0, _, _, _ = philox4x32(i0, i1, zero, np.uint64(1), k0, k1)
            g *= (_unit(b0) + _TWO_M24) ** (1.0 / a)
        out[j] = g * gamma_scale


def _fill_chunk(out: np.ndarray, first: int, seed: int, thresholds: np.ndarray, cv: float, scale: float) -> None:
    """The mask for elements first .. first + len(out) - 1, written into ``out``."""
    k, u1, u2, u3 = (np.empty(out.size, dtype=np.float32) for _ in range(4))
    _first_block(seed, first, thresholds, k, u1, u2, u3)
    if cv == 0.0:
        np.multiply(k, np.float32(scale), out=out)
        return
    normal = np.sqrt(np.log(u1, out=u1).__imul__(np.float32(-2.0)), out=u1)  # Box-Muller, in place
    normal *= np.cos(u2.__imul__(np.float32(2.0 * math.pi)), out=u2)
    _gamma_from_normals(seed, first, k, normal, u3, 1.0 / (cv * cv), cv * cv * scale, out)


def qsd_mask_cpu(shape: tuple[int, ...], seed: int, thresholds: np.ndarray, cv: float, scale: float) -> torch.Tensor:
    """A float32 QSD mask of ``shape`` for key ``seed`` (see the module docstring); ``thresholds``
    are the float32 P(K <= k), k = 0..n-1. Works in cache-sized chunks spread over
    ``torch.get_num_threads()`` threads (the compiled passes and numpy's SIMD float32 log, sqrt
    and cos, which make the round-0 normals, all release the GIL)."""
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
